"""Queries of run history: what the API, the followers and retention read, each in one short session.

Nothing here writes; run_history.RunHistory adds the writes (and the revision counter that
caches key on) on top of these reads, so one object serves both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from flowerbed.db.tables import TERMINAL_STATUSES, Round, Run, RunEvent, RunLog


@dataclass(frozen=True)
class StoredEvent:
    """One SSE event: `seq` is its id, unique per run."""

    seq: int
    type: str
    ts: float
    data: dict[str, Any]


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class RunQueries:
    """Reads of runs, their rounds, events and logs, each in a session of its own."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def get_run(self, run_id: str) -> Run | None:
        with self.sessions() as session:
            return session.get(Run, run_id)

    def list_runs(self, status: str | None, limit: int, offset: int) -> tuple[list[Run], int, dict[str, int]]:
        with self.sessions() as session:
            query = select(Run)
            count = select(func.count()).select_from(Run)
            if status:
                query = query.where(Run.status == status)
                count = count.where(Run.status == status)
            total = session.scalar(count) or 0
            runs = list(session.scalars(query.order_by(Run.created_at.desc(), Run.run_id).limit(limit).offset(offset)))
            return runs, total, self._round_counts(session, [r.run_id for r in runs])

    def rounds_completed(self, run_id: str) -> int:
        with self.sessions() as session:
            return self._round_counts(session, [run_id]).get(run_id, 0)

    def rounds(self, run_id: str) -> list[Round]:
        with self.sessions() as session:
            return list(session.scalars(select(Round).where(Round.run_id == run_id).order_by(Round.round)))

    def events_after(self, run_id: str, seq: int = 0) -> list[StoredEvent]:
        with self.sessions() as session:
            rows = session.scalars(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.seq > seq).order_by(RunEvent.seq))
            return [StoredEvent(r.seq, r.type, r.ts, r.payload) for r in rows]

    def event_of_type(self, run_id: str, kind: str) -> dict[str, Any] | None:
        with self.sessions() as session:
            row = session.scalars(
                select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.type == kind).order_by(RunEvent.seq.desc())
            ).first()
            return row.payload if row else None

    def node_data(self, recent_runs: int = 50) -> dict[str, dict[str, Any]]:
        """Node id → what that node said about its data in the newest of the last `recent_runs`
        data_described events (its description, or the reason it had no usable data), with the run."""
        with self.sessions() as session:
            rows = session.scalars(
                select(RunEvent).where(RunEvent.type == "data_described").order_by(RunEvent.id.desc()).limit(recent_runs)
            ).all()
            found: dict[str, dict[str, Any]] = {}
            for row in rows:
                entries = [(n, {k: v for k, v in n.items() if k != "node_id"}) for n in row.payload.get("nodes") or []]
                entries += [(f, {"error": f.get("reason")}) for f in row.payload.get("failures") or []]
                for entry, data in entries:
                    found.setdefault(str(entry.get("node_id")), {**data, "run_id": row.run_id})
            return found

    def latest_event(self, run_id: str, kinds: tuple[str, ...]) -> StoredEvent | None:
        """The newest event of any of these types."""
        with self.sessions() as session:
            row = session.scalars(
                select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.type.in_(kinds)).order_by(RunEvent.seq.desc())
            ).first()
            return StoredEvent(row.seq, row.type, row.ts, row.payload) if row else None

    def flower_seqs(self, run_id: str) -> set[int]:
        with self.sessions() as session:
            rows = session.scalars(select(RunEvent.flower_seq).where(RunEvent.run_id == run_id, RunEvent.flower_seq.is_not(None)))
            return {int(s) for s in rows}

    def logs(self, run_id: str) -> str:
        with self.sessions() as session:
            return "".join(session.scalars(select(RunLog.chunk).where(RunLog.run_id == run_id).order_by(RunLog.id)))

    def log_lines(self, run_id: str, offset: int, limit: int) -> tuple[list[str], bool]:
        """Lines `offset`…`offset + limit - 1` of a run's log, and whether more follow.

        Chunks hold whole lines; they are read in order and only as far as the page needs.
        """
        lines: list[str] = []
        skipped = 0
        with self.sessions() as session:
            chunks = session.scalars(
                select(RunLog.chunk).where(RunLog.run_id == run_id).order_by(RunLog.id).execution_options(yield_per=64)
            )
            for chunk in chunks:
                for line in chunk.splitlines(keepends=True):
                    if skipped < offset:
                        skipped += 1
                    elif len(lines) < limit:
                        lines.append(line)
                    else:
                        return lines, True
        return lines, False

    def active_run_count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Run).where(Run.status.not_in(TERMINAL_STATUSES))) or 0

    def resumed_by(self, run_id: str) -> list[Run]:
        """Runs that continue this one, oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(Run).where(Run.resumed_from == run_id).order_by(Run.created_at)))

    def unfinished_run_ids(self) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(Run.run_id).where(Run.status.not_in(TERMINAL_STATUSES)).order_by(Run.created_at)))

    @staticmethod
    def _round_counts(session: Session, run_ids: Iterable[str]) -> dict[str, int]:
        ids = list(run_ids)
        if not ids:
            return {}
        rows = session.execute(select(Round.run_id, func.count()).where(Round.run_id.in_(ids)).group_by(Round.run_id))
        return {run_id: int(n) for run_id, n in rows}
