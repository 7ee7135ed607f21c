"""A backend killed with SIGKILL mid-run catches up after a restart, on PostgreSQL.

The SuperLink keeps the ServerApp's log; the new backend process resumes from the
stored cursor, so every round ends up in the database exactly once.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from backend_fixture import QUICK_RUN, read_sse, wait_for

from flowerbed.db.engine import make_engine, session_factory
from flowerbed.db.run_history import RunHistory
from flowerbed.local import launcher

pytestmark = pytest.mark.federation


def test_backend_killed_mid_run_catches_up(
    api_federation: launcher.Federation, backend_factory, postgres_url: str, tmp_path: Path
) -> None:
    env = {"FLOWERBED_DATABASE_URL": postgres_url, "FLOWERBED_MODEL_STORE": str(tmp_path / "models")}
    first = backend_factory(tmp_path / "backend", api_federation.superlink_url, env=env)
    headers = {"Authorization": f"Bearer {first.token}"}
    import httpx

    response = httpx.post(f"{first.base_url}/training/start", json={**QUICK_RUN, "num_rounds": 2}, headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    engine = make_engine(postgres_url)
    history = RunHistory(session_factory(engine))
    wait_for(lambda: history.rounds(run_id), 600, "round 1 to be stored")
    first.stop(signal.SIGKILL)  # no shutdown hooks, no flush: a crash
    assert history.get_run(run_id).status == "running"

    second = backend_factory(tmp_path / "backend", api_federation.superlink_url, env={**env, "FLOWERBED_API_TOKEN": first.token})
    events = read_sse(second.base_url, first.token, run_id, timeout=600)
    detail = httpx.get(f"{second.base_url}/training/{run_id}", headers=headers, timeout=60).json()
    assert detail["status"] == "completed", detail["error"]
    assert [r["round"] for r in detail["rounds"]] == [1, 2]
    assert [e["data"]["round"] for e in events if e["event"] == "round_finished"] == [1, 2]
    flower_seqs = [e["data"]["seq"] for e in events if e["event"] != "status"]
    assert len(flower_seqs) == len(set(flower_seqs))  # no event stored twice
    assert [e["data"]["status"] for e in events if e["event"] == "status"] == ["pending", "running", "completed"]
    assert history.logs(run_id).count('"event":"round_finished"') == 2
    engine.dispose()
