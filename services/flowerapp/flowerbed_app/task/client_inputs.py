"""What a ClientApp trains and evaluates on: this node's data (a partition of the central copy, or
its own data directory), capped for quick runs, and the global model the server sent."""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import Context, Message

from flowerbed_app.run_settings import RunSettings
from flowerbed_app.strategy import reply_contract as contract
from flowerbed_app.task.data_description import conversion_from_config
from flowerbed_app.task.networks import FASHION_MNIST_SHAPE, create_model
from flowerbed_app.task.node_data import data_dir_of, load_for_run
from flowerbed_app.task.partition_cache import Partition, PartitionSpec, load_partition


def node(context: Context) -> tuple[int, int]:
    try:
        return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    except KeyError as exc:
        raise ValueError(
            f"SuperNode is missing node-config {exc}; start it with --node-config 'partition-id=<i> num-partitions=<n>'"
        ) from None


def partition_id(settings: RunSettings, context: Context) -> int:
    """This node's partition, for seeds and traces; -1 when it trains on its own data."""
    return -1 if settings.data_source == "node" else node(context)[0]


def partition(settings: RunSettings, context: Context, config: Any) -> tuple[int, Partition]:
    if settings.data_source == "node":
        directory = data_dir_of(context.node_config)
        conversion = conversion_from_config(config)
        data = load_for_run(directory, settings.label_column, conversion, settings.validation_fraction, settings.seed)
        return -1, data
    partition_id, num_partitions = node(context)
    return partition_id, load_partition(PartitionSpec.of(settings, partition_id, num_partitions))


def seed_key(partition_id: int, context: Context) -> int:
    """Sets nodes' shuffling apart: the partition, or for nodes with their own data (no
    partition) their Flower node id."""
    return partition_id if partition_id >= 0 else int(context.node_id) % 1_000_003


def capped(settings: RunSettings, x: Any, y: Any) -> tuple[Any, Any]:
    """At most max-train-examples of a split (0: all). Quick runs cap validation too: a
    smoke run of 64 training examples should not validate on thousands."""
    if settings.max_train_examples:
        return x[: settings.max_train_examples], y[: settings.max_train_examples]
    return x, y


def global_model(settings: RunSettings, msg: Message) -> torch.nn.Module:
    if settings.data_source == "node":
        conversion = conversion_from_config(msg.content["config"])
        model = create_model(settings.model, len(conversion.classes), conversion.input_shape)
    else:
        model = create_model(settings.model, 10, FASHION_MNIST_SHAPE)
    model.load_state_dict(msg.content[contract.ARRAYS].to_torch_state_dict())
    return model
