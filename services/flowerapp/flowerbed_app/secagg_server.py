"""ServerApp side of SecAgg+: Flower's own workflow, with our rounds, events and traces around it.

Flower 1.41 ships SecAgg+ for its legacy workflow only: `DefaultWorkflow` with
`SecAggPlusWorkflow` as the fit step, a `LegacyContext` and a legacy
`flwr.server.strategy` strategy. We add no cryptography; we only observe:

- `_RecordedStrategy` (a subclass of the legacy strategy the run asked for) fills the
  same `RoundRecord` as a plain run (`strategy_wrapper`): who was selected, round
  events, each node's reply metrics (unmasked: examples, timings, local metrics), and
  hands every round's model to the ServerApp's centralized evaluation and checkpoint.
  Its `aggregate_fit` receives the SecAgg+ sum already unmasked — never one update.
- `_TracedSecAggPlus` opens the round's span, runs Flower's four stages each in a span
  of its own (`secaggplus.setup`, `.share_keys`, `.collect_masked_vectors`, `.unmask`),
  and turns Flower's silent "Secure aggregation halted" (too few live nodes for the
  reconstruction threshold) into a run failure that says so.

Replies are not screened per node (`reply_screen`): the server cannot see one update.
Clipping to ±secagg-clipping-range bounds what any node can add to the sum.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.common import FitIns, FitRes, NDArrays, Parameters, Scalar, ndarrays_to_parameters
from flwr.server import ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat import LegacyContext
from flwr.server.strategy import FedAdam, FedAvg, FedAvgM, FedProx, FedYogi, Strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid

from flowerbed_app import reply_contract as contract
from flowerbed_app import telemetry
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.strategies import STRATEGIES
from flowerbed_app.strategy_wrapper import RoundRecord, wait_for_nodes

LEGACY_STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": FedAvg,
    "fedavgm": FedAvgM,
    "fedprox": FedProx,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
}
STAGES = ("setup", "share_keys", "collect_masked_vectors", "unmask")
# The largest weight (examples) a node may put on its update: Flower scales each model by
# examples / max_weight before quantizing, so the bound must hold every node's count.
FULL_TRAIN_SET = 60_000


class SecureAggregationHalted(RuntimeError):
    """A SecAgg+ stage ended with too few live nodes to unmask the sum."""


class Rounds:
    """Where SecAgg+ rounds report to: the plain run's instrumented strategy (its RoundRecords
    and events), the grid, and the ServerApp's per-round evaluation and checkpoint."""

    def __init__(self, instrumented: Any, grid: Grid, settings: RunSettings) -> None:
        self.instrumented = instrumented
        self.grid = grid
        self.settings = settings

    def current(self, server_round: int) -> RoundRecord:
        return self.instrumented.current(server_round)  # type: ignore[no-any-return]


def run(
    grid: Grid,
    context: Context,
    settings: RunSettings,
    instrumented: Any,
    initial: ArrayRecord,
    train_config: ConfigRecord,
    evaluate_fn: Callable[[int, ArrayRecord], None],
) -> None:
    """All rounds of a SecAgg+ run; raises SecureAggregationHalted when a round cannot be unmasked."""
    rounds = Rounds(instrumented, grid, settings)
    names = list(initial.keys())
    strategy = _recorded(LEGACY_STRATEGIES[settings.strategy])(
        rounds,
        dict(train_config),
        fraction_fit=settings.fraction_train,
        fraction_evaluate=0.0,  # each node's evaluation rides in its train reply
        min_fit_clients=settings.min_nodes,
        min_evaluate_clients=settings.min_nodes,
        min_available_clients=settings.min_available_nodes,
        initial_parameters=ndarrays_to_parameters([a.numpy() for a in initial.values()]),
        evaluate_fn=lambda r, arrays, _config: evaluate_fn(r, _named(names, arrays)),
        **STRATEGIES[settings.strategy][1](settings),
    )
    max_weight = float(settings.max_train_examples or FULL_TRAIN_SET)
    workflow = DefaultWorkflow(
        fit_workflow=_TracedSecAggPlus(
            rounds,
            num_shares=settings.secagg_num_shares,
            reconstruction_threshold=settings.secagg_reconstruction_threshold,
            max_weight=max_weight,
            clipping_range=settings.secagg_clipping_range,
            quantization_range=settings.secagg_quantization_range,
            timeout=settings.round_timeout,
        )
    )
    legacy = LegacyContext(
        context,
        config=ServerConfig(num_rounds=settings.num_rounds, round_timeout=settings.round_timeout),
        strategy=strategy,
    )
    workflow(grid, legacy)


def _named(names: list[str], arrays: NDArrays) -> ArrayRecord:
    """The legacy format drops the state-dict keys; the model's order restores them."""
    return ArrayRecord({n: Array(a) for n, a in zip(names, arrays, strict=True)})


class _TracedSecAggPlus(SecAggPlusWorkflow):
    """Flower's SecAgg+ stages, unchanged, each in a span; a halt fails the run with its reason."""

    def __init__(self, rounds: Rounds, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rounds = rounds

    def __call__(self, grid: Grid, context: Context) -> None:
        if not isinstance(context, LegacyContext):
            raise TypeError(f"SecAgg+ needs a LegacyContext, got {type(context).__name__}")
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND])  # type: ignore[arg-type]
        record = self.rounds.current(server_round)
        record.span = telemetry.tracer().start_span(
            "fl.round", attributes={"fl.round": record.round, "fl.secure_aggregation": "secaggplus"}
        )
        state = WorkflowState()
        for name in STAGES:
            step = getattr(self, f"{name}_stage")
            with telemetry.use_span(record.span), telemetry.span(f"secaggplus.{name}", **{"fl.round": record.round}) as span:
                ok = step(grid, context, state)
                span.set_attribute("secaggplus.active_nodes", len(state.active_node_ids))
                span.set_attribute("secaggplus.failures", len(state.failures))
            record.mark(f"secaggplus_{name}")
            if not ok:
                reason = self._halt_reason(record, name, state)
                record.end_span()
                raise SecureAggregationHalted(reason)

    def _halt_reason(self, record: RoundRecord, stage: str, state: WorkflowState) -> str:
        sampled = len(state.sampled_node_ids) or len(record.selected)
        failures = "; ".join(str(f) for f in state.failures[:5]) or "no reply before round-timeout"
        return (
            f"round {record.round}: secure aggregation halted in the {stage.replace('_', ' ')} stage — "
            f"{len(state.active_node_ids)} of {sampled} selected nodes still take part, but every node needs at least "
            f"secagg-reconstruction-threshold={state.threshold} live nodes among its secagg-num-shares={state.num_shares} "
            f"to unmask the sum ({failures}); lower the threshold to tolerate more dropouts, or bring the nodes back"
        )


def _recorded(strategy_cls: type[Strategy]) -> type[Strategy]:
    """A subclass of a legacy strategy that reports its rounds like a plain run's strategy."""

    class Recorded(strategy_cls):  # type: ignore[valid-type, misc]
        def __init__(self, rounds: Rounds, train_config: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(on_fit_config_fn=self._fit_config, **kwargs)
            self.rounds = rounds
            self.train_config = train_config

        def _fit_config(self, server_round: int) -> dict[str, Scalar]:
            record = self.rounds.current(server_round)
            # Our ClientApp reads the plain run's train config (and FedProx's mu under our name).
            extra = {"proximal-mu": float(getattr(self, "proximal_mu", 0.0))}
            traceparent = telemetry.traceparent_of(record.span)
            return {**self.train_config, **extra, "server-round": server_round, "traceparent": traceparent}

        def configure_fit(
            self, server_round: int, parameters: Parameters, client_manager: ClientManager
        ) -> list[tuple[ClientProxy, FitIns]]:
            settings = self.rounds.settings
            record = self.rounds.current(server_round)
            needed = max(settings.min_available_nodes, settings.min_nodes)
            wait_for_nodes(self.rounds.grid, needed, settings.node_wait_timeout, self.rounds.instrumented.events)
            record.mark("nodes_ready")
            random.seed(settings.seed * 1_000_003 + record.round)  # as a plain run: same seed, same nodes
            instructions = list(super().configure_fit(server_round, parameters, client_manager))
            record.selected = sorted(proxy.node_id for proxy, _ in instructions)
            record.selection = {"mode": "random", "scores": {}, "explored": []}
            record.mark("train_sent")
            self.rounds.instrumented.events.emit(
                "round_started", round=record.round, selected=record.selected, selection=record.selection
            )
            return instructions

        def aggregate_fit(
            self,
            server_round: int,
            results: list[tuple[ClientProxy, FitRes]],
            failures: list[tuple[ClientProxy, FitRes] | BaseException],
        ) -> tuple[Parameters | None, dict[str, Scalar]]:
            record = self.rounds.current(server_round)
            record.mark("train_replies")
            for proxy, fitres in sorted(results, key=lambda r: r[0].node_id):
                client: dict[str, Any] = {"node_id": proxy.node_id}
                for key, value in fitres.metrics.items():
                    name = key.replace("-", "_")
                    client[name] = round(float(value) - record.started, 3) if name.startswith("t_") else value
                record.clients.append(client)
                if "epsilon" in client:  # dp=local: each node reports its own ε
                    self.rounds.instrumented.node_epsilon[proxy.node_id] = float(client["epsilon"])
            answered = {proxy.node_id for proxy, _ in results}
            # Flower's failures are bare errors (SuperLink replies such as "Node Unavailable") without
            # the node: they are told with the nodes that did not send their masked model.
            seen = "; ".join(dict.fromkeys(str(f) for f in failures))
            for node_id in record.selected:
                if node_id not in answered:
                    reason = "left the round before its masked update arrived (SecAgg+ unmasked the sum without it)"
                    reason += f" — {seen}" if seen else ""
                    record.failures.append({"node_id": node_id, "phase": "train", "reason": reason})
            record.train_metrics = _weighted_means(results)
            record.privacy = self.rounds.instrumented._privacy(released=True)
            with telemetry.use_span(record.span), telemetry.span("aggregate", **{"fl.replies": len(results)}):
                aggregated = super().aggregate_fit(server_round, results, failures)
            record.bytes = {"secure_aggregation": "secaggplus"}
            record.mark("aggregated")
            return aggregated  # type: ignore[no-any-return]

    Recorded.__name__ = Recorded.__qualname__ = f"FlowerbedSecAgg{strategy_cls.__name__}"
    return Recorded


def _weighted_means(results: list[tuple[ClientProxy, FitRes]]) -> dict[str, float]:
    """The example-weighted mean of each train metric, as Flower's FedAvg computes it in a plain run."""
    total = sum(fitres.num_examples for _, fitres in results)
    if not total:
        return {}
    keys = contract.TRAIN_METRICS - {contract.WEIGHT}
    return {
        key: sum(float(fitres.metrics[key]) * fitres.num_examples for _, fitres in results) / total
        for key in sorted(keys)
        if all(key in fitres.metrics for _, fitres in results)
    } | {contract.WEIGHT: float(total)}
