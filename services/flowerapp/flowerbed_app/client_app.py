"""ClientApp: local training on this SuperNode's partition, or on its own data directory.

Flower starts a new process for every message, so this module keeps its import
cost near `import torch` (no `datasets`/`flwr_datasets` unless the partition cache
misses, no Opacus unless dp=local) and carries its evaluation of the received global
model inside the train reply: one message phase per round instead of two.

What must outlive the process — the DP accountant's history, the compression
residual — lives in `context.state`, which the SuperNode keeps per run and hands to
the next ClientApp of that run (in memory: a restarted SuperNode starts afresh).

With data-source=node the node's data comes from its node config's data-dir
(`node_data`); before round 1 the ServerApp's query message asks for its description
(`data_description`: counts and schema, never rows), and every train/evaluate message
carries the conversion the run agreed on (classes, input shape, feature statistics).

Replies follow `reply_contract`, which the ServerApp checks every reply against. A
handler still running at the round's timeout is stopped (`handler_deadline`): Flower
would leave it running and its node out of every later round.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from flowerbed_app.algorithms import privacy, secagg_client, update_compression
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.runtime import telemetry
from flowerbed_app.runtime.compute_slots import maybe_compute_slot
from flowerbed_app.runtime.handler_deadline import deadline, seconds_left
from flowerbed_app.runtime.process_clock import process_started_at
from flowerbed_app.strategy import reply_contract as contract
from flowerbed_app.task import client_inputs
from flowerbed_app.task.data_description import describe
from flowerbed_app.task.networks import FASHION_MNIST_SHAPE, create_model
from flowerbed_app.task.node_data import data_dir_of
from flowerbed_app.task.node_files import NodeDataError, read_raw
from flowerbed_app.task.training import DpSgd, evaluate, round_options, train

MODULE_LOADED_AT = time.time()
app = ClientApp(mods=[secagg_client.secaggplus_when_asked])  # SecAgg+ messages only; others pass untouched

DP_STATE = "dp-accountant"
RESIDUAL_STATE = "compression-residual"

if threads := int(os.environ.get("FLOWERBED_TORCH_THREADS", "0")):
    # Several ClientApps share two cores; oversubscribed BLAS threads slow all of them.
    torch.set_num_threads(threads)


def warm_up() -> None:
    """Called once by a warm executor (flowerbed-superexec) in the process it forks every
    ClientApp from: one validation and one training step of the default model on a blank
    batch, and the tracing SDK's imports. A fresh process pays ~10× a later step for its
    first one (torch initializes its kernels); forks of a warmed process do not. Runs on one
    thread, so no thread pool starts in a process that forks, and leaves torch's thread
    count and random state as it found them."""
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    torch.set_num_threads(1)
    try:
        images, labels = np.zeros((32, 28, 28), np.uint8), np.zeros(32, np.int64)
        model = create_model(RunSettings().model)
        evaluate(model, images, labels)
        train(model, images, labels, learning_rate=0.01, momentum=0.9, epochs=1, batch_size=32, seed=0)
        telemetry.preload()
    finally:
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng)


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    handler_started = time.time()
    settings = RunSettings.from_run_config(context.run_config)
    if secagg_client.is_legacy_fit(msg):  # SecAgg+'s masked stage: the same training, in the legacy format
        names = list(create_model(settings.model, 10, FASHION_MNIST_SHAPE).state_dict())
        reply = _train_handler(secagg_client.as_train_message(msg, names), context, settings, handler_started)
        return secagg_client.as_fitres(reply, msg)
    return _train_handler(msg, context, settings, handler_started)


def _train_handler(msg: Message, context: Context, settings: RunSettings, handler_started: float) -> Message:
    config = msg.content["config"]
    server_round = int(config.get("server-round", 0))
    partition_id = client_inputs.partition_id(settings, context)
    _setup_tracing(context, partition_id)
    try:
        with telemetry.span(
            "fl.client.train",
            str(config.get("traceparent", "")),
            **{"fl.round": server_round, "fl.node_id": str(context.node_id), "fl.partition_id": partition_id},
        ) as span:
            limit = seconds_left(msg.metadata.created_at, settings.round_timeout)
            with deadline(limit, f"train of round {server_round}"), maybe_compute_slot() as slot_acquired:
                span.set_attribute("fl.slot_wait_seconds", slot_acquired - handler_started)
                reply = _train(msg, context, settings, server_round, span, handler_started, slot_acquired)
    finally:
        # Once the span has ended: this process ends after the reply (a forked warm task by
        # os._exit, without atexit), so what is not exported now never is.
        telemetry.flush()
    return reply


def _train(
    msg: Message,
    context: Context,
    settings: RunSettings,
    server_round: int,
    span: Any,
    handler_started: float,
    slot_acquired: float,
) -> Message:
    config = msg.content["config"]
    partition_id, part = client_inputs.partition(settings, context, config)
    model = client_inputs.global_model(settings, msg)
    x, y = client_inputs.capped(settings, part.x_train, part.y_train)
    span.set_attribute("fl.num_examples", len(y))
    tracing = telemetry.enabled()
    received_model = copy.deepcopy(model)  # validated after training; its weights are the update's base
    received = received_model.state_dict()
    dp = None
    if settings.dp == "local":
        history = privacy.history_from_config(context.state.config_records.get(DP_STATE))
        dp = DpSgd(settings.dp_noise_multiplier, settings.dp_max_grad_norm, history)
    result = train(
        model,
        x,
        y,
        **round_options(settings, server_round, client_inputs.seed_key(partition_id, context)),
        epoch_scope=(lambda epoch: telemetry.span("train.epoch", epoch=epoch)) if tracing else None,
        step_scope=step_scope(settings.trace_step_every) if tracing else None,
        dp=dp,
    )
    # The global model as received is validated after training, on its copy: the same
    # figures, and the first batch does not wait for them (validation was about half of a
    # warm task's start, BENCHMARKS.md "Warm ClientApps").
    x_val, y_val = client_inputs.capped(settings, part.x_val, part.y_val)
    val_loss, val_accuracy = evaluate(received_model, x_val, y_val)
    metrics = contract.metric_record(
        contract.TRAIN_METRICS,
        {
            contract.WEIGHT: result.num_examples,
            "train-loss": result.loss,
            "train-accuracy": result.accuracy,
            "train-seconds": result.seconds,
            "train-steps": result.steps,
            "val-loss": val_loss,
            "val-accuracy": val_accuracy,
            "val-examples": len(y_val),
        },
    )
    span.set_attribute("train.loss", result.loss)
    client = _client_record(settings, context, handler_started, slot_acquired)
    client["t-first-step"] = result.first_step_at
    client["t-sent"] = msg.metadata.created_at  # the ServerApp made the message (then pushed it)
    if result.privacy_history is not None:
        context.state[DP_STATE] = ConfigRecord(privacy.history_to_config(result.privacy_history))  # type: ignore[arg-type]
        client["epsilon"] = privacy.epsilon(result.privacy_history, settings.dp_delta)
        client["dp-steps"] = sum(steps for _, _, steps in result.privacy_history)
    arrays = ArrayRecord(model.state_dict())
    if settings.compression != "none":
        arrays = _compress(arrays, received, context, settings)
    content = RecordDict({contract.ARRAYS: arrays, contract.METRICS: metrics, contract.CLIENT: client})
    return Message(content=content, reply_to=msg)


def _compress(arrays: ArrayRecord, received: dict[str, torch.Tensor], context: Context, settings: RunSettings) -> ArrayRecord:
    """The update (trained − received), compressed, plus last round's residual (error feedback)."""
    old = context.state.array_records.get(RESIDUAL_STATE)
    residual = {k: v.numpy() for k, v in old.items()} if old is not None else None
    sent, new_residual = update_compression.compress_update(
        {k: v.numpy() for k, v in arrays.items()},
        {k: v.numpy() for k, v in received.items()},
        residual,
        settings.compression,
        settings.compression_ratio,
    )
    context.state[RESIDUAL_STATE] = ArrayRecord({k: Array(v) for k, v in new_residual.items()})
    return ArrayRecord({k: Array(v) for k, v in sent.items()})


def step_scope(every: int) -> Any:
    """A train.step span for every `every`-th step (0: none), so huge runs stay cheap."""

    @contextlib.contextmanager
    def scope(epoch: int, step: int) -> Iterator[Any]:
        if every and step % every == 0:
            with telemetry.span("train.step", epoch=epoch, step=step) as current:
                yield current
        else:
            yield None

    return scope


def _setup_tracing(context: Context, partition_id: int) -> None:
    telemetry.setup(
        "flowerbed-clientapp",
        {
            "flower.run_id": str(context.run_id),
            "flower.node_id": str(context.node_id),
            "flowerbed.partition_id": partition_id,
            "flowerbed.run_id": str(context.run_config.get("flowerbed-run-id", "")),
        },
    )


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    handler_started = time.time()
    settings = RunSettings.from_run_config(context.run_config)
    config = msg.content["config"]
    partition_id = client_inputs.partition_id(settings, context)
    _setup_tracing(context, partition_id)
    try:
        with telemetry.span(
            "fl.client.evaluate",
            str(config.get("traceparent", "")),
            **{
                "fl.round": int(config.get("server-round", 0)),
                "fl.node_id": str(context.node_id),
                "fl.partition_id": partition_id,
            },
        ):
            limit = seconds_left(msg.metadata.created_at, settings.round_timeout)
            with deadline(limit, "federated evaluation"), maybe_compute_slot() as slot_acquired:
                partition_id, part = client_inputs.partition(settings, context, config)
                model = client_inputs.global_model(settings, msg)
                x_val, y_val = client_inputs.capped(settings, part.x_val, part.y_val)
                loss, accuracy = evaluate(model, x_val, y_val)
    finally:
        telemetry.flush()  # after the span ended (see train_fn)
    metrics = contract.metric_record(
        contract.EVALUATE_METRICS, {contract.WEIGHT: len(y_val), "eval-loss": loss, "eval-accuracy": accuracy}
    )
    client = _client_record(settings, context, handler_started, slot_acquired)
    content = RecordDict({contract.METRICS: metrics, contract.CLIENT: client})
    return Message(content=content, reply_to=msg)


@app.query()
def describe_fn(msg: Message, context: Context) -> Message:
    """This node's data description (data-source=node, before round 1), or why it has none:
    an unusable directory is this node's failure, which the ServerApp reports and leaves
    out of the run — never an exception that would read as a crash."""
    settings = RunSettings.from_run_config(context.run_config)
    try:
        directory = data_dir_of(context.node_config)
        raw = read_raw(directory, settings.label_column)
        description = describe(raw, directory.name, settings.validation_fraction, settings.seed)
        record = ConfigRecord({contract.DESCRIPTION: json.dumps(description)})
    except NodeDataError as exc:
        record = ConfigRecord({contract.DATA_ERROR: str(exc)})
    return Message(content=RecordDict({contract.DATA: record}), reply_to=msg)


def _client_record(settings: RunSettings, context: Context, handler_started: float, slot_acquired: float) -> ConfigRecord:
    """Who answered (its partition: the server bounds its example count by it; nodes with
    their own data are bounded by what they described), and the wall-clock timeline of
    this short-lived process (`t-slot-acquired` = `t-handler-start` unless it waited for a
    compute slot)."""
    where: dict[str, int] = {}
    if settings.data_source == "partitions":
        partition_id, num_partitions = client_inputs.node(context)
        where = {contract.PARTITION_ID: partition_id, contract.NUM_PARTITIONS: num_partitions}
    return ConfigRecord(
        {
            **where,
            "pid": os.getpid(),
            "t-process-start": process_started_at(),
            "t-module-loaded": MODULE_LOADED_AT,
            "t-handler-start": handler_started,
            "t-slot-acquired": slot_acquired,
            "t-reply": time.time(),
        }
    )
