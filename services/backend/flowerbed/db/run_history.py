"""Writes of run history, each one short transaction (the reads are run_queries.py's).

Follower threads and request handlers share these functions; every write that
belongs together (a log chunk, the events in it, their rounds, the read cursor and
any status change) commits in one transaction, so a backend killed at any instant
resumes from a cursor that matches what is stored: nothing lost, nothing twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from flowerbed.db.run_queries import RunQueries, StoredEvent
from flowerbed.db.tables import TERMINAL_STATUSES, Round, Run, RunEvent, RunLog
from flowerbed_app.runtime.progress_events import parse_events

STATUS_EVENT = "status"


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunHistory(RunQueries):
    """A run's history as one object: the queries it inherits, and every write, each counted in `revision`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__(sessions)
        self._revisions: dict[str, int] = {}
        self._revisions_lock = threading.Lock()
        # Revisions restart at 0 with the process; this tells one process's apart from the next's.
        self.instance = uuid.uuid4().hex[:8]

    # -- writes -----------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        config: Mapping[str, Any],
        num_rounds: int,
        from_checkpoint: str | None,
        resumed_from: str | None = None,
    ) -> tuple[Run, list[StoredEvent]]:
        with self.sessions.begin() as session:
            run = Run(
                run_id=run_id,
                status="pending",
                config=dict(config),
                num_rounds=num_rounds,
                created_at=utcnow(),
                log_cursor=0.0,
                from_checkpoint=from_checkpoint,
                resumed_from=resumed_from,
            )
            session.add(run)
            session.flush()
            event = self._append(session, run_id, STATUS_EVENT, {"run_id": run_id, "status": "pending"})
        self._committed(run_id)
        return run, [event]

    def set_flower_run_id(self, run_id: str, flower_run_id: int) -> None:
        with self.sessions.begin() as session:
            session.get_one(Run, run_id).flower_run_id = str(flower_run_id)
        self._committed(run_id)

    def set_status(self, run_id: str, status: str, **fields: Any) -> list[StoredEvent]:
        """Change status (and fields) once; a no-op when already there or already terminal."""
        with self.sessions.begin() as session:
            run = session.get_one(Run, run_id, with_for_update=True)
            events = self._transition(session, run, status, **fields)
        self._committed(run_id)
        return events

    def add_event(self, run_id: str, kind: str, payload: dict[str, Any]) -> StoredEvent:
        """An event the backend itself observed about a run (e.g. MLflow export progress or trouble)."""
        with self.sessions.begin() as session:
            session.get_one(Run, run_id, with_for_update=True)
            event = self._append(session, run_id, kind, payload)
        self._committed(run_id)
        return event

    def ingest_log_chunk(self, run_id: str, text: str, cursor: float, partial: str | None = None) -> list[StoredEvent]:
        """Store a chunk of complete ServerApp log lines with its cursor; returns new events.

        `partial` is the unfinished line after the chunk, stored with the cursor: reading
        resumes after the cursor, so a restarted follower needs it to complete the line.
        """
        with self.sessions.begin() as session:
            run = session.get_one(Run, run_id, with_for_update=True)
            new: list[StoredEvent] = []
            already_read = 0 < cursor <= (run.log_cursor or 0.0)  # a chunk re-read after a restart
            if not already_read:
                run.log_partial = partial or None
            if text and not already_read:
                session.add(RunLog(run_id=run_id, chunk=text, ts=time.time()))
            for record in parse_events(text):
                flower_seq = int(record.get("seq") or 0) or None
                if flower_seq is not None and session.scalar(
                    select(RunEvent.id).where(RunEvent.run_id == run_id, RunEvent.flower_seq == flower_seq)
                ):
                    continue  # re-read after a restart: already stored
                payload = dict(record)
                if payload.get("flower_run_id") is not None:
                    payload["flower_run_id"] = str(payload["flower_run_id"])  # uint64: not JS-safe
                if run.status == "pending":
                    new += self._transition(session, run, "running")
                new.append(self._append(session, run_id, record["event"], payload, flower_seq, record.get("ts")))
                if record["event"] == "round_finished":
                    self._add_round(session, run_id, payload)
                elif record["event"] == "run_started" and record.get("trace_id"):
                    run.trace_id = str(record["trace_id"])[:32]
            run.log_cursor = max(run.log_cursor or 0.0, cursor)
        self._committed(run_id)
        return new

    def revision(self, run_id: str) -> int:
        """How many writes to this run this process has committed (0: none since start).

        Every write to a run's history goes through this class, in the backend process that
        follows the run, so this moves whenever anything GET /training/{id} shows changes,
        at no cost: caches of the detail key on it.
        """
        return self._revisions.get(run_id, 0)

    def note_deleted(self, run_id: str) -> None:
        """The run's rows were deleted (flowerbed.runs.run_retention): nothing cached about it may be served."""
        self._committed(run_id)

    def _committed(self, run_id: str) -> None:
        with self._revisions_lock:
            self._revisions[run_id] = self._revisions.get(run_id, 0) + 1

    # -- internals --------------------------------------------------------------
    def _transition(self, session: Session, run: Run, status: str, **fields: Any) -> list[StoredEvent]:
        if run.status == status or run.status in TERMINAL_STATUSES:
            return []
        run.status = status
        for key, value in fields.items():
            setattr(run, key, value)
        now = utcnow()
        if status == "running" and run.started_at is None:
            run.started_at = now
        if status in TERMINAL_STATUSES:
            run.finished_at = now
        payload = {"run_id": run.run_id, "status": status}
        if status in TERMINAL_STATUSES:
            payload.update(error=run.error, accuracy=run.accuracy, loss=run.loss)
        return [self._append(session, run.run_id, STATUS_EVENT, payload)]

    @staticmethod
    def _append(
        session: Session,
        run_id: str,
        kind: str,
        payload: dict[str, Any],
        flower_seq: int | None = None,
        ts: float | None = None,
    ) -> StoredEvent:
        # Callers hold the run's row (FOR UPDATE on PostgreSQL; SQLite serialises
        # writers), so max(seq)+1 cannot race with another writer of this run.
        seq = (session.scalar(select(func.max(RunEvent.seq)).where(RunEvent.run_id == run_id)) or 0) + 1
        ts = float(ts) if ts is not None else time.time()
        session.add(RunEvent(run_id=run_id, seq=seq, flower_seq=flower_seq, type=kind, ts=ts, payload=payload))
        session.flush()
        return StoredEvent(seq, kind, ts, payload)

    @staticmethod
    def _add_round(session: Session, run_id: str, payload: dict[str, Any]) -> None:
        number = int(payload["round"])
        if session.scalar(select(Round.id).where(Round.run_id == run_id, Round.round == number)):
            return
        try:
            with session.begin_nested():
                session.add(
                    Round(
                        run_id=run_id,
                        round=number,
                        accuracy=payload.get("accuracy"),
                        loss=payload.get("loss"),
                        payload={k: v for k, v in payload.items() if k not in ("v", "event", "run_id", "flower_run_id")},
                    )
                )
        except IntegrityError:
            pass  # the same round arrived twice (e.g. re-emitted): keep the first
