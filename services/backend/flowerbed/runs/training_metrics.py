"""Prometheus series for training progress, fed by the same events the API stores.

Grafana's "Federated training" dashboard (deploy/grafana/dashboards/) queries exactly
these names; tests/test_metrics.py keeps the two in step. Registered on a private
registry so tests can create apps side by side without duplicate-series errors.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

ROUND_ACCURACY = Gauge(
    "flowerbed_round_accuracy", "Centralized test accuracy after the last round", ["run_id"], registry=REGISTRY
)
ROUND_LOSS = Gauge("flowerbed_round_loss", "Centralized test loss after the last round", ["run_id"], registry=REGISTRY)
ROUND_DURATION = Histogram(
    "flowerbed_round_duration_seconds",
    "Wall time of a federated round",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600),
    registry=REGISTRY,
)
ROUND_CLIENTS = Gauge(
    "flowerbed_round_clients", "Clients whose results were aggregated in the last round", ["run_id"], registry=REGISTRY
)
ROUND_FAILURES = Counter("flowerbed_round_failures", "Client failures across rounds", registry=REGISTRY)
RUN_BYTES_SENT = Gauge("flowerbed_run_bytes_sent", "Bytes the SuperLink sent for a run", ["run_id"], registry=REGISTRY)
RUN_BYTES_RECEIVED = Gauge(
    "flowerbed_run_bytes_received", "Bytes the SuperLink received for a run", ["run_id"], registry=REGISTRY
)
RUNS = Counter("flowerbed_runs", "Runs that reached a status", ["status"], registry=REGISTRY)


def observe_event(run_id: str, event: dict[str, Any]) -> None:
    """Update the series from one ServerApp progress event."""
    if event.get("event") != "round_finished":
        return
    ROUND_ACCURACY.labels(run_id).set(float(event.get("accuracy") or 0.0))
    ROUND_LOSS.labels(run_id).set(float(event.get("loss") or 0.0))
    ROUND_CLIENTS.labels(run_id).set(len(event.get("clients") or []))
    if seconds := event.get("seconds"):
        ROUND_DURATION.observe(float(seconds))
    if failures := event.get("failures"):
        ROUND_FAILURES.inc(len(failures))


def observe_status(run_id: str, status: str, bytes_sent: int | None = None, bytes_received: int | None = None) -> None:
    """Count a run reaching a terminal status and record its traffic."""
    RUNS.labels(status).inc()
    if bytes_sent is not None:
        RUN_BYTES_SENT.labels(run_id).set(bytes_sent)
    if bytes_received is not None:
        RUN_BYTES_RECEIVED.labels(run_id).set(bytes_received)


def forget_run(run_id: str) -> None:
    """Drop a deleted run's series (they would be exposed, and accumulate, forever)."""
    for series in (ROUND_ACCURACY, ROUND_LOSS, ROUND_CLIENTS, RUN_BYTES_SENT, RUN_BYTES_RECEIVED):
        with contextlib.suppress(KeyError):  # never observed in this process
            series.remove(run_id)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
