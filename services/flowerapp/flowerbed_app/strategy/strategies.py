"""Flower's strategies, built from RunSettings and wrapped by our instrumentation.

One table maps each `strategy` value to Flower's class and the parameters it takes
from the run config; everything else (sampling fractions, minimum nodes, bookkeeping)
is common. With dp=central, Flower's `DifferentialPrivacyServerSideFixedClipping`
wraps the instrumented strategy — Flower's DP strategies take a strategy instance,
so instrumentation stays inside and sees the clipped replies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
)

from flowerbed_app.algorithms.privacy import CentralAccountant
from flowerbed_app.run_settings import RunSettings
from flowerbed_app.runtime.progress_events import EventEmitter
from flowerbed_app.strategy.strategy_wrapper import instrument


def _adaptive(s: RunSettings) -> dict[str, Any]:
    return {"eta": s.server_eta, "eta_l": s.learning_rate, "beta_1": s.beta_1, "beta_2": s.beta_2, "tau": s.tau}


STRATEGIES: dict[str, tuple[type[Strategy], Callable[[RunSettings], dict[str, Any]]]] = {
    "fedavg": (FedAvg, lambda s: {}),
    "fedavgm": (FedAvgM, lambda s: {"server_learning_rate": s.server_learning_rate, "server_momentum": s.server_momentum}),
    "fedprox": (FedProx, lambda s: {"proximal_mu": s.proximal_mu}),
    "fedadam": (FedAdam, _adaptive),
    "fedyogi": (FedYogi, _adaptive),
    "fedmedian": (FedMedian, lambda s: {}),
    "fedtrimmedavg": (FedTrimmedAvg, lambda s: {"beta": s.trim_beta}),
    "krum": (Krum, lambda s: {"num_malicious_nodes": s.krum_num_malicious}),
}


class _DpServerSideFixedClipping(DifferentialPrivacyServerSideFixedClipping):
    """Flower's central-DP wrapper, unchanged, except that our strategy notes every reply first:
    Flower skips the aggregation of a round in which any node failed, without calling the
    wrapped strategy, and those failures would otherwise go unrecorded."""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round, self.strategy.record_replies(server_round, replies))  # type: ignore[attr-defined]


@dataclass
class BuiltStrategy:
    instrumented: Any  # our subclass of Flower's strategy: rounds, events
    runner: Strategy  # what `start` is called on (the DP wrapper around `instrumented`, or itself)


def build_strategy(
    settings: RunSettings, events: EventEmitter, needed_nodes: int, connected_nodes: int, round_offset: int
) -> BuiltStrategy:
    strategy_cls, parameters = STRATEGIES[settings.strategy]
    central = settings.dp == "central"
    instrumented = instrument(strategy_cls)(
        fraction_train=settings.fraction_train,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=settings.min_nodes,
        min_evaluate_nodes=settings.min_nodes,
        min_available_nodes=settings.min_available_nodes,
        events=events,
        needed_nodes=needed_nodes,
        node_wait_timeout=settings.node_wait_timeout,
        round_timeout=settings.round_timeout,
        evaluate_every=settings.evaluate_every,
        round_offset=round_offset,
        selection=settings.selection,
        selection_explore=settings.selection_explore,
        seed=settings.seed,
        dp=settings.dp,
        dp_delta=settings.dp_delta,
        central_accountant=CentralAccountant(settings.dp_noise_multiplier, settings.dp_delta) if central else None,
        **parameters(settings),
    )
    if not central:
        return BuiltStrategy(instrumented, instrumented)
    # Flower's noise std is σ·C/m for m sampled clients: m as Flower will sample it.
    sampled = max(int(connected_nodes * settings.fraction_train), settings.min_nodes)
    runner = _DpServerSideFixedClipping(
        instrumented,
        noise_multiplier=settings.dp_noise_multiplier,
        clipping_norm=settings.dp_clipping_norm,
        num_sampled_clients=sampled,
    )
    return BuiltStrategy(instrumented, runner)
