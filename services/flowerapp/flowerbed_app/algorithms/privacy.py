"""Differential-privacy accounting shared by the ClientApp (local DP) and ServerApp (central DP).

Local DP: every ClientApp trains with Opacus DP-SGD. A ClientApp is a fresh process
per message, so a node's accountant history — (noise multiplier, sample rate, steps)
triples, exactly Opacus' `RDPAccountant.history` — rides in `context.state`, which
the SuperNode keeps per run across messages. ε is Opacus' RDP ε over ALL steps the
node took so far in this run. Sampling: batches are shuffled, not Poisson-sampled
(`poisson_sampling=False`); the ε assumes Poisson sampling at rate 1/batches, as
Opacus reports it for such loaders — an approximation Opacus itself makes.

Central DP: Flower's server-side fixed clipping averages m clipped updates and adds
N(0, (σ·C/m)²) noise — one Gaussian release per round with noise multiplier σ. No
sampling amplification is claimed (sample rate 1), matching Flower's own
"no-amplification" accounting model; Flower's accountant itself needs
`dp_accounting` and an unmodified FedAvg.aggregate_train, so we use Opacus' RDP.

Opacus is imported lazily: it costs seconds in every short-lived ClientApp.
"""

from __future__ import annotations

from typing import Any

History = list[tuple[float, float, int]]


def rdp_accountant(history: History | None = None) -> Any:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(float(n), float(q), int(s)) for n, q, s in (history or [])]
    return accountant


def epsilon(history: History, delta: float) -> float:
    """Opacus' RDP ε for this accountant history (0 before any step)."""
    if not history:
        return 0.0
    return float(rdp_accountant(history).get_epsilon(delta=delta))


def history_to_config(history: History) -> dict[str, list[float] | list[int]]:
    """Flat lists a ConfigRecord can hold."""
    return {
        "noise-multiplier": [float(n) for n, _, _ in history],
        "sample-rate": [float(q) for _, q, _ in history],
        "steps": [int(s) for _, _, s in history],
    }


def history_from_config(record: Any) -> History:
    if record is None:
        return []
    return list(
        zip(
            (float(n) for n in record["noise-multiplier"]),
            (float(q) for q in record["sample-rate"]),
            (int(s) for s in record["steps"]),
            strict=True,
        )
    )


class CentralAccountant:
    """ε of Flower's server-side fixed-clipping DP after each released round."""

    def __init__(self, noise_multiplier: float, delta: float) -> None:
        self.noise_multiplier = noise_multiplier
        self.delta = delta
        self.history: History = []

    def release(self) -> float:
        """Account one more noised aggregate; returns the cumulative ε."""
        accountant = rdp_accountant(self.history)
        accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=1.0)
        self.history = list(accountant.history)
        return float(accountant.get_epsilon(delta=self.delta))

    def spent(self) -> float:
        return epsilon(self.history, self.delta)
