"""Faults against real processes: a SuperLink killed mid-run, a backend killed holding half a log line.

- SuperLink SIGKILLed mid-run: the backend records the run `failed`, with the reason, within
  FLOWERBED_SUPERLINK_LOST_SECONDS whether or not the SuperLink comes back; once it is back,
  one call (POST /training/{id}/resume) continues the run from its last checkpoint to the end.
- Backend SIGKILLed while it holds the first half of the `run_finished` line (Flower uploads
  each write to stdout as its own log entry, so a line can arrive in two chunks): after a
  restart the line is complete, the event is stored and the run is `completed`, not `failed`.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
from backend_fixture import QUICK_RUN, read_sse, wait_for
from process_restart import kill, start_again

from flowerbed.flower_control import FlowerControl
from flowerbed_app.runtime.progress_events import PREFIX

pytestmark = pytest.mark.federation
ROOT = Path(__file__).resolve().parents[2]
LOST_SECONDS = 20
TERMINAL = ("completed", "failed", "stopped")


def _status(client: httpx.Client, run_id: str) -> dict:
    return client.get(f"/training/{run_id}").json()


def test_superlink_killed_mid_run_fails_the_run_with_the_reason_then_resume_completes_it(
    start_federation, backend_factory, tmp_path: Path
) -> None:
    federation = start_federation(2)
    backend = backend_factory(
        tmp_path / "backend", federation.superlink_url, env={"FLOWERBED_SUPERLINK_LOST_SECONDS": str(LOST_SECONDS)}
    )
    client = backend.client()
    started = client.post("/training/start", json={**QUICK_RUN, "num_rounds": 4})
    assert started.status_code == 202, started.text
    run_id, flower_run_id = started.json()["run_id"], int(started.json()["flower_run_id"])
    wait_for(lambda: _status(client, run_id)["rounds_completed"] >= 1, 600, "round 1")

    argv, env = kill(federation, "superlink")
    killed_at = time.monotonic()
    # Bounded: failed with the reason while the SuperLink is still down, not whenever it returns.
    failed = wait_for(
        lambda: (run := _status(client, run_id))["status"] != "running" and run, LOST_SECONDS + 30, "the run to be failed"
    )
    lost_after = time.monotonic() - killed_at
    assert failed["status"] == "failed", failed
    assert failed["error"].startswith(f"lost the SuperLink at {federation.superlink_url}: no answer for "), failed["error"]
    assert f"POST /training/{run_id}/resume continues it" in failed["error"]
    assert LOST_SECONDS - 1 <= lost_after <= LOST_SECONDS + 15, lost_after
    done = failed["rounds_completed"]
    assert 1 <= done < 4

    # Resuming needs the SuperLink: refused with the reason while it is down.
    unavailable = client.post(f"/training/{run_id}/resume")
    assert unavailable.status_code == 503, unavailable.text

    start_again(federation, "superlink", argv, env)
    control = FlowerControl(federation.superlink_url)
    wait_for(lambda: _online(control) == 2, 120, "both SuperNodes back on the SuperLink", 1.0)

    resumed = client.post(f"/training/{run_id}/resume")
    assert resumed.status_code == 202, resumed.text
    new = resumed.json()
    # From the run's newest checkpoint at that moment (Flower may have carried the old run on a
    # little after the SuperLink came back, until the resume stopped it).
    checkpoints = {m["model_id"]: m["round"] for m in client.get("/models", params={"run_id": run_id}).json()["items"]}
    assert new["resumed_from"] == run_id and new["run_id"] != run_id
    resumed_round = checkpoints[new["config"]["from_checkpoint"]]
    assert resumed_round >= done and new["config"]["num_rounds"] == 4 - resumed_round
    # Flower's copy of the old run is over: the same rounds are never trained twice.
    assert wait_for(lambda: (r := control.get_run(flower_run_id)) is not None and r.finished, 120, "the old run to end")

    events = read_sse(backend.base_url, backend.token, new["run_id"], timeout=900)
    detail = _status(client, new["run_id"])
    assert detail["status"] == "completed", detail["error"]
    rounds = [e["data"]["round"] for e in events if e["event"] == "round_finished"]
    assert rounds == list(range(resumed_round + 1, 5))
    assert detail["from_checkpoint"] == new["config"]["from_checkpoint"] and detail["resumed_from"] == run_id
    # The failed run keeps its status and reason; it can be resumed only once.
    assert _status(client, run_id)["status"] == "failed"
    again = client.post(f"/training/{run_id}/resume")
    assert again.status_code == 409 and new["run_id"] in again.json()["detail"]
    assert client.post(f"/training/{new['run_id']}/resume").status_code == 409  # completed
    client.close()


def _online(control: FlowerControl) -> int:
    try:
        return control.online_node_count()
    except Exception:
        return 0


def _half_line_app(directory: Path) -> Path:
    """A Flower App from tests/support/half_line_app with the real app's run-config keys (Flower refuses unknown ones)."""
    pyproject = (ROOT / "services/flowerapp/pyproject.toml").read_text()
    for old, new in {
        'name = "flowerbed-app"': 'name = "half-line-app"',
        'packages = ["flowerbed_app"]': 'packages = ["half_line_app"]',
        'serverapp = "flowerbed_app.server_app:app"': 'serverapp = "half_line_app.server_app:app"',
        'clientapp = "flowerbed_app.client_app:app"': 'clientapp = "half_line_app.server_app:client"',
    }.items():
        assert pyproject.count(old) == 1, old
        pyproject = pyproject.replace(old, new)
    (directory / "half_line_app").mkdir(parents=True)
    (directory / "pyproject.toml").write_text(pyproject)
    for name in ("__init__.py", "server_app.py"):
        shutil.copy(Path(__file__).parents[1] / "support" / "half_line_app" / name, directory / "half_line_app" / name)
    return directory


def test_backend_killed_holding_half_a_line_loses_no_event(start_federation, backend_factory, tmp_path: Path) -> None:
    federation = start_federation(1)
    store = tmp_path / "store"
    env = {"FLOWERBED_APP_DIR": str(_half_line_app(tmp_path / "app")), "FLOWERBED_MODEL_STORE": str(store)}
    first = backend_factory(tmp_path / "backend", federation.superlink_url, env=env)
    first_client = first.client()
    started = first_client.post("/training/start", json={"num_rounds": 1, "min_nodes": 1, "min_available_nodes": 1})
    assert started.status_code == 202, started.text
    run_id, flower_run_id = started.json()["run_id"], int(started.json()["flower_run_id"])

    # Flower has the first half of the line; the backend follows the same stream live.
    control = FlowerControl(federation.superlink_url)
    seen = ""
    for text, _ in control.stream_logs(flower_run_id):
        seen += text
        if "run_started" in seen and PREFIX in seen.split("run_started", 1)[1]:
            break
    assert not seen.endswith("\n")  # half a line, waiting for its rest
    logs = lambda: first_client.get(f"/training/{run_id}/logs").json()["logs"]  # noqa: E731
    wait_for(lambda: "run_started" in logs(), 60, "the backend to read")
    time.sleep(3.0)  # the half arrived with or right after that chunk
    first_client.close()
    first.stop(signal.SIGKILL)

    store.mkdir(exist_ok=True)
    (store / "release").touch()  # the ServerApp writes the rest of the line and ends
    assert wait_for(lambda: (r := control.get_run(flower_run_id)) is not None and r.finished, 120, "the run to end")
    second = backend_factory(tmp_path / "backend", federation.superlink_url, env={**env, "FLOWERBED_API_TOKEN": first.token})
    client = second.client()
    detail = wait_for(lambda: (r := _status(client, run_id))["status"] in TERMINAL and r, 120, "the run's final status")
    assert detail["status"] == "completed", detail["error"]
    assert detail["accuracy"] == 0.5 and detail["loss"] == 1.25
    events = read_sse(second.base_url, second.token, run_id, timeout=60)
    (finished,) = [e for e in events if e["event"] == "run_finished"]
    assert finished["data"]["accuracy"] == 0.5 and finished["data"]["seq"] == 2
    logs = client.get(f"/training/{run_id}/logs").json()["logs"]
    assert logs.count('"event":"run_finished"') == 1
    client.close()
