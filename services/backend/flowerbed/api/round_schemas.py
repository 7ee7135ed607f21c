"""A round as the API shows it (`GET /training/{id}` → `rounds`), with real fields for what the ServerApp records.

The round's payload is what the ServerApp's `round_finished` event carried, so a client row holds whatever
metrics the task reports (`t_*` timings, task-specific metrics) besides the declared ones: the records keep
undeclared keys, and leave out declared keys the payload did not have, so the JSON is exactly the stored one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from flowerbed.db.models import Round

AccuracyKind = Literal["centralized", "federated"]
# Flower MetricRecord values: numbers or lists of numbers (ints stay ints).
Metric = int | float | list[int | float]


class Recorded(BaseModel):
    """A record from the payload: undeclared keys kept, declared keys absent from the payload left out."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _as_recorded(self, handler: SerializerFunctionWrapHandler):  # no return type: the JSON schema stays the model's
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set or k in (self.model_extra or {})}


class ClientResult(Recorded):
    """One node's valid reply; the metrics its ClientApp reported (`t_*`: seconds since the round started)."""

    node_id: str
    partition_id: int | None = None
    num_examples: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    train_seconds: float | None = None
    val_loss: float | None = Field(None, description="The global model it received, on its validation split, before training.")
    val_accuracy: float | None = None
    bytes_sent: int | None = Field(None, description="Size of its (possibly compressed) update.")
    bytes_dense: int | None = Field(None, description="Size of the same update uncompressed.")
    epsilon: float | None = Field(None, description="Local DP: the privacy this node has spent so far.")


class RoundFailure(Recorded):
    """A node left out of the round, and why (a bad update is that node's failure, never the run's)."""

    node_id: str | None = None
    phase: str | None = Field(None, description="train, evaluate or describe.")
    reason: str | None = None


class RoundBytes(Recorded):
    sent_compressed: int | None = None
    dense_equivalent: int | None = None
    ratio: float | None = None


class RoundPrivacy(Recorded):
    mode: str | None = Field(None, description="central, local or none.")
    epsilon: float | None = None
    delta: float | None = None


class RoundSelection(Recorded):
    mode: str | None = Field(None, description="random or performance.")
    scores: dict[str, float] = Field(default_factory=dict, description="Per node id: its score (negative val loss).")
    explored: list[int | str] = Field(default_factory=list, description="Node ids picked to explore, not on score.")


class RoundDetail(BaseModel):
    round: int
    accuracy: float | None
    accuracy_kind: AccuracyKind = "centralized"
    loss: float | None
    train: dict[str, Metric] = Field(default_factory=dict, description="Flower's aggregate of the clients' train metrics.")
    federated_evaluation: dict[str, Metric] = Field(default_factory=dict)
    clients: list[ClientResult] = Field(default_factory=list, description="Per node: node_id, partition_id, metrics.")
    failures: list[RoundFailure] = Field(default_factory=list, description="Per failed node: node_id, phase, reason.")
    seconds: float | None = Field(
        None,
        description="From the round's start until its result (centralized evaluation, checkpoint) was ready; "
        "evaluation overlaps the next round, so this can exceed the gap between rounds.",
    )
    timeline: dict[str, float] = Field(default_factory=dict, description="Per phase: seconds since the round started.")
    model_id: str | None = None
    bytes: RoundBytes = Field(default_factory=RoundBytes, description="sent_compressed, dense_equivalent, ratio.")
    privacy: RoundPrivacy = Field(default_factory=RoundPrivacy, description="epsilon, delta, mode (DP runs).")
    selection: RoundSelection = Field(default_factory=RoundSelection, description="mode, scores, explored (who was picked, why).")

    @classmethod
    def of(cls, row: Round) -> RoundDetail:
        p = row.payload
        clients = [{**c, "node_id": str(c["node_id"])} if "node_id" in c else c for c in p.get("clients") or []]
        failures = [{**f, "node_id": str(f["node_id"])} if "node_id" in f else f for f in p.get("failures") or []]
        return cls.model_validate(
            {
                "round": row.round,
                "accuracy": row.accuracy,
                "accuracy_kind": p.get("accuracy_kind") or "centralized",
                "loss": row.loss,
                "train": p.get("train") or {},
                "federated_evaluation": p.get("federated_evaluation") or {},
                "clients": clients,
                "failures": failures,
                "seconds": p.get("seconds"),
                "timeline": p.get("timeline") or {},
                "model_id": p.get("model_id"),
                "bytes": p.get("bytes") or {},
                "privacy": p.get("privacy") or {},
                "selection": _string_keys(p.get("selection") or {}),
            }
        )


def _string_keys(value: Any) -> Any:
    """Node ids are uint64: as JSON object keys or values they must be strings for browsers."""
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and v > 2**53 else _string_keys(v) for v in value]
    return value
