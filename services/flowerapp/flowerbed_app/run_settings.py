"""One typed, validated view of a run's configuration.

Flower hands apps a flat dict of kebab-case keys (pyproject defaults merged with
per-run overrides). Every app module reads settings through `RunSettings` so that
defaults, types and error messages live in one place, and a bad value fails before
any training starts instead of deep inside a round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

MODELS = ("cnn", "resnet18")
PARTITIONERS = ("iid", "dirichlet")
STRATEGIES = ("fedavg",)


class SettingsError(ValueError):
    """A run-config value is invalid; the message names the key and the fix."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class RunSettings:
    model: str = "cnn"
    strategy: str = "fedavg"
    num_server_rounds: int = 3
    fraction_train: float = 0.8
    fraction_evaluate: float = 0.8
    min_nodes: int = 2
    min_available_nodes: int = 2
    evaluate_every: int = 0
    partitioner: str = "iid"
    alpha: float = 0.5
    learning_rate: float = 0.01
    momentum: float = 0.9
    local_epochs: int = 1
    batch_size: int = 32
    seed: int = 42
    round_timeout: float = 600.0
    node_wait_timeout: float = 60.0
    validation_fraction: float = 0.1
    max_train_examples: int = 0
    dataset: str = "/usr/share/datasets/fashion-mnist"
    flowerbed_run_id: str = ""
    model_store: str = ""
    resume_from: str = ""
    traceparent: str = ""
    trace_step_every: int = 1

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunSettings:
        """Build from Flower's run config; unknown keys are an error (typos)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in run_config.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise SettingsError(key, f"unknown setting; valid: {', '.join(sorted(_kebab(f) for f in fields))}")
            values[name] = _coerce(key, raw, type(getattr(cls, name)))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that would fail later or silently do the wrong thing."""
        _choice("model", self.model, MODELS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("partitioner", self.partitioner, PARTITIONERS)
        if self.num_server_rounds < 1:
            raise SettingsError("num-server-rounds", "must be at least 1")
        for key in ("fraction_train", "fraction_evaluate"):
            value = getattr(self, key)
            if not 0.0 < value <= 1.0:
                raise SettingsError(_kebab(key), f"must be in (0, 1], got {value}")
        if self.min_nodes < 1:
            raise SettingsError("min-nodes", "must be at least 1")
        if self.min_available_nodes < self.min_nodes:
            raise SettingsError("min-available-nodes", "must be >= min-nodes")
        if self.alpha <= 0:
            raise SettingsError("alpha", f"must be > 0, got {self.alpha}")
        if self.learning_rate <= 0:
            raise SettingsError("learning-rate", "must be > 0")
        if not 0.0 <= self.momentum < 1.0:
            raise SettingsError("momentum", "must be in [0, 1)")
        if self.local_epochs < 1:
            raise SettingsError("local-epochs", "must be at least 1")
        if self.batch_size < 1:
            raise SettingsError("batch-size", "must be at least 1")
        if self.round_timeout <= 0:
            raise SettingsError("round-timeout", "must be > 0 seconds")
        if self.node_wait_timeout <= 0:
            raise SettingsError("node-wait-timeout", "must be > 0 seconds")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise SettingsError("validation-fraction", "must be in [0, 1)")
        if self.evaluate_every < 0:
            raise SettingsError("evaluate-every", "must be >= 0 (0 = carried in train replies)")
        if self.trace_step_every < 0:
            raise SettingsError("trace-step-every", "must be >= 0 (0 = no step spans)")
        if self.max_train_examples < 0:
            raise SettingsError("max-train-examples", "must be >= 0 (0 = whole partition)")

    def to_run_config(self) -> dict[str, Any]:
        """The kebab-case dict Flower expects, e.g. for StartRun overrides."""
        return {_kebab(k): v for k, v in dataclasses.asdict(self).items()}


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise SettingsError(key, f"unknown value {value!r}; valid: {', '.join(valid)}")


def _coerce(key: str, raw: Any, kind: type) -> Any:
    """Flower passes TOML scalars; accept the obvious conversions, reject the rest."""
    try:
        if kind is bool:
            return bool(raw)
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        if kind is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise SettingsError(key, f"expected {kind.__name__}, got {raw!r}") from None
