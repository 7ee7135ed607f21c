"""The database layer on SQLite and on PostgreSQL 15: migrations, round-trips, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from flowerbed.db.engine import make_engine, migrate, session_factory
from flowerbed.db.run_history import RunHistory

UINT64_MAX = 2**64 - 1  # Flower run ids use the whole uint64 range
HEAD = "0003"


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
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
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


# What a database written by the first release holds: every table of migration 0001, every column set.
FIRST_SCHEMA_ROWS = {
    "runs": [
        {
            "run_id": "a" * 32,
            "flower_run_id": str(UINT64_MAX),
            "status": "completed",
            "config": '{"num_rounds": 2, "model": "cnn", "alpha": 0.5}',
            "num_rounds": 2,
            "created_at": "2025-01-02 03:04:05.123456+00:00",
            "started_at": "2025-01-02 03:04:06+00:00",
            "finished_at": "2025-01-02 03:09:00+00:00",
            "accuracy": 0.8125,
            "loss": 0.5,
            "error": None,
            "bytes_sent": 2**40,
            "bytes_received": 12345,
            "log_cursor": 1736000000.25,
            "from_checkpoint": None,
        },
        {
            "run_id": "b" * 32,
            "flower_run_id": "7",
            "status": "failed",
            "config": '{"num_rounds": 5, "from_checkpoint": "' + "a" * 32 + '-round-0002"}',
            "num_rounds": 5,
            "created_at": "2025-01-03 00:00:00+00:00",
            "started_at": None,
            "finished_at": "2025-01-03 00:01:00+00:00",
            "accuracy": None,
            "loss": None,
            "error": "the SuperLink marked the run failed (restart?) — ünïcode",
            "bytes_sent": None,
            "bytes_received": None,
            "log_cursor": 0.0,
            "from_checkpoint": "a" * 32 + "-round-0002",
        },
    ],
    "run_events": [
        {
            "id": i + 1,
            "run_id": "a" * 32,
            "seq": i + 1,
            "flower_seq": i or None,
            "type": kind,
            "ts": 1000.0 + i,
            "payload": json.dumps({"event": kind, "round": i, "clients": [{"node_id": str(UINT64_MAX)}]}),
        }
        for i, kind in enumerate(["status", "run_started", "round_finished", "round_finished", "run_finished", "status"])
    ]
    + [
        {
            "id": 7,
            "run_id": "b" * 32,
            "seq": 1,
            "flower_seq": None,
            "type": "status",
            "ts": 2000.0,
            "payload": '{"status": "pending"}',
        }
    ],
    "rounds": [
        {
            "id": r,
            "run_id": "a" * 32,
            "round": r,
            "accuracy": 0.7 + r / 10,
            "loss": 1.0 / r,
            "payload": json.dumps({"clients": [{"node_id": UINT64_MAX, "val_loss": None}], "seconds": 4.5}),
        }
        for r in (1, 2)
    ],
    "run_logs": [
        {"id": 1, "run_id": "a" * 32, "chunk": "INFO: starting\nFLOWERBED_EVENT {}\n", "ts": 1000.5},
        {"id": 2, "run_id": "a" * 32, "chunk": "line with 'quotes' and \\ backslash\n", "ts": 1001.5},
        {"id": 3, "run_id": "b" * 32, "chunk": "\n", "ts": 2000.5},
    ],
}


def _snapshot(engine, table: str) -> list[dict]:
    """Every row of a table as Python values, by primary key (JSON decoded, timestamps as UTC instants)."""
    from datetime import UTC, datetime

    key = "run_id" if table == "runs" else "id"
    columns = list(FIRST_SCHEMA_ROWS[table][0])
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}")).mappings().all()
    out = []
    for row in rows:
        values = dict(row)
        for name, value in values.items():
            if name in ("config", "payload") and isinstance(value, str):
                values[name] = json.loads(value)
            elif isinstance(value, str) and name.endswith("_at"):
                values[name] = datetime.fromisoformat(value)
            if isinstance(values[name], datetime) and values[name].tzinfo is None:
                values[name] = values[name].replace(tzinfo=UTC)
        out.append(values)
    return out


def test_upgrade_from_the_first_schema_keeps_every_row(database_url: str) -> None:
    """A database that holds runs, events, rounds and logs under migration 0001 is upgraded to head, losing nothing."""
    engine = make_engine(database_url)
    migrate(engine, "0001")
    with engine.begin() as connection:
        for table, rows in FIRST_SCHEMA_ROWS.items():
            columns = list(rows[0])
            placeholders = ", ".join(f":{c}" for c in columns)
            connection.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"), rows)
    before = {table: _snapshot(engine, table) for table in FIRST_SCHEMA_ROWS}
    assert [len(before[t]) for t in FIRST_SCHEMA_ROWS] == [2, 7, 2, 3]

    migrate(engine)
    after = {table: _snapshot(engine, table) for table in FIRST_SCHEMA_ROWS}
    assert after == before
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        added = connection.execute(text("SELECT trace_id, log_partial, resumed_from FROM runs")).all()
    assert added == [(None, None, None), (None, None, None)]

    # The code of today reads the old rows.
    history = RunHistory(session_factory(engine))
    assert [e.type for e in history.events_after("a" * 32)][:3] == ["status", "run_started", "round_finished"]
    assert [(r.round, r.payload["clients"][0]["node_id"]) for r in history.rounds("a" * 32)] == [(1, UINT64_MAX), (2, UINT64_MAX)]
    assert history.logs("a" * 32).startswith("INFO: starting\n")
    runs, total, counts = history.list_runs(None, 10, 0)
    assert total == 2 and counts == {"a" * 32: 2}
    assert {r.run_id: r.flower_run_id for r in runs}["a" * 32] == str(UINT64_MAX)
    engine.dispose()


def test_rows_of_deleted_runs_are_pruned(tmp_path: Path) -> None:
    """Events, rounds and logs whose run is gone (a database written without foreign keys enforced) are pruned."""
    import sqlite3

    from flowerbed.runs.run_retention import RunRetention

    path = tmp_path / "flowerbed.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    history = RunHistory(session_factory(engine))
    for run_id in ("kept", "gone"):
        history.create_run(run_id, {"num_rounds": 1}, 1, None)
        chunk = _event_line(1, "round_finished", round=1, accuracy=0.5, loss=1.0, clients=[])
        history.ingest_log_chunk(run_id, chunk, 1001.0)
    raw = sqlite3.connect(path)  # foreign keys are off by default in a plain connection
    raw.execute("DELETE FROM runs WHERE run_id = 'gone'")
    raw.commit()
    raw.close()
    assert [e.type for e in history.events_after("gone")] == ["status", "status", "round_finished"]  # orphans

    pruned = RunRetention(session_factory(engine), history, tmp_path / "models").prune_orphans()
    assert pruned == 3 + 1 + 1  # events, the round, the log chunk
    assert history.events_after("gone") == [] and history.rounds("gone") == [] and history.logs("gone") == ""
    assert len(history.events_after("kept")) == 3 and len(history.rounds("kept")) == 1 and history.logs("kept")
    engine.dispose()


def test_each_nodes_newest_data_description_is_kept(database_url: str) -> None:
    """GET /nodes shows what each node last said about its data (data_described events, newest run first)."""
    engine = make_engine(database_url)
    migrate(engine)
    history = RunHistory(session_factory(engine))
    for run_id, site, when in (("old", "site-a-old", 1001.0), ("new", "site-a", 1002.0)):
        history.create_run(run_id, {"data_source": "node"}, 1, None)
        nodes = [{"node_id": UINT64_MAX, "site": site, "examples": 40, "classes": {"x": 35, "y": "< 5"}}]
        failures = [{"node_id": 7, "phase": "describe", "reason": "data directory /d is empty"}] if run_id == "new" else []
        history.ingest_log_chunk(run_id, _event_line(1, "data_described", nodes=nodes, failures=failures), when)
    data = history.node_data()
    assert data[str(UINT64_MAX)] == {"site": "site-a", "examples": 40, "classes": {"x": 35, "y": "< 5"}, "run_id": "new"}
    assert data["7"] == {"error": "data directory /d is empty", "run_id": "new"}
    engine.dispose()
