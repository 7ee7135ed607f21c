"""One trace from the start request to every optimizer step, from real exporters."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import httpx
import pytest
from backend_fixture import traced_backend, wait_for
from otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.federation
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES, BATCH = 300, 32


def _start_and_finish(base_url: str, token: str, rounds: int) -> dict:
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    body = {
        "num_rounds": rounds,
        "min_nodes": 2,
        "min_available_nodes": 2,
        "fraction_train": 1.0,
        "max_train_examples": EXAMPLES,
        "batch_size": BATCH,
    }
    response = client.post("/training/start", json=body)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    return wait_for(
        lambda: (r := client.get(f"/training/{run_id}").json())["status"] in ("completed", "failed", "stopped") and r,
        600,
        "the run to finish",
        interval=1.0,
    )


def test_a_training_is_one_trace_from_the_request_to_every_step(start_federation, backend_factory, tmp_path):
    with OtlpReceiver() as receiver:
        otel_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        federation = start_federation(2, extra_env=otel_env)
        backend = backend_factory(tmp_path / "backend", federation.superlink_url, env=otel_env)
        run = _start_and_finish(backend.base_url, backend.token, rounds=2)
        assert run["status"] == "completed", run
        backend.stop()  # flushes the backend's batch processor
        spans = list(receiver.spans)

    trace_id = run["trace_id"]
    assert trace_id and re.fullmatch(r"[0-9a-f]{32}", trace_id)
    run_spans = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in run_spans}
    (request,) = [s for s in run_spans if s.name == "POST /training/start"]
    assert request.service == "flowerbed-backend" and not request.parent_span_id
    orphans = [s.name for s in run_spans if s.parent_span_id and s.parent_span_id not in by_id]
    assert not orphans, f"spans whose parent never arrived: {orphans}"
    # Every span the ServerApp and ClientApps made is in the run's one trace.
    flower_spans = [s for s in spans if s.service in ("flowerbed-serverapp", "flowerbed-clientapp")]
    assert {s.trace_id for s in flower_spans} == {trace_id}

    (run_span,) = [s for s in run_spans if s.name == "fl.run"]
    assert run_span.parent_span_id == request.span_id
    assert run_span.service == "flowerbed-serverapp"
    rounds = [s for s in run_spans if s.name == "fl.round"]
    assert sorted(s.attributes["fl.round"] for s in rounds) == [1, 2]
    assert all(s.parent_span_id == run_span.span_id for s in rounds)
    for name in ("aggregate", "evaluate.centralized", "checkpoint.save"):
        assert Counter(by_id[s.parent_span_id].name for s in run_spans if s.name == name)["fl.round"] == 2, name

    steps_per_epoch = math.ceil(EXAMPLES / BATCH)
    for round_span in rounds:
        trains = [s for s in run_spans if s.name == "fl.client.train" and s.parent_span_id == round_span.span_id]
        detail = next(r for r in run["rounds"] if r["round"] == round_span.attributes["fl.round"])
        assert len(trains) == len(detail["clients"]) == 2
        assert {t.attributes["fl.node_id"] for t in trains} == {c["node_id"] for c in detail["clients"]}
        for t in trains:
            assert t.service == "flowerbed-clientapp"
            epochs = [s for s in run_spans if s.name == "train.epoch" and s.parent_span_id == t.span_id]
            assert len(epochs) >= 1
            for epoch in epochs:
                steps = [s for s in run_spans if s.name == "train.step" and s.parent_span_id == epoch.span_id]
                assert len(steps) == steps_per_epoch
                assert all(isinstance(s.attributes["loss"], float) for s in steps)


def test_local_mode_backend_receives_the_trace_and_exposes_metrics(start_federation, backend_factory, tmp_path):
    """Local mode: every process exports to the backend itself; the dashboard reads it back."""
    backend = traced_backend(start_federation, backend_factory, tmp_path / "backend")
    run = _start_and_finish(backend.base_url, backend.token, rounds=1)
    assert run["status"] == "completed", run
    assert run["trace_url"] == f"/#/traces/{run['trace_id']}"

    def complete_trace():
        response = httpx.get(f"{backend.base_url}/traces/{run['trace_id']}", timeout=30)
        if response.status_code != 200:
            return None
        names = Counter(s["name"] for s in response.json()["spans"])
        return names if names["train.step"] >= 2 * math.ceil(EXAMPLES / BATCH) and names["fl.run"] else None

    names = wait_for(complete_trace, 60, "the backend to store the run's spans")
    assert names["POST /training/start"] == 1 and names["fl.round"] == 1 and names["fl.client.train"] == 2

    # Unauthenticated exports are refused like every other write.
    assert httpx.post(f"{backend.base_url}/v1/traces", content=b"", timeout=10).status_code == 401
    bad = httpx.post(
        f"{backend.base_url}/v1/traces",
        content=b"not protobuf",
        headers={"Authorization": f"Bearer {backend.token}", "Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert bad.status_code == 400 and "body" in bad.json()["detail"]

    # /metrics carries the run, and every series Grafana's dashboard queries exists.
    exposition = httpx.get(f"{backend.base_url}/metrics", timeout=10).text
    assert re.search(rf'flowerbed_round_accuracy{{run_id="{run["run_id"]}"}} {run["accuracy"]}', exposition)
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/federated-training.json").read_text())
    queried = set(re.findall(r"flowerbed_[a-z_]+", json.dumps(dashboard)))
    exposed = set(re.findall(r"^(flowerbed_[a-z_]+)", exposition, re.MULTILINE))
    assert queried and queried <= exposed, queried - exposed
