"""Secure aggregation: which runs can use Flower's SecAgg+, and why the others cannot.

With `secure-aggregation=secaggplus` every node masks its (weighted, quantized) model
before it leaves the node, and the ServerApp can only unmask the sum of the nodes'
models (`secagg_server`, `secagg_client`: Flower's SecAggPlusWorkflow and secaggplus_mod,
no cryptography of ours). Whatever needs one node's update in the clear cannot run on
top of that; `check_settings` refuses it before a run starts, naming the setting and
the reason. RunSettings.validate calls it, so the API (422) and the ServerApp share the
rule. This module stays import-light: the API and every ClientApp load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowerbed_app.run_choices import SECURE_AGGREGATIONS
from flowerbed_app.setting_spec import SettingsError

if TYPE_CHECKING:
    from flowerbed_app.run_settings import RunSettings

MODES = SECURE_AGGREGATIONS
# Strategies whose aggregation is a weighted mean of the updates (plus server-side
# optimizer steps): they need only the sum, which is what SecAgg+ reveals.
SUMMING_STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi")
# Flower's default modulus: masks are drawn from [0, 2**32).
MODULUS_RANGE = 2**32


def enabled(settings: RunSettings) -> bool:
    return settings.secure_aggregation == "secaggplus"


def check_settings(settings: RunSettings) -> None:
    """Refuse SecAgg+ parameters Flower would reject, and combinations that need clear updates."""
    if settings.secure_aggregation not in MODES:
        raise SettingsError("secure-aggregation", f"unknown value {settings.secure_aggregation!r}; valid: {', '.join(MODES)}")
    if not enabled(settings):
        return
    if settings.strategy not in SUMMING_STRATEGIES:
        raise SettingsError(
            "strategy",
            f"{settings.strategy} needs every node's update on its own (it ranks or trims them), but secure "
            f"aggregation reveals only their sum: use one of {', '.join(SUMMING_STRATEGIES)}, or secure-aggregation=none",
        )
    if settings.compression != "none":
        raise SettingsError(
            "compression",
            "cannot be combined with secure-aggregation=secaggplus: SecAgg+ quantizes and masks the whole model, "
            "so a compressed update could not be decoded by the server — set compression=none",
        )
    if settings.dp == "central":
        raise SettingsError(
            "dp",
            "central DP clips every node's update in the clear on the server, which secure aggregation forbids: "
            "use dp=local (noise added on each node) or dp=none",
        )
    if settings.data_source != "partitions":
        raise SettingsError(
            "data-source", "secure aggregation runs with data-source=partitions only (it evaluates centrally, on the test split)"
        )
    if settings.evaluate_every != 0:
        raise SettingsError(
            "evaluate-every",
            "must be 0 with secure aggregation: each node's evaluation rides in its masked-round reply metrics",
        )
    if settings.selection != "random":
        raise SettingsError(
            "selection", "must be random with secure aggregation: Flower's SecAgg+ workflow samples the nodes itself"
        )
    if settings.min_nodes < 2:
        raise SettingsError("min-nodes", "must be at least 2 with secure aggregation: one node's sum is its update")
    if settings.secagg_num_shares < 3:
        raise SettingsError("secagg-num-shares", "must be at least 3 (each node's key split among itself and its neighbours)")
    if not 2 <= settings.secagg_reconstruction_threshold < settings.secagg_num_shares:
        raise SettingsError(
            "secagg-reconstruction-threshold",
            f"must be at least 2 and below secagg-num-shares={settings.secagg_num_shares} "
            "(higher: more privacy, fewer dropouts tolerated)",
        )
    if settings.secagg_clipping_range <= 0:
        raise SettingsError("secagg-clipping-range", "must be > 0: model parameters are clipped to ±this before quantization")
    if not 2 <= settings.secagg_quantization_range < MODULUS_RANGE // 16:
        raise SettingsError(
            "secagg-quantization-range",
            f"must be in [2, {MODULUS_RANGE // 16}): the sum of the quantized models must fit the 2**32 modulus",
        )
