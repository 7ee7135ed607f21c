"""One follower thread per unfinished run: Flower's log stream → DB rows → SSE wake-ups.

The SuperLink is the durable buffer. A follower resumes from the run's stored
`log_cursor` and the event sequence numbers already stored, so a backend that was
restarted (or killed) re-attaches to every unfinished run and misses nothing. Flower
statuses are mapped to ours here and nowhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flowerbed.db.run_history import RunHistory
from flowerbed.db.run_queries import StoredEvent
from flowerbed.flower_control import FlowerControl, FlowerRun
from flowerbed.runs.event_bus import EventBus
from flowerbed.runs.run_follower import LogCursor, follow
from flowerbed.runs.run_status import TERMINAL_STATUSES
from flowerbed.runs.training_metrics import observe_event, observe_status

log = logging.getLogger(__name__)

RESUME_HINT = "POST /training/{run_id}/resume continues it from its last checkpoint"


class _StatusProbe:
    """Passes through to FlowerControl and reports each status `follow` polls."""

    def __init__(self, control: FlowerControl, on_run: Callable[[FlowerRun], None]) -> None:
        self._control = control
        self._on_run = on_run

    def stream_logs(self, run_id: int, after_timestamp: float = 0.0) -> Any:
        return self._control.stream_logs(run_id, after_timestamp)

    def get_run(self, run_id: int) -> FlowerRun | None:
        run = self._control.get_run(run_id)
        if run is not None:
            self._on_run(run)
        return run


class RunTracker:
    """Follows unfinished runs; a run whose SuperLink stays unreachable for `lost_after` s is failed.

    Flower keeps a run alive through a short SuperLink restart (its database holds the
    messages and the ServerApp reconnects), so an outage alone does not fail a run; one
    longer than the ServerApp's heartbeat window (60 s in Flower 1.41) ends it on Flower's
    side too. Waiting for a SuperLink that may never return would leave the run "running"
    forever, so the follower gives up after `lost_after` seconds and says why.
    """

    def __init__(
        self,
        history: RunHistory,
        bus: EventBus,
        control_factory: Callable[[], FlowerControl],
        lost_after: float = 90.0,
        superlink: str = "",
    ) -> None:
        self.history = history
        self.bus = bus
        self.control_factory = control_factory
        self.lost_after = lost_after
        self.superlink = superlink
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # Called with each run id that got new events, after the SSE wake-up (MLflow export).
        self.listeners: list[Callable[[str], None]] = []

    def publish(self, run_id: str, events: list[StoredEvent]) -> None:
        for event in events:
            observe_event(run_id, {**event.data, "event": event.type})
        if events:
            self.bus.publish(run_id)
            for listener in self.listeners:
                listener(run_id)

    def attach(self, run_id: str) -> None:
        """Start following a run unless a follower already does."""
        with self._lock:
            thread = self._threads.get(run_id)
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(target=self._follow_safely, args=(run_id,), name=f"follow-{run_id}", daemon=True)
            self._threads[run_id] = thread
        thread.start()

    def attach_unfinished(self) -> list[str]:
        run_ids = self.history.unfinished_run_ids()
        for run_id in run_ids:
            self.attach(run_id)
        return run_ids

    def shutdown(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=timeout / max(1, len(self._threads)))

    # -- one run ----------------------------------------------------------------
    def _follow_safely(self, run_id: str) -> None:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        try:
            with suppress_instrumentation():  # polling the SuperLink is not worth a trace per request
                self._follow(run_id)
        except Exception:
            log.exception("follower of run %s crashed; it resumes on the next backend start", run_id)
        finally:
            with self._lock:
                self._threads.pop(run_id, None)

    def _follow(self, run_id: str) -> None:
        run = self.history.get_run(run_id)
        if run is None:
            return
        if run.flower_run_id is None:
            # Followers start only after StartRun answered, or at startup: this run's
            # creator died between our DB row and Flower's reply.
            self.set_status(run_id, "failed", error="the backend stopped before the run reached the SuperLink; start it again")
            return
        flower_run_id = int(run.flower_run_id)
        cursor = LogCursor(after_timestamp=run.log_cursor or 0.0, partial=run.log_partial or "", seen_seq=set())
        control = self.control_factory()
        outage: dict[str, float | None] = {"since": None}  # when the SuperLink stopped answering

        def on_status(flower: FlowerRun) -> None:
            outage["since"] = None
            self._on_flower_status(run_id, flower)

        stored = {"cursor": cursor.after_timestamp, "partial": cursor.partial}

        def on_log(text: str) -> None:
            # Complete lines, cursor and the unfinished line are stored together, in one transaction.
            outage["since"] = None
            if not text and (cursor.after_timestamp, cursor.partial) == (stored["cursor"], stored["partial"]):
                return
            self.publish(run_id, self.history.ingest_log_chunk(run_id, text, cursor.after_timestamp, cursor.partial))
            stored.update(cursor=cursor.after_timestamp, partial=cursor.partial)

        probe = _StatusProbe(control, on_status)
        while True:
            try:
                outcome = follow(
                    probe,  # type: ignore[arg-type]
                    flower_run_id,
                    on_event=lambda _event: None,  # events are parsed with their log chunk, atomically
                    on_log=on_log,
                    cursor=cursor,
                    should_stop=self._stopping.is_set,
                )
                break
            except Exception as exc:  # SuperLink unreachable: keep trying, the SuperLink keeps the logs
                since = outage["since"] = outage["since"] or time.monotonic()
                lost_for = time.monotonic() - since
                if lost_for >= self.lost_after:
                    self._give_up(run_id, lost_for, exc)
                    return
                log.warning("run %s: lost the SuperLink for %.0f s (%s); retrying", run_id, lost_for, exc)
                if self._stopping.wait(2.0):
                    return
        if outcome == "detached":
            return
        self._finish(run_id, flower_run_id, outcome, control)

    def _give_up(self, run_id: str, lost_for: float, exc: Exception) -> None:
        where = f" at {self.superlink}" if self.superlink else ""
        reason = (
            f"lost the SuperLink{where}: no answer for {lost_for:.0f} s "
            f"(FLOWERBED_SUPERLINK_LOST_SECONDS={self.lost_after:g}; last error: {exc or type(exc).__name__}); "
            + RESUME_HINT.format(run_id=run_id)
        )
        log.error("run %s: %s", run_id, reason)
        last_round = (self.history.rounds(run_id) or [None])[-1]
        fields = {"accuracy": last_round.accuracy, "loss": last_round.loss} if last_round is not None else {}
        self.set_status(run_id, "failed", error=reason, **fields)

    def _on_flower_status(self, run_id: str, run: FlowerRun) -> None:
        if run.status == "running":
            self.set_status(run_id, "running")

    def _finish(self, run_id: str, flower_run_id: int, outcome: str, control: FlowerControl) -> None:
        """Map Flower's final status to ours; store traffic counters once."""
        fields: dict[str, Any] = {}
        try:
            flower = control.get_run(flower_run_id)
        except Exception:
            flower = None
        if flower is not None:
            fields.update(bytes_sent=flower.bytes_sent, bytes_received=flower.bytes_recv)
        finished = self.history.event_of_type(run_id, "run_finished")
        failed = self.history.event_of_type(run_id, "run_failed")
        last_round = (self.history.rounds(run_id) or [None])[-1]
        if last_round is not None:
            fields.update(accuracy=last_round.accuracy, loss=last_round.loss)
        if outcome == "finished:completed" and finished is not None:
            fields.update(accuracy=finished.get("accuracy"), loss=finished.get("loss"))
            self.set_status(run_id, "completed", **fields)
        elif outcome == "finished:stopped":
            self.set_status(run_id, "stopped", **fields)
        elif outcome == "unknown":
            self.set_status(
                run_id, "failed", error=f"the SuperLink has no Flower run {flower_run_id} (was its database reset?)", **fields
            )
        elif outcome == "finished:completed":
            reason = "Flower reports the run completed, but its run_finished event never arrived; " + RESUME_HINT
            self.set_status(run_id, "failed", error=reason.format(run_id=run_id), **fields)
        else:
            reason = (failed or {}).get("reason") or ""
            if not reason:
                try:
                    details = control.run_details(flower_run_id)
                except Exception:
                    details = ""
                reason = (
                    f"Flower ended the run without a result ({details or 'no details'}): its ServerApp stopped, "
                    "e.g. the SuperLink or the ServerApp executor restarted mid-run; " + RESUME_HINT.format(run_id=run_id)
                )
            self.set_status(run_id, "failed", error=reason, **fields)

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        events = self.history.set_status(run_id, status, **fields)
        if events and status in TERMINAL_STATUSES:
            observe_status(run_id, status, fields.get("bytes_sent"), fields.get("bytes_received"))
        self.publish(run_id, events)
