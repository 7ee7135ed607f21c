"""What each node of a partitioned run holds, shown the way a data-source=node run shows its
sites' data (the `data_described` event: the run view's node data panel, `GET /nodes`): its
partition's size and label histogram.

The ServerApp computes them from the same deterministic split the nodes load
(`partition_cache.split_classes`); a node only says which partition it is, in the client
record the reply screen has already checked.
"""

from __future__ import annotations

from typing import Any

from flowerbed_app.run_settings import RunSettings
from flowerbed_app.task.fashion_mnist import CLASS_NAMES, SHAPE
from flowerbed_app.task.partition_cache import PartitionSpec, split_classes


class PartitionData:
    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.described: dict[int, dict[str, Any]] = {}

    def describe_new(self, clients: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Every node described so far, when `clients` (a round's valid replies) brought one
        not described yet; None when nothing is new (the event is sent only then)."""
        new = False
        for client in clients:
            node, part, count = client.get("node_id"), client.get("partition_id"), client.get("num_partitions")
            if node in self.described or not isinstance(part, int) or not isinstance(count, int):
                continue
            classes = split_classes(PartitionSpec.of(self.settings, 0, count))[part]
            self.described[int(node)] = {
                "node_id": int(node),
                "format": f"Fashion-MNIST partition {part + 1} of {count} ({self.settings.partitioner})",
                "examples": sum(classes),
                "classes": {CLASS_NAMES[label]: n for label, n in enumerate(classes)},
                "image_shape": list(SHAPE),
            }
            new = True
        return [self.described[node] for node in sorted(self.described)] if new else None
