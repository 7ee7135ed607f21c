"""ServerApp: Flower's strategy plus centralized evaluation, checkpoints and events.

Per round: one train phase on the SuperNodes (their evaluation of the global model
rides in the train replies), Flower's aggregation, centralized evaluation on the
test split, a checkpoint (older ones pruned by the run's keep-checkpoints policy), and
one `round_finished` event on stdout. Replies are screened on arrival (`reply_screen`):
a bad update is that node's failure. A global model that is no longer finite after
aggregation ends the run as failed — it is never evaluated or checkpointed.

Centralized evaluation (seconds of CPU for the 10,000 test images) runs on a worker
thread while the next round's clients start and train: Flower calls `evaluate_fn` last
in a round, when everything else about the round is known, and the next round needs
only the aggregated weights. One worker keeps rounds in order; the run finishes only
after the last round's evaluation and checkpoint, and fails if any of them failed.

With data-source=node there is no central test set: every node is first asked to
describe its data (`data_survey`: nodes without usable data are left out, disagreeing
nodes fail the run before round 1), the model is sized from what they agreed on, a
federated evaluation phase runs every round (at least), and the run's accuracy is that
evaluation's example-weighted mean; events and checkpoints say which kind it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from flowerbed_app.algorithms import secure_aggregation
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.runtime import checkpoint_retention, checkpoints, telemetry
from flowerbed_app.runtime.progress_events import EventEmitter
from flowerbed_app.strategy.fast_grid import FastPollGrid
from flowerbed_app.strategy.reply_screen import ReplyScreen
from flowerbed_app.strategy.strategies import build_strategy
from flowerbed_app.strategy.strategy_wrapper import NodeWaitTimeout, RoundRecord, wait_for_nodes
from flowerbed_app.task.data_description import conversion_to_config
from flowerbed_app.task.data_survey import Survey, survey_nodes
from flowerbed_app.task.fashion_mnist import check_source
from flowerbed_app.task.networks import FASHION_MNIST_SHAPE, create_model
from flowerbed_app.task.partition_cache import load_test_split
from flowerbed_app.task.partition_data import PartitionData
from flowerbed_app.task.training import evaluate, seeded_model

app = ServerApp()


class NonFiniteModel(RuntimeError):
    """Aggregation produced NaN or infinite weights: the run cannot go on from them."""


@app.main()
def main(grid: Grid, context: Context) -> None:
    raw_run_id = str(context.run_config.get("flowerbed-run-id", "") or "")
    events = EventEmitter(raw_run_id or f"flwr-{context.run_id}", context.run_id)
    telemetry.setup("flowerbed-serverapp", {"flower.run_id": str(context.run_id), "flowerbed.run_id": events.run_id})
    parent = str(context.run_config.get("traceparent", "") or "")
    with telemetry.span("fl.run", parent, **{"flowerbed.run_id": events.run_id, "flower.run_id": str(context.run_id)}) as span:
        try:
            settings = RunSettings.from_run_config(context.run_config)
            events.emit("run_started", config=settings.to_run_config(), trace_id=telemetry.trace_id_of(span))
            _run(grid, context, settings, events)
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, Exception) else type(exc).__name__
            events.emit("run_failed", reason=reason, error_type=type(exc).__name__)
            telemetry.mark_error(span, reason)
            raise
        finally:
            telemetry.flush()


def _run(grid: Grid, context: Context, settings: RunSettings, events: EventEmitter) -> None:
    store = Path(settings.model_store) if settings.model_store else checkpoints.default_store()
    run_key = events.run_id
    needed = max(settings.min_available_nodes, settings.min_nodes)
    fast_grid = FastPollGrid(grid)
    survey: Survey | None = None
    if settings.data_source == "node":
        connected = wait_for_nodes(grid, needed, settings.node_wait_timeout, events)
        survey = _survey(fast_grid, connected, settings, events, needed)
        connected = sorted(survey.descriptions)
        fast_grid.allowed = set(connected)
        conversion = survey.run_data.conversion
        num_classes, input_shape = len(conversion.classes), conversion.input_shape
        accuracy_kind = "federated"
    else:
        check_source(settings.dataset)
        num_classes, input_shape = 10, FASHION_MNIST_SHAPE
        accuracy_kind = "centralized"
    fast_grid.screen = ReplyScreen(settings, survey.run_data.node_examples if survey else None)

    def new_model() -> torch.nn.Module:
        return create_model(settings.model, num_classes, input_shape)

    model = seeded_model(new_model, settings.seed)
    round_offset = 0
    # Lineage: every checkpoint of this run names the one the run started from and that one's
    # ancestors, so the chain stays readable when older checkpoints are pruned or deleted.
    ancestors: list[str] = []
    if settings.from_checkpoint:
        meta = checkpoints.find_checkpoint(store, settings.from_checkpoint)
        if meta.get("model") != settings.model:
            raise ValueError(
                f"resume-from: checkpoint {meta['model_id']} holds a {meta.get('model')!r} model, not {settings.model!r}"
            )
        model.load_state_dict(checkpoints.load_state_dict(meta))
        round_offset = int(meta["round"])
        ancestors = [meta["model_id"], *meta.get("ancestors", [])]

    if survey is None:
        x_test, y_test = load_test_split(settings.dataset, settings.max_test_examples, settings.seed)
        connected = wait_for_nodes(grid, needed, settings.node_wait_timeout, events)

    # No test set on the server with nodes' own data: evaluate federatedly every round.
    strategy_settings = dataclasses.replace(settings, evaluate_every=1) if survey else settings
    built = build_strategy(strategy_settings, events, needed, len(connected), round_offset)
    strategy = built.instrumented
    if survey is not None and survey.failures:
        strategy.current(1).failures.extend(survey.failures)  # shown with round 1, where they left the run
    eval_model = new_model()
    final: dict[str, Any] = {}
    partitions = PartitionData(settings) if survey is None else None  # the survey described the nodes' own data

    evaluator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="centralized-evaluation")
    pending: list[Future[None]] = []

    def evaluate_and_checkpoint(server_round: int, arrays: ArrayRecord) -> None:
        # Round 0 (the initial weights) is not evaluated: nothing reads that result, and it
        # cost a whole evaluation before the first round could start.
        if server_round == 0:
            return None
        for done in [f for f in pending if f.done()]:
            done.result()  # a failed evaluation or checkpoint fails the run now, not at the end
            pending.remove(done)
        record: RoundRecord = strategy.current(server_round)
        state = arrays.to_torch_state_dict()  # decoded now: Flower moves on to the next round
        if bad := [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]:
            record.end_span()
            raise NonFiniteModel(
                f"the global model has NaN or infinite weights after aggregating round {record.round} "
                f"({', '.join(bad[:3])}{', …' if len(bad) > 3 else ''}); nothing of it was checkpointed — "
                "lower the (server) learning rate, or use a robust strategy such as fedmedian or krum"
            )
        if partitions is not None and (described := partitions.describe_new(record.clients)) is not None:
            events.emit("data_described", nodes=described, failures=[])
        pending.append(evaluator.submit(_finish_round_in_background, record, state))
        return None  # Flower keeps no centralized metrics of ours: our events carry them

    def _finish_round_in_background(record: RoundRecord, state: dict[str, Any]) -> None:
        try:
            with telemetry.use_span(record.span):
                _finish_round(record, state)
        finally:
            record.end_span()

    def _finish_round(record: RoundRecord, state: dict[str, Any]) -> None:
        eval_model.load_state_dict(state)
        if survey is None:
            with telemetry.span("evaluate.centralized", **{"fl.round": record.round}) as span:
                loss, accuracy = evaluate(eval_model, x_test, y_test)
                span.set_attribute("accuracy", accuracy)
            record.mark("evaluated_centralized")
        else:  # Flower's example-weighted mean of the nodes' evaluations of this round's model
            accuracy = record.federated_eval.get("eval-accuracy", math.nan)
            loss = record.federated_eval.get("eval-loss", math.nan)
        with telemetry.span("checkpoint.save", **{"fl.round": record.round}):
            meta = _save(record, accuracy, loss)
            pruned = checkpoint_retention.prune(
                store / run_key, checkpoints.list_checkpoints(store, run_key), settings.keep_checkpoints
            )
        record.mark("checkpointed")
        events.emit(
            "checkpoint_saved",
            round=record.round,
            model_id=meta["model_id"],
            path=meta["path"],
            sha256=meta["sha256"],
            size=meta["size"],
            pruned=pruned,  # model ids the keep-checkpoints policy deleted just now
        )
        final.update(accuracy=accuracy, loss=loss, round=record.round)
        events.emit(
            "round_finished",
            round=record.round,
            accuracy=accuracy,
            loss=loss,
            accuracy_kind=accuracy_kind,
            train=record.train_metrics,
            federated_evaluation=record.federated_eval,
            clients=sorted(record.clients, key=lambda c: c.get("partition_id", 0)),
            failures=record.failures,
            selected=record.selected,
            seconds=round(time.time() - record.started, 3),
            timeline=record.timeline,
            model_id=meta["model_id"],
            bytes=record.bytes,
            privacy=record.privacy,
            selection=record.selection,
        )

    def _save(record: RoundRecord, accuracy: float, loss: float) -> dict[str, Any]:
        return checkpoints.save_checkpoint(
            store,
            run_key,
            record.round,
            eval_model.state_dict(),
            {
                "run_id": run_key,
                "flower_run_id": context.run_id,
                "model": settings.model,
                "metrics": {"accuracy": accuracy, "loss": loss, **record.train_metrics},
                "accuracy_kind": accuracy_kind,
                "input": survey.run_data.summary() if survey else {"format": "images", "input_shape": list(input_shape)},
                "config": settings.to_run_config(),
                "parent": ancestors[0] if ancestors else None,
                "ancestors": ancestors,
            },
        )

    data_config = conversion_to_config(survey.run_data.conversion) if survey else {}
    # The clients read their optimizer settings from the run config (RunSettings), not from here:
    # one way for each setting. The train message carries only what changes per round or run.
    train_config = ConfigRecord({"traceparent": settings.traceparent, **data_config})
    started = time.time()
    try:
        if secure_aggregation.enabled(settings):
            from flowerbed_app.algorithms import secagg_server

            fast_grid.screen = None  # no single update to screen: the server sees only the masked sum
            initial = ArrayRecord(model.state_dict())
            secagg_server.run(fast_grid, context, settings, strategy, initial, train_config, evaluate_and_checkpoint)  # type: ignore[arg-type]
        else:
            built.runner.start(
                grid=fast_grid,  # type: ignore[arg-type]
                initial_arrays=ArrayRecord(model.state_dict()),
                num_rounds=settings.num_rounds,
                timeout=settings.round_timeout,
                train_config=train_config,
                evaluate_config=ConfigRecord(dict(data_config)),
                evaluate_fn=evaluate_and_checkpoint,
            )
        for future in pending:
            future.result()  # every round evaluated and checkpointed before the run finishes
    except Exception:
        # A run failing in round r+1 still finishes round r: its evaluation, checkpoint and
        # event are what a user resumes from.
        for future in pending:
            with contextlib.suppress(Exception):
                future.result()
        raise
    finally:
        evaluator.shutdown(wait=False, cancel_futures=True)
    if "round" not in final:
        raise RuntimeError("no round completed")
    events.emit(
        "run_finished",
        status="completed",
        accuracy=final["accuracy"],
        loss=final["loss"],
        accuracy_kind=accuracy_kind,
        rounds=final["round"],
        seconds=round(time.time() - started, 3),
    )


def _survey(grid: FastPollGrid, connected: list[int], settings: RunSettings, events: EventEmitter, needed: int) -> Survey:
    """The nodes' data descriptions; too few nodes with usable data fails the run, naming each one's reason."""
    survey = survey_nodes(grid, connected, settings, events)
    if len(survey.descriptions) < needed:
        reasons = "; ".join(f"node {f['node_id']}: {f['reason']}" for f in survey.failures)
        raise NodeWaitTimeout(
            f"only {len(survey.descriptions)} node(s) have usable data, fewer than the {needed} the run needs "
            f"(min-nodes/min-available-nodes) — {reasons}"
        )
    return survey
