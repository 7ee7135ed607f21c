"""compose.yaml booted for real on this machine's Docker engine (stand-in bases, our images).

One stack for the module, several checks against it, in this order: health and ports first (before
any fault is injected), the images' entry points and lock, the dashboard in Chromium, traces and
Prometheus from that run, a run on each SuperNode's own mounted data, then the faults — backend
restart, SuperNode killed — and last `down` then `up` with the volumes kept. Runs are tiny (200
examples per client, 1–3 rounds; the sites' own tables: 569 rows in all).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from compose_fixture import ARTIFACTS, Booted, booted_stack
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from playwright.sync_api import expect, sync_playwright

from compose_harness.engine import run

ROOT = Path(__file__).resolve().parents[2]
# What docs/deploy.md documents as published by the base stack (Grafana is left out by the harness).
DOCUMENTED_PORTS = {"backend": ("FLOWERBED_API_PORT", 8080), "web": ("FLOWERBED_WEB_PORT", 80)}
ENTRY_POINTS = ["flowerbed", "flowerbed-supernode", "flowerbed-superexec", "flower-superlink", "flower-superexec"]
MODULES = [
    "flowerbed.cli",
    "flowerbed.api.main",
    "flowerbed_app.server_app",
    "flowerbed_app.client_app",
    "flowerbed_node.superexec",
]

pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    with booted_stack(tmp_path_factory.mktemp("compose")) as booted:
        yield booted


@pytest.fixture(scope="module")
def dashboard_run(stack: Booted) -> dict:
    """Filled by the dashboard test with the run it started in the browser."""
    return {}


@pytest.fixture
def first_run(stack: Booted, dashboard_run: dict) -> dict:
    """A completed 2-round run for the trace, Prometheus and persistence checks: the dashboard's, or
    (when that test failed) one started through the API, so one failure does not hide the others."""
    if not dashboard_run:
        run_id = stack.start_run(num_rounds=2)
        detail = stack.wait_finished(run_id)
        assert detail["status"] == "completed", detail
        dashboard_run.update(detail)
    return dashboard_run


def test_every_service_healthy_without_restarts_and_only_documented_ports(stack: Booted) -> None:
    services = {c["Service"]: c for c in stack.stack.ps()}
    assert "grafana" not in services, "the harness leaves Grafana out"
    for name, c in services.items():
        info = stack.stack.inspect(name)
        if info["Config"]["Labels"].get("org.flowerbed.one-shot") == "true":
            assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0, info["State"]
            continue
        assert c["State"] == "running", f"{name}: {c['State']} {c.get('Status')}"
        if info["Config"].get("Healthcheck"):
            assert c["Health"] == "healthy", f"{name}: {c.get('Health')}"
        assert info["RestartCount"] == 0, f"{name} restarted {info['RestartCount']} times"
    published = set()
    for name in services:
        for container_port, bindings in (stack.stack.inspect(name)["NetworkSettings"]["Ports"] or {}).items():
            for b in bindings or []:
                published.add((name, int(container_port.split("/")[0]), b["HostIp"], int(b["HostPort"])))
    env = stack.stack.env
    expected = {(svc, port, "127.0.0.1", int(env[var])) for svc, (var, port) in DOCUMENTED_PORTS.items()}
    assert published == expected, f"published {published}, documented {expected}"
    docs = (ROOT / "docs/deploy.md").read_text()
    assert all(var in docs for var, _ in DOCUMENTED_PORTS.values())


def test_each_image_has_every_entry_point_and_exactly_the_lock(stack: Booted) -> None:
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M))
    lock = {name.lower().replace("_", "-"): version for name, version in lock.items()}
    tags: dict[str, set[str]] = {}  # image id → the tags our services run
    for s in ("backend", "superexec-serverapp", "superexec-clientapp-1", "superlink", "supernode-1"):
        info = stack.stack.inspect(s)
        tags.setdefault(info["Image"], set()).add(info["Config"]["Image"])
    # backend, and the Flower image built once and tagged serverapp and clientapp: two images.
    assert sorted(len(t) for t in tags.values()) == [1, 2], tags
    images = [sorted(t)[0] for t in tags.values()]
    script = (
        f"import importlib, json, subprocess, importlib.metadata as md\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        f"for e in {ENTRY_POINTS!r}: subprocess.run([e, '--help'], check=True, capture_output=True)\n"
        f"print(json.dumps({{d.metadata['Name'].lower().replace('_', '-'): d.version for d in md.distributions()}}))\n"
    )
    for image in sorted(images):
        proc = run(["docker", "run", "--rm", "--entrypoint", "python", image, "-c", script], timeout=300, check=False)
        assert proc.returncode == 0, f"{image}: {proc.stderr[-2000:]}"
        installed = json.loads(proc.stdout.strip().splitlines()[-1])
        ours = {"flowerbed", "flowerbed-app", "flowerbed-node", "pip"}
        assert {k: v for k, v in installed.items() if k not in ours} == lock, f"{image} differs from requirements.lock"


def test_dashboard_in_chromium_runs_to_completion_through_the_web_port(stack: Booted, dashboard_run: dict) -> None:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make setup does it as root)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # The link `make compose-up` prints: a one-time login code in the fragment, traded for a session.
            page.goto(stack.stack.login_link(), timeout=120_000)
            expect(page.get_by_test_id("nav-start")).to_be_visible(timeout=120_000)
            page.get_by_test_id("nav-start").click()
            expect(page.get_by_test_id("start-form")).to_be_visible(timeout=120_000)
            page.get_by_test_id("field-num_rounds").fill("2")
            page.get_by_test_id("field-max_train_examples").fill("200")
            page.get_by_test_id("field-min_available_nodes").fill("3")
            page.get_by_test_id("field-fraction_train").fill("1")
            page.get_by_test_id("start-submit").click()
            page.wait_for_url(re.compile(r"#/runs/[^/?]+$"), timeout=120_000)
            run_id = page.url.rsplit("/", 1)[-1]
            expect(page.locator("[data-testid=run-status][data-status=completed]")).to_be_visible(timeout=900_000)
            expect(page.get_by_test_id("round-row-1")).to_be_visible()
            expect(page.get_by_test_id("round-row-2")).to_be_visible()
            expect(page.get_by_test_id("checkpoints-card").get_by_test_id("checkpoint-row")).to_have_count(2, timeout=60_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "compose-dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    # The page shows `completed` from the stream's run_finished event, a moment before the API's status
    # (set when Flower reports the run finished) says so.
    stack.wait_finished(run_id, timeout=120)
    # curl through the same port: the REST API behind nginx, with the token; reads without it are refused.
    curl = ["curl", "-sS", "--max-time", "30"]
    detail = json.loads(run([*curl, "-f", "-H", f"Authorization: Bearer {stack.token}", f"{stack.web}/training/{run_id}"]).stdout)
    assert detail["status"] == "completed" and [r["round"] for r in detail["rounds"]] == [1, 2]
    for base in (stack.web, stack.api):
        code = run([*curl, "-o", "/dev/null", "-w", "%{http_code}", f"{base}/training/{run_id}"]).stdout
        assert code == "401", f"an unauthenticated read through {base} answered {code}"
    dashboard_run.update(detail)


def _spans(stack: Booted) -> list[dict]:
    """Every span the OTLP sink at Tempo's address received (decoded here, not by the sink)."""
    with tempfile.TemporaryDirectory() as tmp:
        stack.stack.compose("cp", "tempo:/var/tempo/otlp", tmp)
        spans = []
        for path in Path(tmp, "otlp").glob("*.pb"):
            request = ExportTraceServiceRequest()
            request.ParseFromString(path.read_bytes())
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value or a.value.int_value for a in rs.resource.attributes}
                for scope in rs.scope_spans:
                    spans += [{"trace_id": s.trace_id.hex(), "name": s.name, **resource} for s in scope.spans]
        return spans


def test_spans_from_backend_serverapp_and_clientapps_reach_tempo_under_one_trace(stack: Booted, first_run: dict) -> None:
    trace_id = first_run["trace_id"]
    assert trace_id, first_run
    deadline = time.monotonic() + 60
    while True:
        mine = [s for s in _spans(stack) if s["trace_id"] == trace_id]
        services = {s["service.name"] for s in mine}
        clients = {s.get("flowerbed.partition_id") for s in mine if s["service.name"] == "flowerbed-clientapp"}
        if ({"flowerbed-backend", "flowerbed-serverapp"} <= services and len(clients) >= 2) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert {"flowerbed-backend", "flowerbed-serverapp", "flowerbed-clientapp"} <= services, services
    assert len(clients) >= 2, f"spans from ClientApps of partitions {clients} only"
    assert {"fl.run", "fl.round", "fl.client.train"} <= {s["name"] for s in mine}


def test_prometheus_scrapes_the_backend_metrics_port(stack: Booted, first_run: dict) -> None:
    query = "http://localhost:9090/api/v1/query?query=flowerbed_runs_total"
    deadline = time.monotonic() + 90
    while True:
        out = stack.stack.exec("prometheus", "wget", "-qO-", query).stdout
        result = json.loads(out)["data"]["result"]
        if any(r["metric"].get("status") == "completed" for r in result) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert any(r["metric"].get("status") == "completed" and float(r["value"][1]) >= 1 for r in result), out
    assert all(r["metric"]["instance"] == "backend:9464" for r in result), result
    # The metrics port answers inside the network only: nothing publishes 9464.
    ports = stack.stack.inspect("backend")["NetworkSettings"]["Ports"]
    assert not ports.get("9464/tcp"), ports


def test_each_site_trains_on_the_directory_mounted_read_only_for_its_supernode(stack: Booted, tmp_path: Path) -> None:
    """data_source=node on the real stack: the demo hospitals' tables, one per SuperNode's mounted
    directory (written while the stack runs), train `mlp`; each node describes its own site."""
    demo = [sys.executable, "-m", "flowerbed.cli", "demo-data", "--sites", "3", "--out", str(tmp_path), "--images-per-site", "10"]
    run(demo, timeout=300)
    expected = {}
    for n, directory in enumerate(stack.node_data, start=1):
        shutil.copy(tmp_path / "breast-cancer" / f"site-{n}" / "records.csv", directory / "records.csv")
        (directory / "records.csv").chmod(0o644)
        expected[f"site-{n}"] = len(pd.read_csv(directory / "records.csv"))
        mounts = {m["Destination"]: m for m in stack.stack.inspect(f"superexec-clientapp-{n}")["Mounts"]}
        mount = mounts[f"/data/site-{n}"]
        assert mount["Source"] == str(directory) and mount["RW"] is False, mount
    assert len(set(expected.values())) == 3, expected  # uneven sites: a swapped mount would show

    run_id = stack.start_run(
        data_source="node",
        model="mlp",
        num_rounds=3,
        max_train_examples=0,
        min_nodes=3,
        fraction_evaluate=1.0,
        learning_rate=0.05,
        local_epochs=2,
        batch_size=16,
    )
    detail = stack.wait_finished(run_id)
    assert detail["status"] == "completed", {k: detail.get(k) for k in ("status", "error", "node_data")}
    assert detail["accuracy_kind"] == "federated" and len(detail["rounds"]) == 3
    assert all(r["accuracy_kind"] == "federated" for r in detail["rounds"])
    assert detail["accuracy"] == detail["rounds"][-1]["federated_evaluation"]["eval-accuracy"]
    assert detail["accuracy"] >= 0.9, [r["accuracy"] for r in detail["rounds"]]
    described = detail["node_data"]
    assert not described["failures"], described["failures"]
    assert {n["site"]: n["examples"] for n in described["nodes"]} == expected, described["nodes"]
    assert all(n["format"] == "table" and len(n["columns"]) == 30 for n in described["nodes"])
    # GET /nodes shows each node's description from this run: the site it was given, its count.
    nodes = {n["node_id"]: n for n in stack.json("GET", "/nodes")["items"]}
    for node in described["nodes"]:
        data = nodes[node["node_id"]]["data"]
        assert data["run_id"] == run_id and data["site"] == node["site"], data
        assert data["examples"] == expected[node["site"]], data
    # Read-only inside the executor too: the ClientApp's user cannot write a site's data.
    proc = stack.stack.exec("superexec-clientapp-1", "python", "-c", "open('/data/site-1/x', 'w')", check=False)
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr, proc.stderr[-500:]


def test_backend_restarted_mid_run_completes_and_records_every_round_once(stack: Booted) -> None:
    run_id = stack.start_run(num_rounds=2)
    stack.wait_run(run_id, lambda d: d["rounds_completed"] >= 1, 900, "past round 1")
    stack.stack.compose("restart", "backend", timeout=120)
    stack.wait_healthy()
    detail = stack.wait_finished(run_id)
    assert detail["status"] == "completed", detail
    assert [r["round"] for r in detail["rounds"]] == [1, 2]
    # The stored event stream (it ends for a finished run): each round finished exactly once.
    status, _, body = stack.request("GET", f"/training/{run_id}/events")
    assert status == 200
    finished = [
        json.loads(block.split("data: ", 1)[1])["round"]
        for block in body.decode().split("\n\n")
        if "event: round_finished" in block
    ]
    assert finished == [1, 2], finished


def test_killed_supernode_is_recorded_and_the_run_completes(stack: Booted) -> None:
    # The victim is frozen before the run starts, so round 1 samples it (it is still registered: the
    # SuperLink drops a node only after two missed 30 s heartbeats) and it can never answer; it is then
    # killed mid-run. Killing it only once its round-1 reply was sent would record nothing: tiny rounds
    # finish in seconds. Round 1 records its failure when the SuperLink gives up on it; round 2 runs on
    # the two nodes left (min-available-nodes 2 lets it start without the victim).
    victim = stack.stack.container("supernode-3")
    run(["docker", "pause", victim])
    try:
        run_id = stack.start_run(num_rounds=2, min_nodes=2, min_available_nodes=2)
        stack.wait_run(run_id, lambda d: d["status"] == "running", 600, "running")
        run(["docker", "kill", victim])
        detail = stack.wait_finished(run_id)
        assert detail["status"] == "completed", {k: detail.get(k) for k in ("status", "error", "rounds")}
        first = detail["rounds"][0]
        assert len(first["failures"]) == 1 and len(first["clients"]) == 2, first
        assert len(detail["rounds"]) == 2, detail["rounds"]
    finally:
        run(["docker", "unpause", victim], check=False)
        run(["docker", "start", victim], check=False)
        stack.wait_healthy()


def test_history_and_checkpoints_survive_down_then_up(stack: Booted, first_run: dict) -> None:
    before = stack.json("GET", "/training?limit=100")
    models = stack.json("GET", f"/models?run_id={first_run['run_id']}")["items"]
    assert len(models) == 2
    stack.stack.down(volumes=False)
    assert not stack.stack.ps(), "down left containers behind"
    stack.stack.up()
    after = stack.json("GET", "/training?limit=100")
    assert {(r["run_id"], r["status"]) for r in after["items"]} == {(r["run_id"], r["status"]) for r in before["items"]}
    assert stack.json("GET", f"/models?run_id={first_run['run_id']}")["items"] == models
    for model in models:
        status, _, body = stack.request("GET", f"/models/{model['model_id']}/download", base=stack.web)
        assert status == 200, body[:300]
        assert hashlib.sha256(body).hexdigest() == model["sha256"], model["model_id"]
