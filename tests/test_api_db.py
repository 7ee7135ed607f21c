"""The database layer on SQLite and on PostgreSQL 15: migrations, round-trips, idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from flowerbed.db.engine import make_engine, migrate, session_factory
from flowerbed.db.run_history import RunHistory

UINT64_MAX = 2**64 - 1  # Flower run ids use the whole uint64 range


def _event_line(seq: int, event: str, **fields: object) -> str:
    import json

    record = {"v": 1, "event": event, "seq": seq, "ts": 1000.0 + seq, "run_id": "r1", "flower_run_id": UINT64_MAX, **fields}
    return "FLOWERBED_EVENT " + json.dumps(record) + "\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowerbed.db'}"
    return request.getfixturevalue("postgres_url")


def test_migrations_apply_and_are_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # a restarted backend runs them again
    tables = set(inspect(engine).get_table_names())
    assert {"runs", "run_events", "rounds", "run_logs", "spans", "alembic_version"} <= tables
    assert "trace_id" in {c["name"] for c in inspect(engine).get_columns("runs")}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    engine.dispose()


def test_run_event_round_round_trip_and_idempotent_ingest(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    history = RunHistory(session_factory(engine))
    history.create_run("r1", {"num_rounds": 2}, 2, None)
    history.set_flower_run_id("r1", UINT64_MAX)
    chunk = (
        "some ServerApp output\n"
        + _event_line(1, "run_started")
        + _event_line(2, "round_finished", round=1, accuracy=0.5, loss=1.5, clients=[{"node_id": UINT64_MAX}])
    )
    first = history.ingest_log_chunk("r1", chunk, 1002.0)
    again = history.ingest_log_chunk("r1", chunk, 1002.0)  # the same chunk re-read after a restart
    assert [e.type for e in first] == ["status", "run_started", "round_finished"]
    assert again == []
    run = history.get_run("r1")
    assert run is not None
    assert run.flower_run_id == str(UINT64_MAX)
    assert int(run.flower_run_id) == UINT64_MAX
    assert run.status == "running"
    assert run.log_cursor == 1002.0
    events = history.events_after("r1")
    assert [e.seq for e in events] == [1, 2, 3, 4]  # pending, running, run_started, round_finished
    assert events[2].data["flower_run_id"] == str(UINT64_MAX)
    assert history.events_after("r1", 3)[0].type == "round_finished"
    rounds = history.rounds("r1")
    assert [(r.round, r.accuracy, r.loss) for r in rounds] == [(1, 0.5, 1.5)]
    assert rounds[0].payload["clients"][0]["node_id"] == UINT64_MAX
    finished = history.set_status("r1", "completed", accuracy=0.5, loss=1.5, bytes_sent=2**40, bytes_received=7)
    assert finished[0].data["status"] == "completed"
    assert history.set_status("r1", "failed", error="late") == []  # terminal is final
    run = history.get_run("r1")
    assert run is not None
    assert (run.status, run.bytes_sent, run.error) == ("completed", 2**40, None)
    assert history.logs("r1").count("some ServerApp output") == 1
    assert history.unfinished_run_ids() == []
    _runs, total, counts = history.list_runs("completed", 10, 0)
    assert (total, counts) == (1, {"r1": 1})
    engine.dispose()


def test_a_diverged_run_with_nan_and_infinite_losses_is_stored_as_null(database_url: str) -> None:
    """Python's json writes NaN/Infinity; PostgreSQL refuses them and browsers cannot parse them."""
    engine = make_engine(database_url)
    migrate(engine)
    history = RunHistory(session_factory(engine))
    history.create_run("r1", {"num_rounds": 1}, 1, None)
    clients = [{"node_id": 1, "train_loss": float("nan"), "val_loss": float("inf")}]
    chunk = _event_line(1, "round_finished", round=1, accuracy=0.1, loss=float("inf"), clients=clients)
    assert "NaN" in chunk and "Infinity" in chunk  # what an app that prints plain json.dumps sends
    (_, stored) = history.ingest_log_chunk("r1", chunk, 1001.0)
    assert stored.data["loss"] is None and stored.data["clients"][0] == {"node_id": 1, "train_loss": None, "val_loss": None}
    (round_row,) = history.rounds("r1")
    assert (round_row.accuracy, round_row.loss, round_row.payload["clients"][0]["train_loss"]) == (0.1, None, None)
    (read_back,) = [e for e in history.events_after("r1") if e.type == "round_finished"]  # from the database
    assert read_back.data["loss"] is None and read_back.data["clients"][0]["val_loss"] is None
    engine.dispose()
