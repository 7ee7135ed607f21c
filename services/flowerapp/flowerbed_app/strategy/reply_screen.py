"""Every reply passes here between the grid and the strategy: a bad one becomes that node's failure.

The grid hands each reply with the message it answers (`FastPollGrid(screen=...)`), so
this runs before any strategy code — Flower's DP wrapper decodes and clips updates
before our instrumented strategy sees them, and one undecodable array there would
fail the whole run. A reply that breaks `reply_contract` or `update_validation` is
replaced by an error reply with the reason, which every Flower strategy already
treats as a failed node and our round bookkeeping records with that reason.

Also here, because both need the global model the node was sent: compressed updates
are decoded into dense weights (so strategies only ever see dense, checked arrays),
and each reply's example count is capped by what the node's partition can hold —
computed on the server from the run's partition settings (`partition_cache.split_sizes`,
cached on disk), so a node cannot outweigh the others by claiming more examples.
A node's partition id is what its reply says; a node may claim another partition's
size, never more than the largest partition holds. Nodes with their own data
(data-source=node) are bounded by the example count they described before round 1.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Array, ArrayRecord, Error, Message, MessageType

from flowerbed_app.algorithms import update_compression
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.strategy import reply_contract as contract
from flowerbed_app.strategy.update_validation import (
    InvalidUpdate,
    Layout,
    capped_weight,
    check_arrays,
    check_metrics,
    check_values,
    layout_of,
)
from flowerbed_app.task.partition_cache import PartitionSpec, split_sizes

# Error code of a reply the server refused (outside the range of Flower's ErrorCode).
REJECTED_UPDATE = 1001
# Partition counts a reply may claim: each distinct count costs one partitioning of the labels.
MAX_PARTITIONS = 1024


def record_bytes(record: ArrayRecord) -> int:
    """Serialized payload size of an ArrayRecord: the bytes of every Array it holds."""
    return sum(len(array.data) for array in record.values())


class ReplyScreen:
    """Callable `(sent message, reply) -> reply or error reply`, for one run."""

    def __init__(self, settings: RunSettings, node_examples: dict[int, int] | None = None) -> None:
        self.settings = settings
        self.node_examples = node_examples
        self._sizes: dict[int, list[tuple[int, int]]] = {}
        # The global model of the current round, decoded once for all its replies
        # (the record is kept so that its id cannot be reused while cached).
        self._model: tuple[ArrayRecord, dict[str, Layout], dict[str, Any] | None] | None = None

    def __call__(self, sent: Message, reply: Message) -> Message:
        if reply.has_error():
            return reply
        kind = sent.metadata.message_type
        if kind not in (MessageType.TRAIN, MessageType.EVALUATE):
            return reply
        try:
            self._check(sent, reply, train=kind == MessageType.TRAIN)
        except InvalidUpdate as exc:
            reason = str(exc)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # records Flower could not make sense of either
            reason = f"unreadable reply ({type(exc).__name__}: {exc})"
        else:
            return reply
        return Message(error=Error(code=REJECTED_UPDATE, reason=f"update rejected: {reason}"), metadata=reply.metadata)

    def _check(self, sent: Message, reply: Message, train: bool) -> None:
        content = reply.content
        arrays, metric_names = sorted(content.array_records), sorted(content.metric_records)
        expected = [contract.ARRAYS] if train else []
        if arrays != expected or metric_names != [contract.METRICS] or contract.CLIENT not in content.config_records:
            raise InvalidUpdate(
                f"reply holds array records {arrays} and metric records {metric_names}, expected {expected} and "
                f"[{contract.METRICS!r}] beside a {contract.CLIENT!r} record"
            )
        client = content.config_records[contract.CLIENT]
        metrics = content.metric_records[contract.METRICS]
        if train:  # the update first: when it is bad, that is the reason worth reading
            update = content[contract.ARRAYS]
            dense, sent_bytes = self._dense_update(sent.content[contract.ARRAYS], update)
            if dense is not update:
                content[contract.ARRAYS] = dense
                client["compressed"] = True
            client["bytes-sent"], client["bytes-dense"] = sent_bytes, record_bytes(dense)
        check_metrics(metrics, contract.TRAIN_METRICS if train else contract.EVALUATE_METRICS)
        if self.node_examples is not None:
            cap = self._node_cap(int(reply.metadata.src_node_id))
        else:
            cap = self._cap(client.get(contract.PARTITION_ID), client.get(contract.NUM_PARTITIONS), train)
        weight = capped_weight(metrics, cap)
        if weight != metrics[contract.WEIGHT]:
            client["num-examples-claimed"] = metrics[contract.WEIGHT]
            metrics[contract.WEIGHT] = weight

    def _dense_update(self, global_model: ArrayRecord, update: ArrayRecord) -> tuple[ArrayRecord, int]:
        """The update as checked dense weights, and the bytes it travelled as."""
        layouts, base = self._global(global_model)
        sent_bytes = record_bytes(update)
        if not update_compression.is_compressed(list(update.keys())):
            check_arrays(update, layouts)
            return update, sent_bytes
        if base is None:
            base = {name: array.numpy() for name, array in global_model.items()}
            self._model = (global_model, layouts, base)
        try:
            weights = update_compression.decompress_update({k: v.numpy() for k, v in update.items()}, base)
        except (ValueError, TypeError, IndexError) as exc:
            raise InvalidUpdate(f"compressed update cannot be decoded: {exc}") from None
        for name, values in weights.items():
            check_values(name, values.ravel())
        return ArrayRecord({k: Array(v) for k, v in weights.items()}), sent_bytes

    def _global(self, global_model: ArrayRecord) -> tuple[dict[str, Layout], dict[str, Any] | None]:
        if self._model is None or self._model[0] is not global_model:
            self._model = (global_model, layout_of(global_model), None)
        return self._model[1], self._model[2]

    def _node_cap(self, node_id: int) -> int:
        """What a node with its own data described (its examples, rounded up when k-anonymised)."""
        size = self.node_examples.get(node_id, 0) if self.node_examples is not None else 0
        if size < 1:
            raise InvalidUpdate(f"node {node_id} described no data before round 1, so none of its replies can count")
        limit = self.settings.max_train_examples
        return min(size, limit) if limit else size

    def _cap(self, partition_id: Any, num_partitions: Any, train: bool) -> int:
        """Training (or validation) examples the claimed partition holds, after max-train-examples."""
        valid = isinstance(partition_id, int) and isinstance(num_partitions, int) and 1 <= num_partitions <= MAX_PARTITIONS
        if not valid or not 0 <= partition_id < num_partitions:
            raise InvalidUpdate(
                f"client record must name its partition ({contract.PARTITION_ID} in 0..{contract.NUM_PARTITIONS}-1, "
                f"{contract.NUM_PARTITIONS} in 1..{MAX_PARTITIONS}), got {partition_id!r} of {num_partitions!r}"
            )
        if num_partitions not in self._sizes:
            try:
                self._sizes[num_partitions] = split_sizes(PartitionSpec.of(self.settings, 0, num_partitions))
            except Exception as exc:  # the server's own data, not the node's fault: fail the run
                raise RuntimeError(f"cannot compute the partition sizes that bound example counts: {exc}") from exc
        train_size, val_size = self._sizes[num_partitions][partition_id]
        size = train_size if train else val_size
        if size == 0:
            raise InvalidUpdate(
                f"partition {partition_id} of {num_partitions} holds no {'training' if train else 'validation'} examples"
            )
        limit = self.settings.max_train_examples
        return min(size, limit) if limit else size
