"""Unit tests of the reply screen and the update checks, on real Flower records (no federation)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import Metadata

from flowerbed_app.algorithms import update_compression
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.strategy import reply_contract
from flowerbed_app.strategy.reply_screen import REJECTED_UPDATE, ReplyScreen
from flowerbed_app.task.partition_cache import PartitionSpec, load_partition, split_sizes

GLOBAL = {"conv.weight": np.ones((4, 3), np.float32), "conv.bias": np.zeros(4, np.float32), "steps": np.array([7], np.int64)}


def _metadata(message_id: str, reply_to: str = "", kind: str = "train") -> Metadata:
    return Metadata(
        run_id=1,
        message_id=message_id,
        src_node_id=42,
        dst_node_id=0,
        reply_to_message_id=reply_to,
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type=kind,
    )


SENT = Message(content=RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in GLOBAL.items()})}), metadata=_metadata("m"))


def _reply(arrays: dict[str, Array] | ArrayRecord | None = None, examples: float = 100, **client: object) -> Message:
    metrics = {key: 1.0 for key in reply_contract.TRAIN_METRICS} | {reply_contract.WEIGHT: examples}
    record = {"partition-id": 1, "num-partitions": 3} | client
    arrays = arrays if arrays is not None else {k: Array(v * 2) for k, v in GLOBAL.items()}
    content = RecordDict(
        {"arrays": ArrayRecord(dict(arrays)), "metrics": MetricRecord(metrics), "client": ConfigRecord(record)}  # type: ignore[arg-type]
    )
    return Message(content=content, metadata=_metadata("r", reply_to="m"))


def _screen(reply: Message, **settings: object) -> Message:
    return ReplyScreen(RunSettings(**settings))(SENT, reply)  # type: ignore[arg-type]


def _with(name: str, value: Array) -> dict[str, Array]:
    return {k: Array(v * 2) for k, v in GLOBAL.items()} | {name: value}


def _reason(reply: Message) -> str:
    assert reply.has_error(), "the reply was accepted"
    assert reply.error.code == REJECTED_UPDATE
    assert reply.metadata.reply_to_message_id == "m" and reply.metadata.src_node_id == 42  # still that node's reply
    return reply.error.reason


def test_a_valid_update_passes_unchanged_and_is_annotated() -> None:
    reply = _screen(_reply())
    assert not reply.has_error()
    assert reply.content["metrics"]["num-examples"] == 100
    client = reply.content["client"]
    assert client["bytes-sent"] == client["bytes-dense"] > 0 and "num-examples-claimed" not in client


def test_garbage_payload_bytes_are_rejected_as_undecodable() -> None:
    old = Array(GLOBAL["conv.weight"])
    garbage = Array(dtype=old.dtype, shape=old.shape, stype=old.stype, data=os.urandom(len(old.data)))
    assert "undecodable" in _reason(_screen(_reply(_with("conv.weight", garbage))))


def test_a_truncated_payload_or_trailing_bytes_are_rejected() -> None:
    good = Array(GLOBAL["conv.weight"])
    for data in (good.data[:-4], good.data + b"\0" * 4):
        forged = Array(dtype=good.dtype, shape=good.shape, stype=good.stype, data=data)
        assert "bytes of values" in _reason(_screen(_reply(_with("conv.weight", forged))))


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        (_with("conv.weight", Array(np.full((4, 3), np.nan, np.float32))), "12 non-finite values"),
        (_with("conv.bias", Array(np.array([0, np.inf, 0, 0], np.float32))), "1 non-finite values"),
        (_with("conv.weight", Array(np.ones((3, 4), np.float32))), "has shape (3, 4), the global model's has (4, 3)"),
        (_with("conv.weight", Array(np.ones((4, 3), np.float64))), "is float64, the global model's is float32"),
        (_with("extra", Array(np.ones(2, np.float32))), "unexpected ['extra']"),
        ({k: Array(v) for k, v in GLOBAL.items() if k != "steps"}, "missing ['steps']"),
    ],
)
def test_bad_arrays_are_rejected_with_the_reason(arrays: dict[str, Array], words: str) -> None:
    assert words in _reason(_screen(_reply(arrays)))


@pytest.mark.parametrize(
    ("examples", "words"), [(float("nan"), "not a finite number"), (0, "whole number >= 1"), (2.5, "whole number >= 1")]
)
def test_bad_example_counts_are_rejected(examples: float, words: str) -> None:
    assert words in _reason(_screen(_reply(examples=examples)))


def test_example_counts_are_capped_by_the_partition_and_max_train_examples() -> None:
    train_size, _ = split_sizes(PartitionSpec.of(RunSettings(), 0, 3))[1]
    reply = _screen(_reply(examples=10**9))
    assert reply.content["metrics"]["num-examples"] == train_size
    assert reply.content["client"]["num-examples-claimed"] == 10**9
    assert _screen(_reply(examples=10**9), max_train_examples=300).content["metrics"]["num-examples"] == 300


def test_a_reply_must_name_a_plausible_partition() -> None:
    for client in ({"partition-id": 3}, {"num-partitions": 0}, {"num-partitions": 10**6}, {"partition-id": "one"}):
        assert "must name its partition" in _reason(_screen(_reply(**client)))  # type: ignore[arg-type]


def test_foreign_metric_keys_and_records_are_rejected() -> None:
    reply = _reply()
    reply.content["metrics"]["extra-metric"] = 1.0
    assert "unexpected ['extra-metric']" in _reason(_screen(reply))
    reply = _reply()
    reply.content["metrics"]["train-loss"] = float("inf")
    assert "'train-loss' is not a finite number" in _reason(_screen(reply))
    reply = _reply()
    reply.content["more"] = ArrayRecord({"x": Array(np.ones(1, np.float32))})
    assert "array records ['arrays', 'more']" in _reason(_screen(reply))


def test_compressed_updates_are_decoded_and_hostile_ones_refused() -> None:
    base = {k: v for k, v in GLOBAL.items()}
    new = {k: (v + 0.5 if v.dtype == np.float32 else v) for k, v in base.items()}
    sent, _ = update_compression.compress_update(new, base, None, "topk+int8", 0.5)
    reply = _screen(_reply({k: Array(v) for k, v in sent.items()}))
    assert not reply.has_error() and reply.content["client"]["compressed"]
    assert sorted(reply.content["arrays"].keys()) == sorted(GLOBAL)
    # A claimed shape that would allocate terabytes, and indices pointing outside the tensor.
    huge = dict(sent) | {"conv.weight|shape": np.array([10**7, 10**7], np.int64)}
    assert "encoded shape" in _reason(_screen(_reply({k: Array(v) for k, v in huge.items()})))
    outside = dict(sent) | {"conv.weight|idx": np.full_like(sent["conv.weight|idx"], 10**6)}
    assert "indices outside" in _reason(_screen(_reply({k: Array(v) for k, v in outside.items()})))


def test_split_sizes_are_the_partitions_sizes() -> None:
    for partitioner in ("iid", "dirichlet"):
        settings = RunSettings(partitioner=partitioner, alpha=0.3)
        sizes = split_sizes(PartitionSpec.of(settings, 0, 3))
        for partition in range(3):
            part = load_partition(PartitionSpec.of(settings, partition, 3))
            assert sizes[partition] == (len(part.y_train), len(part.y_val))


def test_evaluate_replies_are_screened_and_capped_by_the_validation_split() -> None:
    sent = Message(content=SENT.content, metadata=_metadata("e", kind="evaluate"))

    def reply(**metrics: float) -> Message:
        values = {reply_contract.WEIGHT: 10**9, "eval-loss": 0.5, "eval-accuracy": 0.8} | metrics
        client = ConfigRecord({"partition-id": 0, "num-partitions": 3})
        content = RecordDict({"metrics": MetricRecord(values), "client": client})  # type: ignore[arg-type]
        return Message(content=content, metadata=_metadata("er", reply_to="e", kind="evaluate"))

    screen = ReplyScreen(RunSettings())
    _, val_size = split_sizes(PartitionSpec.of(RunSettings(), 0, 3))[0]
    assert screen(sent, reply()).content["metrics"]["num-examples"] == val_size
    rejected = screen(sent, reply(**{"eval-loss": float("nan")}))
    assert rejected.has_error() and "'eval-loss' is not a finite number" in rejected.error.reason


def test_nodes_with_their_own_data_are_capped_by_what_they_described() -> None:
    """data-source=node: no partitions; a reply counts at most the examples its node described before round 1."""
    settings = RunSettings(data_source="node")
    reply = _reply(examples=10**6)
    del reply.content["client"]["partition-id"], reply.content["client"]["num-partitions"]
    screened = ReplyScreen(settings, {42: 120})(SENT, reply)
    assert screened.content["metrics"]["num-examples"] == 120 and screened.content["client"]["num-examples-claimed"] == 10**6
    assert "described no data" in _reason(ReplyScreen(settings, {7: 120})(SENT, _reply()))
