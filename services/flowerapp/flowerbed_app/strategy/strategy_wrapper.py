"""Wraps any Flower strategy class with Flowerbed's round bookkeeping.

We subclass the strategy Flower ships (never fork it) and observe: how long we wait
for nodes (bounded, unlike Flower's own endless wait), who was selected, each
client's reply or failure, bytes on the wire, privacy spent, the per-phase
timeline, and whether the separate federated-evaluation phase runs this round.

Aggregation stays Flower's strategy code; for the weighted average it calls, our
bit-identical, faster `fast_aggregation` stands in for Flower's helper. Otherwise we
only act around it: performance-based selection re-addresses the messages Flower
built to the nodes our policy picks. Replies reach us already screened
(`reply_screen`: bad updates turned into that node's failure, compressed ones
decoded); a round fails only when fewer valid replies than min-nodes remain.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from flowerbed_app.algorithms.privacy import CentralAccountant
from flowerbed_app.runtime import telemetry
from flowerbed_app.runtime.progress_events import EventEmitter
from flowerbed_app.strategy import client_selection, fast_aggregation


class NodeWaitTimeout(RuntimeError):
    """Too few SuperNodes connected within node-wait-timeout."""


class TooFewValidReplies(RuntimeError):
    """A round ended with fewer valid updates than min-nodes; the message lists each node's failure."""


@dataclass
class RoundRecord:
    """Everything observed about one round; becomes the round_finished event."""

    round: int
    started: float = field(default_factory=time.time)
    selected: list[int] = field(default_factory=list)
    clients: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    train_metrics: dict[str, float] = field(default_factory=dict)
    federated_eval: dict[str, float] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    bytes: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)
    span: Any = None  # the fl.round span, ended when the round's event is emitted
    replies_seen: bool = False

    def mark(self, phase: str) -> None:
        self.timeline[phase] = round(time.time() - self.started, 3)

    def end_span(self) -> None:
        if self.span is not None:
            self.span.set_attribute("fl.clients", len(self.clients))
            self.span.set_attribute("fl.failures", len(self.failures))
            self.span.end()
            self.span = None


def wait_for_nodes(grid: Grid, needed: int, timeout: float, events: EventEmitter) -> list[int]:
    """Block until `needed` nodes are connected, emitting progress; raise after timeout."""
    deadline = time.monotonic() + timeout
    last_count = -1
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= needed:
            return nodes
        if len(nodes) != last_count:
            events.emit("waiting_for_nodes", connected=len(nodes), needed=needed, timeout=timeout)
            last_count = len(nodes)
        if time.monotonic() >= deadline:
            raise NodeWaitTimeout(
                f"waiting for nodes timed out: {len(nodes)}/{needed} SuperNodes connected after "
                f"{timeout:.0f}s — start more SuperNodes or lower min-available-nodes"
            )
        time.sleep(0.5)


def _snake(key: str) -> str:
    return key.replace("-", "_")


def _metrics_of(msg: Message) -> dict[str, float]:
    records = msg.content.metric_records
    return {_snake(k): float(v) for record in records.values() for k, v in record.items()} if records else {}


def _client_of(msg: Message) -> dict[str, Any]:
    info: dict[str, Any] = {"node_id": msg.metadata.src_node_id}
    if "client" in msg.content.config_records:
        info.update({_snake(k): v for k, v in msg.content["client"].items()})
    return info


def instrument(strategy_cls: type[Strategy]) -> type[Strategy]:
    """A subclass of `strategy_cls` that records rounds into `self.rounds`."""

    class Instrumented(strategy_cls):  # type: ignore[valid-type, misc]
        def __init__(
            self,
            *args: Any,
            events: EventEmitter,
            needed_nodes: int,
            node_wait_timeout: float,
            evaluate_every: int,
            round_timeout: float = 0.0,
            round_offset: int = 0,
            selection: str = "random",
            selection_explore: float = 0.25,
            seed: int = 0,
            dp: str = "none",
            dp_delta: float = 0.0,
            central_accountant: CentralAccountant | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.events = events
            self.needed_nodes = needed_nodes
            self.node_wait_timeout = node_wait_timeout
            self.round_timeout = round_timeout
            self.evaluate_every = evaluate_every
            self.round_offset = round_offset
            self.rounds: dict[int, RoundRecord] = {}
            self._grid: Grid | None = None
            self.selection = selection
            self.selection_explore = selection_explore
            self._selection_rng = random.Random(seed)
            self.seed = seed
            self.node_scores: dict[int, float] = {}  # −(val loss of the global model it received)
            self.last_selected: dict[int, int] = {}
            self.dp = dp
            self.dp_delta = dp_delta
            self.central_accountant = central_accountant
            self.node_epsilon: dict[int, float] = {}

        def _node_of(self, reply: Message) -> int:
            """The node a reply is about; SuperLink-made error replies come from the SuperLink."""
            destinations = getattr(self._grid, "destinations", {})
            return int(destinations.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id))

        def current(self, server_round: int) -> RoundRecord:
            return self.rounds.setdefault(server_round, RoundRecord(round=server_round + self.round_offset))

        def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
            record = self.current(server_round)
            self._grid = grid
            record.span = telemetry.tracer().start_span("fl.round", attributes={"fl.round": record.round})
            wait_for_nodes(grid, self.needed_nodes, self.node_wait_timeout, self.events)
            record.mark("nodes_ready")
            # Every message of this round carries the round's context to its ClientApp.
            config["traceparent"] = telemetry.traceparent_of(record.span)
            # Flower samples nodes with the global `random`, which other code in this process
            # also draws from (timing-dependent): seeding it per round makes the same seed pick
            # the same nodes in the same order.
            random.seed(self.seed * 1_000_003 + record.round)
            messages = list(super().configure_train(server_round, arrays, config, grid))
            if self.selection == "performance" and messages:
                messages = self._select_by_performance(server_round, messages, grid)
            else:
                record.selection = {"mode": "random", "scores": {}, "explored": []}
            record.selected = [m.metadata.dst_node_id for m in messages]
            for node_id in record.selected:
                self.last_selected[node_id] = server_round
            record.mark("train_sent")
            self.events.emit("round_started", round=record.round, selected=record.selected, selection=record.selection)
            return messages

        def _select_by_performance(self, server_round: int, messages: list[Message], grid: Grid) -> list[Message]:
            """Keep Flower's messages (config, sample size) but address them to our policy's picks."""
            nodes = sorted(int(n) for n in grid.get_node_ids())
            choice = client_selection.select(
                nodes, len(messages), self.node_scores, self.last_selected, self.selection_explore, self._selection_rng
            )
            self.current(server_round).selection = {
                "mode": "performance",
                "scores": {str(n): round(self.node_scores[n], 6) for n in nodes if n in self.node_scores},
                "explored": choice.explored,
            }
            template = messages[0]
            return [
                Message(content=template.content, message_type=template.metadata.message_type, dst_node_id=node_id)
                for node_id in choice.chosen
            ]

        def record_replies(self, server_round: int, replies: Iterable[Message]) -> list[Message]:
            """Note each selected node's valid reply or failure, once per round; the replies in node order.

            Called by `aggregate_train`, and before it by the central-DP wrapper (strategies.py),
            which skips a round with any failed node without calling us. Raises
            TooFewValidReplies when fewer valid replies than min-nodes remain."""
            record = self.current(server_round)
            # Replies arrive in whatever order the clients finish; float sums depend on the
            # order, so aggregating in node order makes a run with the same seeds reproducible.
            replies = sorted(replies, key=self._node_of)
            if record.replies_seen:
                return replies
            record.replies_seen = True
            record.mark("train_replies")
            answered = set()
            for msg in replies:
                node_id = self._node_of(msg)
                answered.add(node_id)
                if msg.has_error():
                    record.failures.append({"node_id": node_id, "phase": "train", "reason": msg.error.reason})
                    if record.span is not None:
                        record.span.add_event("client_failure", {"fl.node_id": str(node_id), "reason": msg.error.reason})
                else:
                    record.clients.append(self._client(record, node_id, msg))
            for node_id in record.selected:
                if node_id not in answered:
                    reason = f"no reply before round-timeout ({self.round_timeout:g} s)"
                    record.failures.append({"node_id": node_id, "phase": "train", "reason": reason})
            record.privacy = self._privacy(released=False)
            if len(record.clients) < self.min_train_nodes:
                failures = "; ".join(f"node {f['node_id']}: {f['reason']}" for f in record.failures)
                record.end_span()
                raise TooFewValidReplies(
                    f"round {record.round}: {len(record.clients)} valid update(s), fewer than min-nodes="
                    f"{self.min_train_nodes} — {failures or 'no node was selected'}"
                )
            return replies

        def aggregate_train(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
            record = self.current(server_round)
            replies = self.record_replies(server_round, replies)
            with (
                telemetry.use_span(record.span),
                telemetry.span("aggregate", **{"fl.replies": len(replies)}),
                fast_aggregation.replacing_flowers_aggregation(),
            ):
                arrays, metrics = super().aggregate_train(server_round, replies)
            record.train_metrics = {k: float(v) for k, v in (metrics or {}).items()}
            sent = sum(c.get("bytes_sent", 0) for c in record.clients)
            dense = sum(c.get("bytes_dense", 0) for c in record.clients)
            record.bytes = {"sent_compressed": sent, "dense_equivalent": dense, "ratio": round(dense / sent, 3) if sent else None}
            record.privacy = self._privacy(arrays is not None)
            record.mark("aggregated")
            return arrays, metrics

        def _client(self, record: RoundRecord, node_id: int, msg: Message) -> dict[str, Any]:
            """A valid reply's client entry; remembers its score and privacy spent."""
            client = {**_client_of(msg), **_metrics_of(msg)}
            for key, value in list(client.items()):
                if key.startswith("t_"):  # wall clock → seconds since the round started
                    client[key] = round(float(value) - record.started, 3)
            if "val_loss" in client:
                self.node_scores[node_id] = -float(client["val_loss"])
            if "epsilon" in client:
                self.node_epsilon[node_id] = float(client["epsilon"])
            return client

        def _privacy(self, released: bool) -> dict[str, Any]:
            """ε spent so far: central — the accountant after this round's noised release;
            local — the worst node's ε (each node reports its own, cumulative)."""
            if self.dp == "central" and self.central_accountant is not None:
                epsilon = self.central_accountant.release() if released else self.central_accountant.spent()
                return {"mode": "central", "epsilon": epsilon, "delta": self.dp_delta}
            if self.dp == "local":
                epsilon = max(self.node_epsilon.values()) if self.node_epsilon else None
                return {"mode": "local", "epsilon": epsilon, "delta": self.dp_delta}
            return {"mode": "none", "epsilon": None, "delta": None}

        def configure_evaluate(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            if not self.evaluate_every or server_round % self.evaluate_every:
                return []
            config["traceparent"] = telemetry.traceparent_of(self.current(server_round).span)
            random.seed(self.seed * 1_000_003 + self.current(server_round).round + 500_009)  # as in configure_train
            return super().configure_evaluate(server_round, arrays, config, grid)

        def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
            replies = list(replies)
            record = self.current(server_round)
            for msg in replies:
                if msg.has_error():
                    record.failures.append({"node_id": self._node_of(msg), "phase": "evaluate", "reason": msg.error.reason})
            metrics = super().aggregate_evaluate(server_round, replies)
            record.federated_eval = {k: float(v) for k, v in (metrics or {}).items()}
            if replies:
                record.mark("evaluated_federated")
            return metrics

    Instrumented.__name__ = Instrumented.__qualname__ = f"Flowerbed{strategy_cls.__name__}"
    return Instrumented
