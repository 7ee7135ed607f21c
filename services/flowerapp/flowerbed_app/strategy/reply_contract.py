"""The reply a Flowerbed ClientApp sends, declared once.

The ClientApp builds its replies through this module and the ServerApp checks every
reply against it (`reply_screen`), so the two cannot drift: a reply with other metric
keys is a foreign or broken client. Flower's strategies refuse to aggregate replies
whose metric keys differ, so the set is part of the contract, not a detail.

Light on purpose (only `flwr.app`): every short-lived ClientApp process imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import MetricRecord

# Record names in a reply's RecordDict (Flower's FedAvg reads "arrays" and "metrics").
ARRAYS = "arrays"
METRICS = "metrics"
CLIENT = "client"
# The metric Flower's strategies weight each reply by.
WEIGHT = "num-examples"
# The node's place in the federation, as its SuperNode's --node-config says: the server
# bounds WEIGHT by what that partition holds.
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"

# A node's answer to the data query (data-source=node): its description as JSON, or why it has none.
DATA = "data"
DESCRIPTION = "description"
DATA_ERROR = "error"

TRAIN_METRICS = frozenset(
    {WEIGHT, "train-loss", "train-accuracy", "train-seconds", "train-steps", "val-loss", "val-accuracy", "val-examples"}
)
EVALUATE_METRICS = frozenset({WEIGHT, "eval-loss", "eval-accuracy"})


def metric_record(expected: frozenset[str], values: Mapping[str, int | float]) -> MetricRecord:
    """A reply's MetricRecord with exactly the declared keys (a mismatch is our bug: fail loudly)."""
    if set(values) != expected:
        raise ValueError(f"reply metrics {sorted(values)} differ from the declared {sorted(expected)}")
    return MetricRecord(dict(values))
