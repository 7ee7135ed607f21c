"""Before round 1 of a data-source=node run: ask every node what data it holds.

One Flower query message per connected node; each ClientApp answers with its data
description (`data_description.describe`) or the reason it has none. A node without
usable data (missing, empty or unreadable directory, a corrupt file, no reply) is that
node's failure, reported and left out of the run; nodes whose data disagree fail the
run before any training, with a message naming each of them and the difference.
Descriptions come from other parties' machines: each is checked for shape before the
ServerApp relies on it, and a malformed one is that node's failure too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from flowerbed_app.run_choices import MODEL_INPUT
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.runtime.progress_events import EventEmitter
from flowerbed_app.strategy import reply_contract as contract
from flowerbed_app.strategy.fast_grid import FastPollGrid
from flowerbed_app.task.data_description import DataDisagreement, RunData, agree


@dataclass
class Survey:
    run_data: RunData
    descriptions: dict[int, dict[str, Any]]
    failures: list[dict[str, Any]] = field(default_factory=list)


def survey_nodes(grid: FastPollGrid, nodes: list[int], settings: RunSettings, events: EventEmitter) -> Survey:
    """Descriptions of the nodes' data and the run's agreed conversion; raises DataDisagreement."""
    messages = [
        Message(
            content=RecordDict({"config": ConfigRecord({"label-column": settings.label_column})}),
            dst_node_id=node_id,
            message_type=MessageType.QUERY,
        )
        for node_id in nodes
    ]
    replies = grid.send_and_receive(messages, timeout=settings.round_timeout)
    descriptions: dict[int, dict[str, Any]] = {}
    failures: list[dict[str, Any]] = []
    answered: set[int] = set()
    for reply in replies:
        node_id = int(grid.destinations.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id))
        answered.add(node_id)
        try:
            descriptions[node_id] = _description_of(reply)
        except ValueError as exc:
            failures.append({"node_id": node_id, "phase": "describe", "reason": str(exc)})
    for node_id in nodes:
        if node_id not in answered:
            reason = f"no data description before round-timeout ({settings.round_timeout:g} s)"
            failures.append({"node_id": node_id, "phase": "describe", "reason": reason})
    events.emit(
        "data_described",
        nodes=[{"node_id": n, **_public(descriptions[n])} for n in sorted(descriptions)],
        failures=sorted(failures, key=lambda f: f["node_id"]),
    )
    if not descriptions:
        reasons = "; ".join(f"node {f['node_id']}: {f['reason']}" for f in failures)
        raise DataDisagreement(f"no node has usable data — {reasons}")
    run_data = agree(descriptions)
    wanted = MODEL_INPUT[settings.model]
    if wanted != run_data.format:
        raise DataDisagreement(
            f"model {settings.model!r} trains on {wanted}, but the nodes hold {run_data.format} data: "
            f"choose {'mlp' if run_data.format == 'table' else 'cnn or resnet18'}"
        )
    return Survey(run_data, descriptions, failures)


def _public(description: dict[str, Any]) -> dict[str, Any]:
    """What the run's events (and so the API and dashboard) show of a description: each node's
    own feature statistics stay in the ServerApp, only the pooled ones reach the checkpoints."""
    return {k: v for k, v in description.items() if k not in ("feature_mean", "feature_var")}


def _description_of(reply: Message) -> dict[str, Any]:
    """The description a reply carries, checked for shape; ValueError(reason) otherwise."""
    if reply.has_error():
        raise ValueError(reply.error.reason)
    record = reply.content.config_records.get(contract.DATA)
    if record is None:
        raise ValueError("the reply carries no data description")
    if contract.DATA_ERROR in record:
        raise ValueError(str(record[contract.DATA_ERROR]))
    try:
        description = json.loads(str(record[contract.DESCRIPTION]))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unreadable data description ({exc})") from None
    if not isinstance(description, dict):
        raise ValueError("the data description is not an object")
    examples, classes = description.get("examples"), description.get("classes")
    if not isinstance(examples, int) or examples < 1:
        raise ValueError(f"the data description claims {examples!r} examples")
    if not isinstance(classes, dict) or not classes:
        raise ValueError("the data description names no classes")
    if "columns" in description:
        columns, mean, var = description["columns"], description.get("feature_mean"), description.get("feature_var")
        lists = (columns, mean, var)
        if not all(isinstance(v, list) for v in lists) or not len(columns) == len(mean) == len(var) >= 1:
            raise ValueError("the data description's columns and feature statistics do not match")
        if not all(isinstance(v, int | float) for v in mean + var) or any(v < 0 for v in var):
            raise ValueError("the data description's feature statistics are not numbers")
    else:
        shape = description.get("image_shape")
        if not (
            isinstance(shape, list)
            and len(shape) == 3
            and shape[0] in (1, 3)
            and all(isinstance(d, int) and d > 0 for d in shape)
        ):
            raise ValueError(f"the data description's image shape {shape!r} is not channels × height × width")
    return description
