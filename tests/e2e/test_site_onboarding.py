"""Adding and revoking a site from the platform, on real processes.

A real `flower-superlink` over TLS with `--enable-supernode-auth` (only registered keys get in), a real
backend process pointed at it with the CA, and real `flower-supernode` processes with their own keys:
- POST /nodes admits a site's key through Flower's Control API; the SuperNode with that key then joins
  and GET /nodes shows it online with its name and OpenSSH fingerprint; the answer holds the site's
  files (its .env, the CA certificate) and the compose command;
- a key never registered is refused; DELETE /nodes/{id} revokes a key: the SuperNode restarted with it
  is refused, and the revoked key cannot be registered again;
- bad keys and names are 422s naming the field; writes need the token;
- the Nodes view's "Add a site" in Chromium: a bad key's reason under the field, an uploaded .pub, the
  site's files and command shown, and its row with the fingerprint.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from backend_fixture import BackendProcess, spawn_backend, stop_group, wait_for
from chromium import CHROMIUM, CHROMIUM_ARGS
from conftest import free_port
from dashboard_pages import open_dashboard
from playwright.sync_api import Browser, expect, sync_playwright
from site_federation import BIN, Federation, site_key, ssh_fingerprint

from flowerbed import site_setup

ROOT = Path(__file__).resolve().parents[2]
FLEET_ADDRESS = "sites.example.org:9443"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("sites"))
    try:
        yield fed
    finally:
        fed.stop()


@pytest.fixture(scope="module")
def backend(federation: Federation) -> Iterator[BackendProcess]:
    proc = spawn_backend(
        federation.directory / "backend",
        f"https://127.0.0.1:{federation.port}",
        env={
            "FLOWERBED_SUPERLINK_CA_CERT": str(federation.certs / "ca.crt"),
            "FLOWERBED_FLEET_PUBLIC_ADDRESS": FLEET_ADDRESS,
        },
    )
    try:
        yield proc
    finally:
        proc.stop()


def node(client: httpx.Client, node_id: str, **params: str) -> dict | None:
    items = client.get("/nodes", params=params).json()["items"]
    return next((n for n in items if n["node_id"] == node_id), None)


def refused(fed: Federation, name: str) -> bool:
    return "Failed to activate" in fed.log(name) or "PERMISSION_DENIED" in fed.log(name).upper()


def test_add_a_site_it_joins_and_a_revoked_key_is_refused(federation: Federation, backend: BackendProcess) -> None:
    keys = federation.directory / "keys"
    key = site_key(keys, "clinic-a")
    pub = key.with_suffix(".key.pub")
    stranger = site_key(keys, "stranger")
    with backend.client() as client:
        answer = client.post("/nodes", json={"name": "clinic-a", "public_key": pub.read_text()})
        assert answer.status_code == 201, answer.text
        site = answer.json()
        assert site["name"] == "clinic-a" and site["key_fingerprint"] == ssh_fingerprint(pub)
        files = {f["path"]: f for f in site["setup"]["files"]}
        env = files[site_setup.ENV_PATH]["content"]
        assert f"FLOWERBED_FLEET_ADDRESS={FLEET_ADDRESS}\n" in env and "FLOWERBED_SITE_NAME=clinic-a\n" in env
        assert files[site_setup.CA_PATH]["content"] == (federation.certs / "ca.crt").read_text()
        assert files[site_setup.KEY_PATH]["content"] is None, "the private key never comes from the platform"
        assert site["setup"]["command"] == site_setup.COMMAND and site["setup"]["warnings"] == []
        listed = node(client, site["node_id"])
        assert listed and listed["name"] == "clinic-a" and listed["key_fingerprint"] == site["key_fingerprint"]
        assert listed["status"] == "registered" and listed["registered_at"]

        federation.supernode("clinic-a", key)
        federation.supernode("stranger", stranger)
        wait_for(lambda: (node(client, site["node_id"]) or {}).get("status") == "online", 90, "clinic-a online")
        assert node(client, site["node_id"])["last_seen"]
        wait_for(lambda: refused(federation, "stranger"), 60, "the stranger's key refused")
        names = {n["name"] for n in client.get("/nodes").json()["items"]}
        assert names == {"clinic-a"}, names

        # The same key or name twice: a conflict naming the field, nothing registered.
        again = client.post("/nodes", json={"name": "clinic-b", "public_key": pub.read_text()})
        assert again.status_code == 409 and again.json()["detail"].startswith("public_key:"), again.text
        other = site_key(keys, "clinic-a-2").with_suffix(".key.pub")
        same_name = client.post("/nodes", json={"name": "clinic-a", "public_key": other.read_text()})
        assert same_name.status_code == 409 and same_name.json()["detail"].startswith("name:"), same_name.text

        # Revoked: gone from the list, its SuperNode refused when it connects again, its key refused for good.
        assert client.delete(f"/nodes/{site['node_id']}").status_code == 204
        assert node(client, site["node_id"]) is None
        assert node(client, site["node_id"], include_unregistered="true")["status"] == "unregistered"
        stop_group(federation.procs[-2], grace=15)
        federation.supernode("clinic-a-again", key)
        wait_for(lambda: refused(federation, "clinic-a-again"), 60, "the revoked key refused")
        assert node(client, site["node_id"], include_unregistered="true")["status"] == "unregistered"
        revoked = client.post("/nodes", json={"name": "clinic-a", "public_key": pub.read_text()})
        assert revoked.status_code == 409 and "revoked" in revoked.json()["detail"], revoked.text
        assert client.delete(f"/nodes/{site['node_id']}").status_code == 404


def test_bad_keys_and_names_are_422s_naming_the_field(federation: Federation, backend: BackendProcess) -> None:
    keys = federation.directory / "bad-keys"
    ed25519 = site_key(keys, "ed", ("-t", "ed25519"))
    rsa = site_key(keys, "rsa", ("-t", "rsa", "-b", "2048"))
    good = site_key(keys, "good").with_suffix(".key.pub").read_text()
    cases = {
        "public_key": [
            "",
            "not a key",
            ed25519.with_suffix(".key.pub").read_text(),
            rsa.with_suffix(".key.pub").read_text(),
            ed25519.read_text(),  # a private key pasted by mistake
            "ecdsa-sha2-nistp384 " + "A" * 5000,
        ],
        "name": ["", "../etc", "a b", "x" * 65],
    }
    with backend.client() as client:
        before = client.get("/nodes", params={"include_unregistered": "true"}).json()["items"]
        for field, values in cases.items():
            for value in values:
                body = {"name": "ok-site", "public_key": good, field: value}
                answer = client.post("/nodes", json=body)
                assert answer.status_code == 422, (field, value[:40], answer.text)
                locs = [e["loc"] for e in answer.json()["detail"]]
                assert ["body", field] in locs, (field, value[:40], locs)
        partition = client.post("/nodes", json={"name": "p", "public_key": good, "partition_id": 2, "num_partitions": 2})
        assert partition.status_code == 422 and "partition_id" in partition.text, partition.text
        assert client.delete("/nodes/abc").status_code == 422
        assert client.delete("/nodes/12345").status_code == 404
        assert client.get("/nodes", params={"include_unregistered": "true"}).json()["items"] == before
    anonymous = httpx.post(backend.base_url + "/nodes", json={"name": "x", "public_key": good}, timeout=30)
    assert anonymous.status_code == 401
    assert httpx.delete(backend.base_url + "/nodes/1", timeout=30).status_code == 401


def test_the_site_env_sets_every_variable_the_remote_compose_file_requires() -> None:
    compose = (ROOT / site_setup.REMOTE_DIR / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(FLOWERBED_[A-Z_]+):\?", compose))
    assert required, "the remote compose file requires no variable?"
    env = site_setup.env_values("site", FLEET_ADDRESS, 0, 1)
    assert required <= set(env), required - set(env)
    used = set(re.findall(r"\$\{(FLOWERBED_[A-Z_]+)", compose))
    assert set(env) <= used, f"the .env sets variables the compose file never reads: {set(env) - used}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make setup does it as root)"
    assert (ROOT / "services/web/dist/index.html").exists(), "the dashboard is not built: run `make web`"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_add_a_site_from_the_nodes_view(federation: Federation, backend: BackendProcess, browser: Browser) -> None:
    """Paste a bad key: the server's reason under the field. Upload the .pub: the site's files and command, and its row."""
    keys = federation.directory / "web-keys"
    pub = site_key(keys, "clinic-web").with_suffix(".key.pub")
    ed25519 = site_key(keys, "ed-web", ("-t", "ed25519")).with_suffix(".key.pub")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        open_dashboard(page, backend.base_url, backend.token, "#/nodes")
        page.get_by_test_id("add-site").click()
        page.get_by_test_id("site-name").fill("clinic-web")
        page.get_by_test_id("site-key").fill(ed25519.read_text())
        page.get_by_test_id("site-submit").click()
        expect(page.get_by_test_id("site-key-error")).to_contain_text("not an EC key")
        page.get_by_test_id("site-key-file").set_input_files(str(pub))
        expect(page.get_by_test_id("site-key")).to_have_value(pub.read_text().strip())
        page.get_by_test_id("site-submit").click()
        expect(page.get_by_test_id("site-fingerprint")).to_have_text(ssh_fingerprint(pub))
        shown = {
            f.get_attribute("data-path"): f.get_by_test_id("site-file-content").all_inner_texts()
            for f in page.get_by_test_id("site-file").all()
        }
        assert f"FLOWERBED_FLEET_ADDRESS={FLEET_ADDRESS}" in shown[site_setup.ENV_PATH][0], shown
        assert shown[site_setup.CA_PATH][0].strip() == (federation.certs / "ca.crt").read_text().strip()
        assert shown[site_setup.KEY_PATH] == [], "the private key is never shown"
        expect(page.get_by_test_id("site-command")).to_have_text(site_setup.COMMAND)
        row = page.locator("[data-testid=node-row]", has=page.get_by_test_id("node-name").filter(has_text="clinic-web"))
        expect(row.get_by_test_id("node-fingerprint")).to_have_text(ssh_fingerprint(pub), timeout=15_000)
        page.screenshot(path=str(ROOT / "test-artifacts" / "dashboard-add-site.png"), full_page=True)
    finally:
        context.close()
    assert not errors, f"uncaught errors in the dashboard: {errors}"


def test_a_site_that_requires_signed_apps_refuses_the_platforms_unsigned_fab(
    federation: Federation, backend: BackendProcess
) -> None:
    """`FLOWERBED_TRUSTED_ENTITIES` (deploy/remote-supernode) turns on Flower's `--trusted-entities` check.

    Flower 1.41 signs FABs only on its hosted platform (the SuperLink copies signatures from Flower Hub);
    a FAB uploaded with StartRun — every run Flowerbed starts — carries none, so such a site refuses it
    with FAB_VERIFICATION_ERROR before any ClientApp starts.
    """
    keys = federation.directory / "signed-keys"
    key = site_key(keys, "signed-only")
    signer = site_key(keys, "signer", ("-t", "ed25519")).with_suffix(".key.pub")
    trusted = keys / "trusted-entities.yaml"
    trusted.write_text(f"fpk_signer: {signer.read_text().strip()}\n")
    with backend.client() as client:
        site = client.post("/nodes", json={"name": "signed-only", "public_key": key.with_suffix(".key.pub").read_text()})
        assert site.status_code == 201, site.text
        node_id = site.json()["node_id"]
        federation.spawn(
            "serverapp-executor",
            [str(BIN / "flower-superexec"), "--root-certificates", str(federation.certs / "ca.crt"),
             "--plugin-type", "serverapp", "--runtime-api-address", f"127.0.0.1:{federation.port}"],
        )  # fmt: skip
        os.environ["FLOWERBED_TRUSTED_ENTITIES"] = str(trusted)  # read by the flowerbed-supernode wrapper
        try:
            federation.spawn(
                "signed-only",
                [str(BIN / "flowerbed-supernode"), "--root-certificates", str(federation.certs / "ca.crt"),
                 "--auth-supernode-private-key", str(key), "--superlink", f"127.0.0.1:{federation.port}",
                 "--isolation", "process", "--port", str(free_port()), "--node-config", "partition-id=0 num-partitions=1"],
            )  # fmt: skip
        finally:
            del os.environ["FLOWERBED_TRUSTED_ENTITIES"]
        wait_for(lambda: (node(client, node_id) or {}).get("status") == "online", 90, "signed-only online")
        started = client.post(
            "/training/start",
            json={"num_rounds": 1, "min_nodes": 1, "min_available_nodes": 1, "max_train_examples": 100, "fraction_train": 1.0},
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        try:
            wait_for(lambda: "The FAB could not be verified" in federation.log("signed-only"), 180, "the FAB refused")
            # The refusal is the node's error reply: nothing of this run ever trains on that site.
            time.sleep(10)
            detail = client.get(f"/training/{run_id}").json()
            assert all(node_id not in {str(c["node_id"]) for c in r["clients"]} for r in detail["rounds"]), detail
        finally:
            client.post(f"/training/{run_id}/stop")
