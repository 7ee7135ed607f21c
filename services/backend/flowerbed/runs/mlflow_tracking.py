"""Every run mirrored into an MLflow tracking server, when FLOWERBED_MLFLOW_TRACKING_URI is set.

The backend already stores each run's events (flowerbed.runs.run_tracker); this module replays
them into MLflow on a thread of its own, after they are stored. So MLflow can never slow or
fail a run: an unreachable server leaves one `mlflow_warning` event on the run (the API shows
it) and the export retries every `mlflow_retry_seconds`, from where it stopped, until it
gets through (an `mlflow_synced` event then clears the warning).

Progress is kept in the run's own events (`mlflow_synced` holds the MLflow run id and the
last exported event's seq), so a restarted backend resumes each export without a table of
its own and without logging a metric twice.

What goes to MLflow, per Flowerbed run, one MLflow run (experiment FLOWERBED_MLFLOW_EXPERIMENT):
- params: the run config as the API returns it;
- metrics with step = round: `accuracy`, `loss` (centralized, on the test split), the
  aggregated client metrics as `federated_<name>`, and each node's as `node<partition>_<name>`.
  Per-node metrics are prefixed metrics of the one run rather than nested runs: a round's
  clients then plot together on one chart, and a run stays one row in MLflow's run list;
- tags: `flowerbed.run_id`, `flower.run_id`, `trace_id`, `flowerbed.status`;
- at the end, the final and the best checkpoint (highest centralized accuracy) as MLflow
  PyTorch models with a signature (`final_model`, `best_model`); the best is registered under
  FLOWERBED_MLFLOW_REGISTERED_MODEL when that is set. They are saved in MLflow 3's default
  `pt2` format (a torch.export program, no pickle): loading needs torch, not this code.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flowerbed.db.run_history import STATUS_EVENT, RunHistory
from flowerbed.db.run_queries import StoredEvent
from flowerbed_app.runtime import checkpoints

log = logging.getLogger(__name__)

SYNCED, WARNING = "mlflow_synced", "mlflow_warning"
OWN_EVENTS = (SYNCED, WARNING)
TERMINAL = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}
RUN_ID_TAG = "flowerbed.run_id"


class MlflowTracking:
    """One background exporter; `notify(run_id)` after a run's events are stored."""

    def __init__(
        self,
        history: RunHistory,
        models_path: Path,
        tracking_uri: str,
        experiment: str,
        registered_model: str | None,
        retry_seconds: float,
        on_events: Callable[[str, list[StoredEvent]], None],
    ) -> None:
        self.history = history
        self.models_path = models_path
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.registered_model = registered_model
        self.retry_seconds = retry_seconds
        self.on_events = on_events
        self._dirty: set[str] = set()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mlflow-export", daemon=True)

    def start(self) -> None:
        # Fail fast and retry here, not inside the MLflow client: its default is 7 retries with
        # exponential back-off, minutes of silence before anything could be reported.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow 3 reports usage to its makers otherwise
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        for run_id in self.history.unfinished_run_ids():
            self._dirty.add(run_id)
        self._dirty.update(self._pending_retries())
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def notify(self, run_id: str) -> None:
        with self._wake:
            self._dirty.add(run_id)
            self._wake.notify_all()

    def _pending_retries(self) -> Iterable[str]:
        """Finished runs whose export stopped at a warning (the backend restarted meanwhile)."""
        runs, _total, _counts = self.history.list_runs(None, 200, 0)
        for run in runs:
            latest = self.history.latest_event(run.run_id, OWN_EVENTS)
            if latest is not None and latest.type == WARNING:
                yield run.run_id

    def _loop(self) -> None:
        failing: set[str] = set()
        while True:
            with self._wake:
                if failing:
                    self._wake.wait(self.retry_seconds)
                    self._dirty |= failing
                while not self._dirty and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                batch, self._dirty = self._dirty, set()
            failing = set()
            for run_id in sorted(batch):
                try:
                    self._sync(run_id)
                except Exception as exc:  # any failure is reported on the run and retried
                    failing.add(run_id)
                    self._warn(run_id, exc)

    # -- one run -----------------------------------------------------------------
    def _sync(self, run_id: str) -> None:
        latest = self.history.latest_event(run_id, OWN_EVENTS)
        synced = self.history.event_of_type(run_id, SYNCED) or {}
        cursor = int(synced.get("exported_seq") or 0)
        events = [e for e in self.history.events_after(run_id, cursor) if e.type not in OWN_EVENTS]
        if not events:
            if latest is not None and latest.type == WARNING and synced:
                self._record(run_id, {**synced, "warning": None})  # reachable again, nothing new
            return
        run = self.history.get_run(run_id)
        if run is None:
            return  # deleted meanwhile
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        mlflow_run_id = synced.get("mlflow_run_id") or self._find_or_create(client, run_id, run.config)
        exported = cursor
        try:
            for event in events:
                self._export(client, mlflow_run_id, run_id, run, event)
                exported = event.seq
        finally:
            if exported != cursor or synced.get("mlflow_run_id") != mlflow_run_id:
                self._record(run_id, {"mlflow_run_id": mlflow_run_id, "exported_seq": exported, "warning": None})

    def _record(self, run_id: str, payload: dict[str, Any]) -> None:
        event = self.history.add_event(run_id, SYNCED, payload)
        self.on_events(run_id, [event])

    def _warn(self, run_id: str, exc: Exception) -> None:
        message = (
            f"MLflow export to {_without_credentials(self.tracking_uri)} failed ({type(exc).__name__}: "
            f"{str(exc)[:300]}); retrying every {self.retry_seconds:g} s — the run itself is not affected"
        )
        log.warning("run %s: %s", run_id, message)
        try:
            latest = self.history.latest_event(run_id, OWN_EVENTS)
            if latest is None or latest.type != WARNING:  # one warning per outage, not one per retry
                event = self.history.add_event(run_id, WARNING, {"warning": message})
                self.on_events(run_id, [event])
        except Exception:  # e.g. the run was deleted: nothing left to warn about
            log.debug("run %s: warning not recorded", run_id, exc_info=True)

    def _find_or_create(self, client: Any, run_id: str, config: dict[str, Any]) -> str:
        """The MLflow run of this Flowerbed run: found by tag (a crash after creating it), or new."""
        experiment = client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.experiment)
        found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'", max_results=1)
        if found:
            return found[0].info.run_id
        created = client.create_run(experiment_id, tags={RUN_ID_TAG: run_id}, run_name=f"flowerbed-{run_id[:8]}")
        return created.info.run_id

    def _export(self, client: Any, mlflow_run_id: str, run_id: str, run: Any, event: StoredEvent) -> None:
        from mlflow.entities import Metric, Param, RunTag

        data = event.data
        if event.type == "run_started":
            params = [Param(k, _param_value(v)) for k, v in sorted((run.config or {}).items())]
            tags = [RunTag("flower.run_id", str(data.get("flower_run_id") or run.flower_run_id or ""))]
            if data.get("trace_id"):
                tags.append(RunTag("trace_id", str(data["trace_id"])))
            client.log_batch(mlflow_run_id, params=params, tags=tags)
        elif event.type == "round_finished":
            step, millis = int(data["round"]), int(event.ts * 1000)
            metrics = [Metric(name, value, millis, step) for name, value in _round_metrics(data)]
            for start in range(0, len(metrics), 1000):  # MLflow's batch limit
                client.log_batch(mlflow_run_id, metrics=metrics[start : start + 1000])
        elif event.type == STATUS_EVENT and data.get("status") in TERMINAL:
            self._finish(client, mlflow_run_id, run_id, str(data["status"]))

    def _finish(self, client: Any, mlflow_run_id: str, run_id: str, status: str) -> None:
        stored = [m for m in checkpoints.list_checkpoints(self.models_path, run_id) if Path(m["path"]).is_file()]
        client.set_tag(mlflow_run_id, "flowerbed.status", status)
        if stored:
            final = max(stored, key=lambda m: m["round"])
            best = max(stored, key=lambda m: ((m.get("metrics") or {}).get("accuracy") or 0.0, m["round"]))
            self._log_model(mlflow_run_id, final, "final_model", None)
            self._log_model(mlflow_run_id, best, "best_model", self.registered_model)
            client.set_tag(mlflow_run_id, "flowerbed.best_model_id", best["model_id"])
        client.set_terminated(mlflow_run_id, TERMINAL[status])

    def _log_model(self, mlflow_run_id: str, meta: dict[str, Any], name: str, register_as: str | None) -> None:
        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        from flowerbed_app.task.networks import create_model

        module = create_model(str(meta["model"]))
        module.load_state_dict(checkpoints.load_state_dict(meta))
        module.eval()
        example = torch.zeros(2, 1, 28, 28)
        with torch.inference_mode():
            signature = infer_signature(example.numpy(), module(example).numpy())
        with mlflow.start_run(run_id=mlflow_run_id, log_system_metrics=False):
            mlflow.pytorch.log_model(
                module,
                name=name,
                input_example=example.numpy(),  # MLflow 3's default format, pt2, is a torch.export trace of it
                signature=signature,
                registered_model_name=register_as,
                metadata={"flowerbed_model_id": meta["model_id"], "sha256": meta["sha256"]},
            )


def _param_value(value: Any) -> str:
    return ("" if value is None else str(value))[:6000]


def _round_metrics(data: dict[str, Any]) -> Iterable[tuple[str, float]]:
    for name in ("accuracy", "loss"):
        yield from _numbers(name, data.get(name))
    for name, value in (data.get("train") or {}).items():
        yield from _numbers(f"federated_{name}", value)
    for name, value in (data.get("federated_evaluation") or {}).items():
        yield from _numbers(f"federated_eval_{name}", value)
    for client in data.get("clients") or []:
        node = client.get("partition_id", client.get("node_id"))
        for name, value in client.items():
            if name not in ("partition_id", "node_id"):
                yield from _numbers(f"node{node}_{name}", value)


def _numbers(name: str, value: Any) -> Iterable[tuple[str, float]]:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return
    yield name, float(value)


def _without_credentials(uri: str) -> str:
    """The URI as it may be shown: user and password, if someone put them there, left out."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path, "", ""))
