"""The one code path that starts and stops runs (API, CLI and dashboard all land here).

Order matters: validate → admit (cap on active runs) → DB row → StartRun → remember
Flower's id → follow. A run is in our history before Flower hears of it, so a crash in
between leaves a visible `failed` run rather than an untracked Flower run.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from flowerbed.db.run_history import RunHistory
from flowerbed.db.tables import TERMINAL_STATUSES, Run
from flowerbed.flower_control import FlowerControl
from flowerbed.runs.run_config import FieldError, TrainingConfig
from flowerbed.runs.run_resume import resume_config
from flowerbed.runs.run_tracker import RunTracker
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.runtime import checkpoints, telemetry


class RunNotFound(LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} not found")


class RunAlreadyFinished(RuntimeError):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is already {status}")


class SuperLinkUnavailable(RuntimeError):
    """The SuperLink did not accept a request; the message says what to check."""


class TooManyActiveRuns(RuntimeError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} runs are already pending or running (the limit, set by FLOWERBED_MAX_ACTIVE_RUNS); "
            "wait for one to finish or stop one"
        )


class RunService:
    def __init__(
        self,
        history: RunHistory,
        tracker: RunTracker,
        control_factory: Callable[[], FlowerControl],
        app_dir: Path,
        model_store: Path,
        max_active_runs: int = 8,
    ) -> None:
        self.history = history
        self.tracker = tracker
        self.control_factory = control_factory
        self.app_dir = app_dir
        self.model_store = model_store
        self.max_active_runs = max_active_runs
        # Counting active runs and adding one must not interleave (two starts at the limit).
        self._admission = threading.RLock()

    def check(self, config: TrainingConfig) -> RunSettings:
        """Everything that can be known before Flower is asked; raises FieldError. The run's settings, as the apps read them."""
        settings = config.validate_domain()
        if config.from_checkpoint:
            try:
                checkpoints.split_model_id(config.from_checkpoint)
                meta = checkpoints.find_checkpoint(self.model_store, config.from_checkpoint)
            except checkpoints.CheckpointError as exc:
                raise FieldError("from_checkpoint", str(exc), config.from_checkpoint) from None
            if meta.get("model") != config.model:
                raise FieldError(
                    "from_checkpoint",
                    f"checkpoint {config.from_checkpoint} holds a {meta.get('model')!r} model but model is {config.model!r}",
                    config.from_checkpoint,
                )
        return settings

    def start(self, config: TrainingConfig) -> Run:
        settings = self.check(config)
        return self._submit(self._admit(config), settings)

    def resume(self, run_id: str) -> Run:
        """Continue a failed or stopped run from its last checkpoint, as a new run linked to it."""
        with self._admission:
            run = self.history.get_run(run_id)
            if run is None:
                raise RunNotFound(run_id)
            config = resume_config(run, self.model_store, self.history.resumed_by(run_id))
            settings = self.check(config)
            self._make_sure_flower_stopped(run)
            new_run_id = self._admit(config, resumed_from=run_id)
        return self._submit(new_run_id, settings)

    def _make_sure_flower_stopped(self, run: Run) -> None:
        """A run we recorded failed (SuperLink lost) may live on in Flower: never train the same thing twice."""
        if run.flower_run_id is None:
            return
        try:
            control = self.control_factory()
            flower = control.get_run(int(run.flower_run_id))
            if flower is not None and not flower.finished:
                control.stop_run(int(run.flower_run_id))
        except Exception as exc:
            raise SuperLinkUnavailable(f"cannot check the run's state on the SuperLink before resuming it: {exc}") from exc

    def _admit(self, config: TrainingConfig, resumed_from: str | None = None) -> str:
        with self._admission:
            if self.history.active_run_count() >= self.max_active_runs:
                raise TooManyActiveRuns(self.max_active_runs)
            run_id = uuid.uuid4().hex
            self.history.create_run(run_id, config.model_dump(), config.num_rounds, config.from_checkpoint, resumed_from)
        return run_id

    def _submit(self, run_id: str, settings: RunSettings) -> Run:
        try:
            # Every setting goes to Flower as the run config the ServerApp and ClientApps read back with
            # RunSettings.from_run_config; the ServerApp's fl.run span becomes a child of this request's span.
            settings = replace(
                settings, flowerbed_run_id=run_id, model_store=str(self.model_store), traceparent=telemetry.traceparent_of()
            )
            flower_run_id = self.control_factory().start_run(self.app_dir, settings.to_run_config())
        except Exception as exc:
            self.tracker.set_status(run_id, "failed", error=f"the SuperLink refused the run: {exc}")
            raise SuperLinkUnavailable(f"could not start the run on the SuperLink: {exc}") from exc
        self.history.set_flower_run_id(run_id, flower_run_id)
        self.tracker.attach(run_id)
        run = self.history.get_run(run_id)
        assert run is not None
        return run

    def stop(self, run_id: str) -> None:
        run = self.history.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status in TERMINAL_STATUSES:
            raise RunAlreadyFinished(run_id, run.status)
        if run.flower_run_id is None:
            self.tracker.set_status(run_id, "stopped")
            return
        try:
            self.control_factory().stop_run(int(run.flower_run_id))
        except Exception as exc:
            raise SuperLinkUnavailable(f"could not stop the run on the SuperLink: {exc}") from exc
        self.tracker.attach(run_id)  # make sure someone records the final status
