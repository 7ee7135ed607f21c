"""Rules between run settings: each a named check that raises SettingsError naming the setting to change.

A value's own bounds and choices are in its declaration (run_settings.py) and checked there;
only what relates two or more settings lives here. The ServerApp, the API and the CLI all run
these through `RunSettings.validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flowerbed_app.algorithms import secure_aggregation
from flowerbed_app.run_choices import DP_LOCAL_MODELS
from flowerbed_app.setting_spec import SettingsError

if TYPE_CHECKING:  # the declarations import these rules; the rules only read them
    from flowerbed_app.run_settings import RunSettings


def mlp_needs_tables(s: RunSettings) -> None:
    if s.model == "mlp" and s.data_source != "node":
        raise SettingsError("model", "mlp trains on tables, which only nodes' own data has: set data-source=node")


def node_data_evaluates_every_round(s: RunSettings) -> None:
    if s.data_source == "node" and s.evaluate_every > 1:
        raise SettingsError(
            "evaluate-every", "with data-source=node the nodes evaluate every round (it is the run's accuracy): use 0 or 1"
        )


def enough_connected_nodes(s: RunSettings) -> None:
    if s.min_available_nodes < s.min_nodes:
        raise SettingsError("min-available-nodes", "must be >= min-nodes")


def krum_has_enough_nodes(s: RunSettings) -> None:
    """Krum tolerates f malicious nodes with at least 2f+3 replies; f=0 (Flower's default) runs on any count."""
    f = s.krum_num_malicious
    if s.strategy != "krum" or f == 0 or s.min_nodes >= 2 * f + 3:
        return
    largest = (s.min_nodes - 3) // 2
    lower = f"lower krum-num-malicious to {largest}" if largest >= 1 else "set krum-num-malicious to 0 (no tolerance)"
    raise SettingsError(
        "krum-num-malicious",
        f"krum tolerates f malicious nodes only with at least 2f+3 nodes per round; min-nodes={s.min_nodes} is too few "
        f"for f={f} — raise min-nodes (and min-available-nodes) to {2 * f + 3}, or {lower}",
    )


def dp_settings_protect(s: RunSettings) -> None:
    if s.dp == "none":
        return
    if s.dp_noise_multiplier <= 0:
        raise SettingsError("dp-noise-multiplier", "must be > 0 with dp enabled (0 gives no privacy)")
    if s.compression != "none":
        raise SettingsError("compression", f"cannot be combined with dp={s.dp}: set compression=none or dp=none")


def local_dp_fits_the_model(s: RunSettings) -> None:
    if s.dp != "local":
        return
    if s.model not in DP_LOCAL_MODELS:
        raise SettingsError("model", f"dp=local needs a model without BatchNorm ({', '.join(DP_LOCAL_MODELS)}), got {s.model!r}")
    if s.strategy == "fedprox" and s.proximal_mu > 0:
        raise SettingsError(
            "proximal-mu", "fedprox's proximal term never reaches DP-SGD's per-sample gradients: use dp=central or mu=0"
        )


RULES: tuple[Callable[[RunSettings], None], ...] = (
    mlp_needs_tables,
    node_data_evaluates_every_round,
    enough_connected_nodes,
    krum_has_enough_nodes,
    dp_settings_protect,
    local_dp_fits_the_model,
    secure_aggregation.check_settings,
)
