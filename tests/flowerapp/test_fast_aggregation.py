"""fast_aggregation gives Flower's weighted average bit for bit, and Flower's strategies use it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, strategy_utils
from flwr.serverapp.strategy import fedavg as flower_fedavg

from flowerbed_app.strategy import fast_aggregation
from flowerbed_app.strategy.fast_aggregation import BLOCK, aggregate_arrayrecords, replacing_flowers_aggregation


def _content(arrays: dict[str, np.ndarray], examples: int) -> RecordDict:
    """What a client's train reply carries."""
    return RecordDict(
        {"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}), "metrics": MetricRecord({"num-examples": examples})}
    )


def _replies(arrays_of: list[dict[str, np.ndarray]], examples: list[int]) -> list[RecordDict]:
    return [_content(arrays, n) for arrays, n in zip(arrays_of, examples, strict=True)]


def _client_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.standard_normal((64, 32, 3, 3)).astype(np.float32),  # several blocks: the threaded path
        "fc.bias": rng.standard_normal(10).astype(np.float32),  # smaller than a block
        "bn.num_batches_tracked": np.array(100 + seed, dtype=np.int64),  # 0-d, integer → float64 as in Flower
        "half": rng.standard_normal((5, 7)).astype(np.float16),
        "double": rng.standard_normal(4 * BLOCK + 3).astype(np.float64),  # threaded, ragged last block
    }


def _assert_identical(expected: ArrayRecord, got: ArrayRecord) -> None:
    assert list(expected.keys()) == list(got.keys())
    for key in expected:
        a, b = expected[key], got[key]
        assert (a.dtype, tuple(a.shape), a.stype) == (b.dtype, tuple(b.shape), b.stype), key
        x, y = a.numpy(), b.numpy()
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert np.array_equal(x, y), f"{key}: max diff {np.max(np.abs(x.astype(np.float64) - y))}"


@pytest.mark.parametrize("clients", [1, 2, 7])
def test_bit_identical_to_flowers_average(clients):
    replies = _replies([_client_arrays(i) for i in range(clients)], [50 + 13 * i for i in range(clients)])
    _assert_identical(
        strategy_utils.aggregate_arrayrecords(replies, "num-examples"), aggregate_arrayrecords(replies, "num-examples")
    )


def test_what_it_does_not_handle_goes_to_flowers_function_with_the_same_result():
    fortran = [{"w": np.asfortranarray(np.arange(12.0 * (i + 1)).reshape(3, 4 * (i + 1))[:, :4])} for i in range(3)]
    replies = _replies(fortran, [1, 2, 3])
    assert fast_aggregation.flat_view(replies[0]["arrays"]["w"]) is None  # Fortran order: not viewed in place
    _assert_identical(
        strategy_utils.aggregate_arrayrecords(replies, "num-examples"), aggregate_arrayrecords(replies, "num-examples")
    )


def test_npy_v3_headers_go_to_flowers_function():
    """Version 3 headers are UTF-8 (version 2 is latin-1): not parsed here, Flower's np.load reads them."""

    def v3(values: np.ndarray) -> Array:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, values, version=(3, 0))
        return Array(dtype=str(values.dtype), shape=values.shape, stype="numpy.ndarray", data=buffer.getvalue())

    arrays = [np.arange(6, dtype=np.float32) * (i + 1) for i in range(3)]
    replies = [
        RecordDict({"arrays": ArrayRecord({"w": v3(a)}), "metrics": MetricRecord({"num-examples": 5 + i})})
        for i, a in enumerate(arrays)
    ]
    assert fast_aggregation.flat_view(replies[0]["arrays"]["w"]) is None
    _assert_identical(
        strategy_utils.aggregate_arrayrecords(replies, "num-examples"), aggregate_arrayrecords(replies, "num-examples")
    )


def test_never_unpickles():
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    objects = Array(
        dtype="object",
        shape=(1,),
        stype="numpy.ndarray",
        data=b"\x93NUMPY\x01\x00" + len(header + b"\n").to_bytes(2, "little") + header + b"\n" + b"\0" * 8,
    )
    assert fast_aggregation.flat_view(objects) is None


def _train_reply(arrays: dict[str, np.ndarray], examples: int, node: int) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id=f"reply-{node}",
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id=f"train-{node}",
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type="train",
    )
    return Message(content=_content(arrays, examples), metadata=metadata)


@pytest.mark.parametrize("strategy_cls", [FedAvg, FedAdam])
def test_flowers_strategies_aggregate_through_it_only_inside_the_block(strategy_cls, monkeypatch):
    calls = []
    original = fast_aggregation.aggregate_arrayrecords

    def counting(records, key):  # type: ignore[no-untyped-def]
        calls.append(len(records))
        return original(records, key)

    monkeypatch.setattr(fast_aggregation, "aggregate_arrayrecords", counting)
    arrays = [_client_arrays(i) for i in range(3)]
    replies = [_train_reply(a, 20 + i, node=i + 1) for i, a in enumerate(arrays)]

    def aggregate(patched: bool) -> ArrayRecord:
        strategy = strategy_cls()
        if strategy_cls is FedAdam:
            strategy.current_arrays = {k: np.zeros_like(v) for k, v in arrays[0].items()}  # the previous global model
        if patched:
            with replacing_flowers_aggregation():
                return strategy.aggregate_train(1, replies)[0]
        return strategy.aggregate_train(1, replies)[0]

    ours = aggregate(patched=True)
    assert calls == [3]
    assert flower_fedavg.aggregate_arrayrecords is strategy_utils.aggregate_arrayrecords  # restored
    _assert_identical(aggregate(patched=False), ours)
    assert calls == [3]  # outside the block Flower's own function ran
