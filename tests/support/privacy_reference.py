"""The reference ε the tests compare against: Opacus' own RDP accountant, stepped as DP-SGD would."""

from __future__ import annotations


def opacus_epsilon(noise: float, sample_rate: float, steps: int, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=noise, sample_rate=sample_rate)
    return accountant.get_epsilon(delta=delta)
