"""Real runs through the REST API: SSE progress, history, concurrency, stop and resume.

Against a `flowerbed serve` process and a real 2-node federation, once with SQLite and
once with PostgreSQL as the backend's database (`any_backend`). Runs are small (200
examples per client) because the machine is shared; correctness, not speed, is what
is checked here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from backend_fixture import Backend, read_sse, start_run, wait_for
from federation_runs import warm_caches

pytestmark = pytest.mark.federation


def warm_partitions(backend: Backend, *seeds: int) -> None:
    """Build the partitions of these seeds' runs here first: a new seed is a cache miss in every ClientApp at once,
    each importing `datasets` (CI: run A's setup 104 s on SQLite, where seeds 1 and 2 are new, 54 s on PostgreSQL)."""
    nodes = sum(process.role == "supernode" for process in backend.federation.processes)
    for seed in seeds:
        warm_caches(nodes, {"seed": seed})


@pytest.fixture(scope="module")
def two_runs(any_backend: Backend) -> dict[str, dict]:
    """Runs A (2 rounds) and B (1 round) started together; their SSE streams read to the end."""
    warm_partitions(any_backend, 1, 2)
    with any_backend.client() as client:
        a = start_run(client, num_rounds=2, seed=1)
        b = start_run(client, num_rounds=1, seed=2)
    streams: dict[str, list[dict]] = {}

    def read(run: dict) -> None:
        streams[run["run_id"]] = read_sse(any_backend.base_url, any_backend.token, run["run_id"], timeout=900)

    polls: list[tuple[str, bytes]] = []  # (ETag, body) of run A's detail, read while it runs
    done = threading.Event()

    def poll() -> None:
        with any_backend.client() as client:
            while not done.is_set():
                response = client.get(f"/training/{a['run_id']}")
                polls.append((response.headers["etag"], response.content))
                done.wait(0.3)

    threads = [threading.Thread(target=read, args=(run,)) for run in (a, b)]
    poller = threading.Thread(target=poll)
    for thread in [*threads, poller]:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    done.set()
    poller.join(timeout=60)
    with any_backend.client() as client:
        runs = {
            name: {"start": run, "events": streams[run["run_id"]], "detail": client.get(f"/training/{run['run_id']}").json()}
            for name, run in (("a", a), ("b", b))
        }
    runs["a"]["polls"] = polls
    return runs


def test_run_detail_changes_with_its_etag_and_is_never_stale(two_runs: dict, any_backend: Backend) -> None:
    """The detail is served from a cache keyed by the run's revision: every change must show."""
    polls, final = two_runs["a"]["polls"], two_runs["a"]["detail"]
    bodies_by_etag: dict[str, set[bytes]] = {}
    for etag, body in polls:
        bodies_by_etag.setdefault(etag, set()).add(body)
    assert all(len(bodies) == 1 for bodies in bodies_by_etag.values())  # one ETag, one body
    seen = [json.loads(body) for _, body in polls]
    progress = [(d["rounds_completed"], d["status"]) for d in seen]
    assert [r for r, _ in progress] == sorted(r for r, _ in progress)  # never goes back
    assert len(bodies_by_etag) >= 3, progress  # it moved while we watched (pending/running → rounds → completed)
    with any_backend.client() as client:
        response = client.get(f"/training/{final['run_id']}")
        assert response.json() == final and response.json()["rounds_completed"] == 2
        etag = response.headers["etag"]
        unchanged = client.get(f"/training/{final['run_id']}", headers={"If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag and not unchanged.content
        assert client.get(f"/training/{final['run_id']}", headers={"If-None-Match": '"0.0"'}).status_code == 200


def test_run_completes_with_a_round_finished_event_per_round(two_runs: dict, any_backend: Backend) -> None:
    run = two_runs["a"]
    start, events, detail = run["start"], run["events"], run["detail"]
    assert start["status"] == "pending"
    assert isinstance(start["flower_run_id"], str) and int(start["flower_run_id"]) > 0
    assert detail["status"] == "completed", detail["error"]
    finished = [e for e in events if e["event"] == "round_finished"]
    assert [e["data"]["round"] for e in finished] == [1, 2]
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})  # unique, increasing ids
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses == ["pending", "running", "completed"]
    assert events[-1]["event"] == "status"
    # The stored rounds are the streamed rounds.
    assert [r["round"] for r in detail["rounds"]] == [1, 2]
    for streamed, stored in zip(finished, detail["rounds"], strict=True):
        assert stored["accuracy"] == streamed["data"]["accuracy"]
        assert stored["loss"] == streamed["data"]["loss"]
        assert stored["model_id"] == streamed["data"]["model_id"]
        assert {c["partition_id"] for c in stored["clients"]} == {0, 1}
        assert all(isinstance(c["node_id"], str) for c in stored["clients"])
    assert detail["rounds_completed"] == detail["num_rounds"] == 2
    assert detail["accuracy"] == finished[-1]["data"]["accuracy"]
    assert detail["bytes_sent"] > 0 and detail["bytes_received"] > 0
    assert detail["started_at"] and detail["finished_at"]
    # Replay after Last-Event-ID gives exactly the rest.
    tail = read_sse(any_backend.base_url, any_backend.token, start["run_id"], last_event_id=events[2]["id"])
    assert [e["id"] for e in tail] == [e["id"] for e in events[3:]]
    # Flower itself knows the run.
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "flwr"), "ls", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLWR_HOME": str(Path(any_backend.federation.data_dir) / "flwr-home")},
        cwd=any_backend.federation.data_dir,
    )
    assert listing.returncode == 0, listing.stderr
    assert start["flower_run_id"] in listing.stdout
    ids = {str(r.get("run-id")) for r in json.loads(listing.stdout).get("runs", [])}
    assert start["flower_run_id"] in ids
    # Logs and models of the run are served.
    with any_backend.client() as client:
        logs = client.get(f"/training/{start['run_id']}/logs").json()
        assert "FLOWERBED_EVENT" in logs["logs"] and logs["next_offset"] is None
        # Paginated by lines: pages of 3 put together are the whole log.
        lines, offset = [], 0
        while offset is not None:
            page = client.get(f"/training/{start['run_id']}/logs", params={"offset": offset, "limit": 3}).json()
            assert page["logs"].count("\n") <= 3
            lines.append(page["logs"])
            offset = page["next_offset"]
        assert "".join(lines) == logs["logs"] and len(lines) > 2
        models = client.get("/models", params={"run_id": start["run_id"]}).json()["items"]
        assert [m["round"] for m in models] == [1, 2]
        download = client.get(f"/models/{models[-1]['model_id']}/download")
        assert download.status_code == 200
        assert download.headers["x-checksum-sha256"] == models[-1]["sha256"]
        assert hashlib.sha256(download.content).hexdigest() == models[-1]["sha256"]
        assert int(download.headers["content-length"]) == models[-1]["size"] == len(download.content)
        listed = client.get("/training", params={"status": "completed"}).json()
        assert start["run_id"] in [r["run_id"] for r in listed["items"]]


def test_concurrent_runs_do_not_mix(two_runs: dict) -> None:
    a, b = two_runs["a"], two_runs["b"]
    assert a["detail"]["status"] == b["detail"]["status"] == "completed"
    assert a["start"]["flower_run_id"] != b["start"]["flower_run_id"]
    assert [r["round"] for r in b["detail"]["rounds"]] == [1]
    for run in (a, b):
        run_id, flower_run_id = run["start"]["run_id"], run["start"]["flower_run_id"]
        for event in run["events"]:
            assert event["data"]["run_id"] == run_id
            if event["event"] != "status":
                assert event["data"]["flower_run_id"] == flower_run_id
        for stored in run["detail"]["rounds"]:
            assert stored["model_id"].startswith(run_id)
    assert a["detail"]["config"]["seed"] == 1 and b["detail"]["config"]["seed"] == 2


def test_stopping_a_finished_run_is_409(two_runs: dict, any_backend: Backend) -> None:
    run_id = two_runs["b"]["start"]["run_id"]
    with any_backend.client() as client:
        response = client.post(f"/training/{run_id}/stop")
    assert response.status_code == 409
    assert response.json() == {"detail": f"run {run_id} is already completed"}


def test_resume_continues_at_the_next_round(two_runs: dict, any_backend: Backend) -> None:
    model_id = two_runs["a"]["detail"]["rounds"][-1]["model_id"]
    assert model_id.endswith("-round-0002")
    warm_partitions(any_backend, 3)
    with any_backend.client() as client:
        run = start_run(client, num_rounds=1, from_checkpoint=model_id, seed=3)
        events = read_sse(any_backend.base_url, any_backend.token, run["run_id"], timeout=600)
        detail = client.get(f"/training/{run['run_id']}").json()
    assert detail["status"] == "completed", detail["error"]
    assert detail["from_checkpoint"] == model_id
    assert [e["data"]["round"] for e in events if e["event"] == "round_finished"] == [3]
    assert [r["round"] for r in detail["rounds"]] == [3]
    assert detail["rounds"][0]["model_id"] == f"{run['run_id']}-round-0003"


def test_stop_mid_run(any_backend: Backend) -> None:
    with any_backend.client() as client:
        run = start_run(client, num_rounds=50)
        run_id = run["run_id"]
        wait_for(lambda: client.get(f"/training/{run_id}").json()["status"] == "running", 300, "the run to be running")
        busy = client.delete(f"/training/{run_id}")
        assert busy.status_code == 409 and "is running: stop it" in busy.json()["detail"]
        response = client.post(f"/training/{run_id}/stop")
        assert response.status_code == 202
        assert response.json() == {"run_id": run_id, "status": "stopping"}
        events = read_sse(any_backend.base_url, any_backend.token, run_id, timeout=300)
        assert events[-1]["data"]["status"] == "stopped"
        detail = client.get(f"/training/{run_id}").json()
        assert detail["status"] == "stopped"
        assert detail["rounds_completed"] < 50
        again = client.post(f"/training/{run_id}/stop")
        assert again.status_code == 409
        assert again.json() == {"detail": f"run {run_id} is already stopped"}


def test_deleting_a_finished_run_removes_its_history_and_checkpoints(two_runs: dict, any_backend: Backend) -> None:
    """DELETE /training/{id}: the run, its events, rounds, logs and checkpoint files are gone; others stay."""
    doomed, kept = two_runs["b"]["start"]["run_id"], two_runs["a"]["start"]["run_id"]
    store = any_backend.data_dir / "models"
    assert (store / doomed).is_dir()
    with any_backend.client() as client:
        response = client.delete(f"/training/{doomed}")
        assert response.status_code == 200, response.text
        deleted = response.json()
        assert deleted["run_id"] == doomed and deleted["checkpoints"] == 1 and deleted["rounds"] == 1
        assert deleted["events"] == len(two_runs["b"]["events"]) and deleted["log_chunks"] >= 1
        assert not (store / doomed).exists()
        for path in (f"/training/{doomed}", f"/training/{doomed}/logs", f"/training/{doomed}/events"):
            assert client.get(path).status_code == 404, path
        assert client.get("/models", params={"run_id": doomed}).json() == {"items": []}
        assert client.delete(f"/training/{doomed}").status_code == 404
        listed = [r["run_id"] for r in client.get("/training", params={"limit": 500}).json()["items"]]
        assert doomed not in listed and kept in listed
        assert client.get(f"/training/{kept}").json()["rounds_completed"] == 2
        assert len(client.get("/models", params={"run_id": kept}).json()["items"]) == 2
