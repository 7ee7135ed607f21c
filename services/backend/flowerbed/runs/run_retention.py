"""Deleting a finished run with everything that belongs to it, and pruning what a deletion left.

A run owns: its row, its events, rounds and log chunks, the spans of its trace (local
mode's trace store) and its checkpoint directory in the model store. Files go first: if
the store cannot be written (compose used to mount it read-only into the backend),
nothing is deleted and the error says why. Rows go in one transaction, table by table,
so it works whether or not the database enforces the foreign keys' ON DELETE CASCADE.

Active runs are refused: their ServerApp still writes checkpoints and events.
The ServerApp's own checkpoint retention (`keep_checkpoints`) removes files while a run
is alive; listing and downloading cope with checkpoints that disappear.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from flowerbed.db.run_history import RunHistory
from flowerbed.db.tables import TERMINAL_STATUSES, Round, Run, RunEvent, RunLog, Span
from flowerbed.runs.training_metrics import forget_run
from flowerbed_app.runtime import checkpoints


class RunActive(RuntimeError):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is {status}: stop it (POST /training/{run_id}/stop) and wait for it to end first")


class StoreNotWritable(RuntimeError):
    """The model store refused the deletion; the run and its history were kept."""


@dataclass(frozen=True)
class Deleted:
    checkpoints: int
    events: int
    rounds: int
    log_chunks: int
    spans: int


class RunRetention:
    def __init__(self, sessions: sessionmaker[Session], history: RunHistory, model_store: Path) -> None:
        self.sessions = sessions
        self.history = history
        self.model_store = model_store

    def delete(self, run: Run) -> Deleted:
        """Remove a finished run, its checkpoints, events, rounds, logs and spans."""
        if run.status not in TERMINAL_STATUSES:
            raise RunActive(run.run_id, run.status)
        removed_files = self._delete_checkpoints(run.run_id)
        with self.sessions.begin() as session:
            counts = {
                table.__name__: session.execute(delete(table).where(table.run_id == run.run_id)).rowcount
                for table in (RunEvent, Round, RunLog)
            }
            spans = 0
            if run.trace_id:
                spans = session.execute(delete(Span).where(Span.trace_id == run.trace_id)).rowcount
            session.execute(delete(Run).where(Run.run_id == run.run_id))
        self.history.note_deleted(run.run_id)
        forget_run(run.run_id)
        return Deleted(removed_files, counts["RunEvent"], counts["Round"], counts["RunLog"], spans)

    def _delete_checkpoints(self, run_id: str) -> int:
        root = self.model_store.resolve()
        directory = root / run_id
        # Run ids are hex; the checks keep a strange id from ever naming something outside the store.
        if directory.resolve().parent != root or directory.is_symlink() or not directory.is_dir():
            return 0
        count = sum(1 for _ in checkpoints.list_checkpoints(root, run_id))
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            return 0  # removed meanwhile (its own retention, another request)
        except OSError as exc:
            raise StoreNotWritable(
                f"cannot delete the checkpoints of run {run_id} in the model store ({exc.strerror or exc}); "
                "the backend needs write access to it (in compose: mount the models volume read-write); the run was kept"
            ) from None
        return count

    def prune_orphans(self) -> int:
        """Delete events, rounds and log chunks whose run no longer exists; returns how many rows."""
        total = 0
        with self.sessions.begin() as session:
            known = select(Run.run_id)
            for table in (RunEvent, Round, RunLog):
                total += session.execute(delete(table).where(table.run_id.not_in(known))).rowcount
        return total
