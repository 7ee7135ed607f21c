"""Spans received in local mode, kept in the run-history database with a size limit.

Retention is by count (newest kept): a 10-node, 10-round run with step spans is
~50k spans, and the limit keeps the database bounded however long the platform runs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from flowerbed.db.tables import Span


class TraceStore:
    def __init__(self, sessions: sessionmaker[Session], retention_spans: int) -> None:
        self.sessions = sessions
        self.retention_spans = retention_spans

    def add(self, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        columns = {c.name for c in Span.__table__.columns} - {"id"}
        with self.sessions.begin() as session:
            session.execute(insert(Span), [{k: v for k, v in row.items() if k in columns} for row in rows])
            newest = session.scalar(select(func.max(Span.id))) or 0
            if newest > self.retention_spans:
                session.execute(delete(Span).where(Span.id <= newest - self.retention_spans))
        return len(rows)

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            spans = session.scalars(select(Span).where(Span.trace_id == trace_id).order_by(Span.start_ns, Span.id))
            return [
                {
                    "span_id": s.span_id,
                    "parent_span_id": s.parent_span_id,
                    "name": s.name,
                    "service": s.service,
                    "start_ns": s.start_ns,
                    "end_ns": s.end_ns,
                    "duration_ms": round((s.end_ns - s.start_ns) / 1e6, 3),
                    "status": s.status,
                    "attributes": s.attributes,
                    "events": s.events,
                }
                for s in spans
            ]
