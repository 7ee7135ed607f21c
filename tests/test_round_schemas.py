"""`RoundDetail` has real fields now; the JSON a client gets is still exactly the stored round payload (contracts
are promises): undeclared metrics kept, declared keys the payload lacked not added as null, node ids as strings."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flowerbed.api.round_schemas import RoundDetail

BIG = 2**60  # uint64 node ids above 2**53 lose precision as JSON numbers


def _round(payload: dict[str, Any]) -> dict[str, Any]:
    row = SimpleNamespace(round=2, accuracy=0.5, loss=0.7, payload=payload)
    return RoundDetail.of(row).model_dump(mode="json")  # type: ignore[arg-type]


def test_a_round_keeps_the_stored_shape() -> None:
    client = {"node_id": BIG, "partition_id": 1, "num_examples": 600, "val_loss": 0.5, "t_fit_end": 1.25, "custom-metric": 3}
    out = _round(
        {
            "clients": [client],
            "failures": [{"node_id": 7, "phase": "train", "reason": "NaN in update"}],
            "train": {"val-accuracy": 0.75, "num-examples": 600},
            "bytes": {"sent_compressed": 10, "dense_equivalent": 40, "ratio": 4.0},
            "privacy": {"mode": "none", "epsilon": None, "delta": None},
            "selection": {"mode": "performance", "scores": {BIG: -0.5}, "explored": [BIG, 3]},
            "timeline": {"trained": 1.5},
            "seconds": 2.5,
        }
    )
    assert out["clients"] == [{**client, "node_id": str(BIG)}]
    assert out["failures"] == [{"node_id": "7", "phase": "train", "reason": "NaN in update"}]
    assert out["train"] == {"val-accuracy": 0.75, "num-examples": 600}
    assert isinstance(out["train"]["num-examples"], int)
    assert out["bytes"] == {"sent_compressed": 10, "dense_equivalent": 40, "ratio": 4.0}
    assert out["privacy"] == {"mode": "none", "epsilon": None, "delta": None}
    assert out["selection"] == {"mode": "performance", "scores": {str(BIG): -0.5}, "explored": [str(BIG), 3]}


def test_an_old_round_without_the_newer_records_stays_as_it_was() -> None:
    out = _round({"clients": [{"node_id": 1}]})
    assert out["clients"] == [{"node_id": "1"}]
    assert out["bytes"] == {} and out["privacy"] == {} and out["selection"] == {}
    assert out["failures"] == [] and out["train"] == {} and out["timeline"] == {}
    assert out["accuracy_kind"] == "centralized" and out["model_id"] is None
