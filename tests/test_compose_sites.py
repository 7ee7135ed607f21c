"""Many sites on their own Docker networks: onboarding through the platform, partitions and rejoin.

One orchestrator stack (compose.yaml + the TLS overlay, without its own SuperNodes) and three sites,
each the unchanged deploy/remote-supernode compose project on a network of its own. A site reaches the
orchestrator only at the fleet proxy's published port: the port is published on the Docker host's
bridge address, and a site knows the central host by name (`extra_hosts`), as a site on another host
would. Each site is added through POST /nodes (its key pair made on the site, only the .pub sent) and
runs with the .env and CA certificate the answer holds. Then, on the same stack, one after the other:
a site cut off mid-round; a site's SuperNode container restarted; the SuperLink restarted mid-run and
the run resumed; a site revoked. Each scenario's duration is printed for BENCHMARKS/CI accounting.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from compose_fixture import ROOT, Booted, booted_stack

from compose_harness import engine, remote
from compose_harness.engine import run
from compose_harness.stack import ComposeStack
from flowerbed import site_setup

pytestmark = pytest.mark.timeout(1800)
CENTRAL_HOST = "flowerbed-central"  # the name sites dial; in the server certificate's SANs
ORCHESTRATOR = ("backend", "fleet-proxy", "superexec-serverapp")  # and what they depend on: no local SuperNodes
SITES = ("site-a", "site-b", "site-c")


@dataclass
class Site:
    name: str
    node_id: str
    stack: ComposeStack


@dataclass
class Federation:
    central: Booted
    sites: dict[str, Site]

    def online(self) -> dict[str, str]:
        """node_id → site name of the online nodes."""
        items = self.central.json("GET", "/nodes")["items"]
        return {n["node_id"]: n["name"] for n in items if n["status"] == "online"}

    def wait_online(self, names: set[str], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while set(self.online().values()) != names:
            assert time.monotonic() < deadline, f"online: {self.online()}, expected {names}\n{self.central.json('GET', '/nodes')}"
            time.sleep(3)


def bridge_gateway() -> str:
    """The Docker host's address on its default bridge: what containers on any network can reach it at."""
    out = run(["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"]).stdout.strip()
    assert out, "the default bridge network has no gateway"
    return out


def site_env(answer: dict) -> dict[str, str]:
    """The .env POST /nodes wrote, minus the two paths the test puts outside the repository."""
    (env_file,) = [f for f in answer["setup"]["files"] if f["path"] == site_setup.ENV_PATH]
    env = dict(line.split("=", 1) for line in env_file["content"].splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in env.items() if k not in ("FLOWERBED_REMOTE_CERT_DIR", "FLOWERBED_NODE_DATA")}


def add_site(central: Booted, workdir: Path, name: str, partition_id: int, gateway: str) -> Site:
    cert_dir = workdir / name / "certs"
    pub = remote.make_site_keys(cert_dir, b"")  # the site's own key pair; the CA comes from the platform below
    answer = central.json(
        "POST", "/nodes", {"name": name, "public_key": pub.read_text(), "partition_id": partition_id, "num_partitions": 3}
    )
    files = {f["path"]: f["content"] for f in answer["setup"]["files"]}
    (cert_dir / "ca.crt").write_text(files[site_setup.CA_PATH])
    env = site_env(answer)
    assert env["FLOWERBED_FLEET_ADDRESS"] == f"{CENTRAL_HOST}:{central.stack.env['FLOWERBED_FLEET_PORT']}", env
    stack = remote.site(central.stack, name, cert_dir, partition_id, 3, own_network={CENTRAL_HOST: gateway}, env=env)
    return Site(name, answer["node_id"], stack)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    workdir = tmp_path_factory.mktemp("compose-sites")
    started = time.monotonic()
    try:
        engine.ensure_engine(ROOT / ".flowerbed")  # booted_stack does it too; the bridge's address is needed first
    except engine.EngineUnavailable as error:
        pytest.fail(f"the compose tests need a Docker engine: {error}")
    gateway = bridge_gateway()
    env = {"FLOWERBED_PUBLIC_HOSTNAME": CENTRAL_HOST, "FLOWERBED_FLEET_BIND_ADDRESS": gateway}
    with booted_stack(workdir, tls=True, services=ORCHESTRATOR, extra_env=env) as central:
        sites: dict[str, Site] = {}
        try:
            for i, name in enumerate(SITES):
                sites[name] = add_site(central, workdir, name, i, gateway)
            for site in sites.values():
                site.stack.up(timeout=300)
            fed = Federation(central, sites)
            fed.wait_online(set(SITES))
            print(f"\n[sites] orchestrator + 3 sites up in {time.monotonic() - started:.0f}s")
            yield fed
        finally:
            for site in sites.values():
                site.stack.down(volumes=True)


def supernode_container(site: Site) -> str:
    return site.stack.container("supernode")


def networks_of(container: str) -> set[str]:
    return set(json.loads(run(["docker", "inspect", container]).stdout)[0]["NetworkSettings"]["Networks"])


def clients_of(round_: dict) -> set[str]:
    return {str(c["node_id"]) for c in round_["clients"]}


def timed(name: str, started: float) -> None:
    print(f"\n[sites] {name}: {time.monotonic() - started:.0f}s")


def test_three_sites_added_through_the_platform_train_over_tls(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    for site in federation.sites.values():
        # Its own network only: no orchestrator container on it, the orchestrator's network not joined.
        assert networks_of(supernode_container(site)) == {site.stack.network()}, site.name
        on_site_network = json.loads(run(["docker", "network", "inspect", site.stack.network()]).stdout)[0]["Containers"]
        assert all(c["Name"].startswith(site.stack.project) for c in on_site_network.values()), on_site_network
    nodes = {n["node_id"]: n for n in central.json("GET", "/nodes")["items"]}
    for site in federation.sites.values():
        assert nodes[site.node_id]["name"] == site.name and nodes[site.node_id]["status"] == "online"
        assert nodes[site.node_id]["key_fingerprint"].startswith("SHA256:")
    assert "/v1/fleet/" in central.stack.logs("fleet-proxy", tail=2000), "the sites did not come through the proxy"

    run_id = central.start_run(num_rounds=1, min_available_nodes=3)
    detail = central.wait_finished(run_id, timeout=900)
    assert detail["status"] == "completed", detail
    assert clients_of(detail["rounds"][0]) == {s.node_id for s in federation.sites.values()}, detail["rounds"][0]
    timed("3 sites, 1 round over TLS", started)


def test_a_site_cut_off_mid_round_fails_that_round_then_trains_again(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    site = federation.sites["site-c"]
    container = supernode_container(site)
    restarts_before = json.loads(run(["docker", "inspect", container]).stdout)[0]["RestartCount"]
    run_id = central.start_run(num_rounds=2, min_available_nodes=2)
    central.wait_run(run_id, lambda d: d["status"] == "running", 300, "running")
    time.sleep(5)  # the round's train messages are out
    run(["docker", "network", "disconnect", site.stack.network(), container])
    cut_at = time.monotonic()
    try:
        # Cut off until the SuperLink gives the node up (no heartbeat for 2 × its interval): that fails its reply.
        deadline = time.monotonic() + 300
        while site.node_id in federation.online():
            assert time.monotonic() < deadline, "the cut-off site is still online after 300 s"
            time.sleep(3)
        print(f"\n[sites] site-c offline {time.monotonic() - cut_at:.0f}s after the cut")
    finally:
        run(["docker", "network", "connect", site.stack.network(), container])
    detail = central.wait_run(run_id, lambda d: len(d["rounds"]) >= 1 or d["status"] != "running", 600, "round 1 over")
    first = detail["rounds"][0]
    assert site.node_id in {str(f["node_id"]) for f in first["failures"]}, first
    assert site.node_id not in clients_of(first) and len(clients_of(first)) == 2, first
    detail = central.wait_finished(run_id, timeout=900)
    assert detail["status"] == "completed", detail
    later = [r["round"] for r in detail["rounds"][1:] if site.node_id in clients_of(r)]
    restarts_after = json.loads(run(["docker", "inspect", container]).stdout)[0]["RestartCount"]
    print(f"\n[sites] site-c trained again in rounds {later}; container restarts {restarts_before} → {restarts_after}")
    assert later, [(r["round"], clients_of(r), r["failures"]) for r in detail["rounds"]]
    timed("cut off mid-round and back", started)


def test_a_restarted_site_rejoins_with_its_key_and_trains_in_the_next_run(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    site = federation.sites["site-b"]
    site.stack.compose("restart", "supernode", timeout=180)
    federation.wait_online(set(SITES))
    run_id = central.start_run(num_rounds=1, min_available_nodes=3)
    detail = central.wait_finished(run_id, timeout=900)
    assert detail["status"] == "completed", detail
    # The same node id: with node authentication the node is its key, not a new registration (flwr#4844).
    assert clients_of(detail["rounds"][0]) == {s.node_id for s in federation.sites.values()}, detail["rounds"][0]
    timed("site SuperNode restarted, next run", started)


def test_the_superlink_restarted_mid_run_fails_it_with_the_reason_and_one_call_resumes_it(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    run_id = central.start_run(num_rounds=2, min_available_nodes=3)
    central.wait_run(run_id, lambda d: len(d["rounds"]) >= 1, 600, "round 1 done")
    central.stack.compose("restart", "superlink", timeout=300)
    failed = central.wait_run(run_id, lambda d: d["status"] != "running", 300, "over after the restart")
    assert failed["status"] == "failed" and failed["error"], failed
    print(f"\n[sites] failed with: {failed['error']}")
    federation.wait_online(set(SITES))  # the sites reconnect by themselves
    resumed = central.json("POST", f"/training/{run_id}/resume")
    detail = central.wait_finished(resumed["run_id"], timeout=900)
    assert detail["status"] == "completed", detail
    assert detail["resumed_from"] == run_id and detail["from_checkpoint"]
    # Numbered on from its checkpoint's round: the resumed run ends with the original last round, round 1 not redone.
    assert [r["round"] for r in detail["rounds"]] == [2], [r["round"] for r in detail["rounds"]]
    timed("SuperLink restarted mid-run, resumed", started)


def test_a_revoked_site_is_refused_and_the_others_train_on(federation: Federation) -> None:
    started = time.monotonic()
    central = federation.central
    site = federation.sites["site-a"]
    status, _, body = central.request("DELETE", f"/nodes/{site.node_id}")
    assert status == 204, body
    federation.wait_online({"site-b", "site-c"}, timeout=120)
    container = supernode_container(site)
    deadline = time.monotonic() + 120
    logs = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
        logs = proc.stdout + proc.stderr
        if "Failed to activate" in logs or "PERMISSION_DENIED" in logs.upper() or "401" in logs:
            break
        time.sleep(3)
    assert "Failed to activate" in logs or "401" in logs or "PERMISSION_DENIED" in logs.upper(), logs[-2000:]
    run_id = central.start_run(num_rounds=1, min_available_nodes=2)
    detail = central.wait_finished(run_id, timeout=900)
    assert detail["status"] == "completed", detail
    assert clients_of(detail["rounds"][0]) == {federation.sites[n].node_id for n in ("site-b", "site-c")}
    assert site.node_id not in federation.online()
    timed("revoked site refused, others train", started)
