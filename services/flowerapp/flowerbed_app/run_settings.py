"""One typed, validated view of a run's configuration.

Flower hands apps a flat dict of kebab-case keys (pyproject defaults merged with
per-run overrides). Every app module reads settings through `RunSettings` so that
defaults, types and error messages live in one place, and a bad value fails before
any training starts instead of deep inside a round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowerbed_app import checkpoint_retention

if TYPE_CHECKING:
    from flowerbed_app.partition_cache import PartitionSpec

MODELS = ("cnn", "resnet18", "mlp")
# Which kind of input each model takes: "images" (C×H×W) or "table" (feature vectors).
MODEL_INPUT = {"cnn": "images", "resnet18": "images", "mlp": "table"}
# Where each node's training data comes from: a partition of the central Fashion-MNIST copy
# (demo, benchmarks), or the node's own directory (node config data-dir; node_data.py).
DATA_SOURCES = ("partitions", "node")
PARTITIONERS = ("iid", "dirichlet")
STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum")
SELECTIONS = ("random", "performance")
DP_MODES = ("none", "local", "central")
COMPRESSIONS = ("none", "topk", "int8", "topk+int8")
# Clients' learning rate across a run's rounds (training.scheduled_learning_rate).
LR_SCHEDULES = ("constant", "cosine")
# Opacus' per-sample gradients need layers it can hook; BatchNorm mixes samples.
DP_LOCAL_MODELS = ("cnn", "mlp")


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
    data_source: str = "partitions"
    # Tables (data-source=node): the column holding each row's class.
    label_column: str = "label"
    partitioner: str = "iid"
    alpha: float = 0.5
    learning_rate: float = 0.01
    lr_schedule: str = "constant"
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
    # Which checkpoints the run keeps: all | best | last-N; the newest and the best always stay.
    keep_checkpoints: str = checkpoint_retention.DEFAULT
    # Client selection: Flower's uniform sampling, or scored (performance) with exploration.
    selection: str = "random"
    selection_explore: float = 0.25
    # Differential privacy: none | local (Opacus in every ClientApp) | central (Flower's
    # server-side fixed clipping around our strategy).
    dp: str = "none"
    dp_noise_multiplier: float = 1.0
    dp_max_grad_norm: float = 1.0
    dp_delta: float = 1e-5
    dp_clipping_norm: float = 10.0
    # Update compression on the client → server path, with error feedback.
    compression: str = "none"
    compression_ratio: float = 0.1
    # Strategy parameters (used by the strategies that have them; defaults are Flower's).
    proximal_mu: float = 0.0
    server_learning_rate: float = 1.0
    server_momentum: float = 0.0
    server_eta: float = 0.01
    tau: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.99
    trim_beta: float = 0.2
    krum_num_malicious: int = 0
    # Secure aggregation (secure_aggregation.py): none | secaggplus (Flower's SecAgg+; the
    # ServerApp only ever sees the sum of the updates). Shares per node's key, shares needed
    # to rebuild a dropped node's masks, and the quantization of the masked parameters.
    secure_aggregation: str = "none"
    secagg_num_shares: int = 3
    secagg_reconstruction_threshold: int = 2
    secagg_clipping_range: float = 8.0
    secagg_quantization_range: int = 4194304

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
        _choice("data-source", self.data_source, DATA_SOURCES)
        if self.model == "mlp" and self.data_source != "node":
            raise SettingsError("model", "mlp trains on tables, which only nodes' own data has: set data-source=node")
        if self.data_source == "node" and self.evaluate_every > 1:
            raise SettingsError(
                "evaluate-every", "with data-source=node the nodes evaluate every round (it is the run's accuracy): use 0 or 1"
            )
        if not self.label_column.strip():
            raise SettingsError("label-column", "must name the tables' label column")
        _choice("lr-schedule", self.lr_schedule, LR_SCHEDULES)
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
        try:
            checkpoint_retention.parse(self.keep_checkpoints)
        except ValueError as exc:
            raise SettingsError("keep-checkpoints", str(exc)) from None
        self._validate_algorithms()
        from flowerbed_app.secure_aggregation import check_settings  # the rule lives with the feature

        check_settings(self)

    def _validate_algorithms(self) -> None:
        """Strategy, selection, privacy and compression values and their combinations."""
        _choice("selection", self.selection, SELECTIONS)
        _choice("dp", self.dp, DP_MODES)
        _choice("compression", self.compression, COMPRESSIONS)
        if not 0.0 < self.selection_explore <= 1.0:
            raise SettingsError("selection-explore", "must be in (0, 1] so that no node starves")
        if not 0.0 < self.compression_ratio <= 1.0:
            raise SettingsError("compression-ratio", f"must be in (0, 1] (share of entries kept), got {self.compression_ratio}")
        if self.proximal_mu < 0:
            raise SettingsError("proximal-mu", "must be >= 0 (0 makes fedprox equal to fedavg)")
        if self.server_learning_rate <= 0:
            raise SettingsError("server-learning-rate", "must be > 0")
        if not 0.0 <= self.server_momentum < 1.0:
            raise SettingsError("server-momentum", "must be in [0, 1)")
        if self.server_eta <= 0:
            raise SettingsError("server-eta", "must be > 0")
        if self.tau <= 0:
            raise SettingsError("tau", "must be > 0 (adaptivity; avoids division by zero)")
        for key in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise SettingsError(_kebab(key), "must be in [0, 1)")
        if not 0.0 <= self.trim_beta < 0.5:
            raise SettingsError("trim-beta", "must be in [0, 0.5): the fraction cut from each end")
        if self.krum_num_malicious < 0:
            raise SettingsError("krum-num-malicious", "must be >= 0")
        if self.strategy == "krum" and self.min_nodes < 2 * self.krum_num_malicious + 3:
            raise SettingsError(
                "krum-num-malicious",
                f"krum tolerates f malicious nodes only with at least 2f+3 nodes per round; "
                f"min-nodes={self.min_nodes} is too few for f={self.krum_num_malicious} — "
                f"raise min-nodes to {2 * self.krum_num_malicious + 3} or lower krum-num-malicious",
            )
        if self.dp != "none":
            if self.dp_noise_multiplier <= 0:
                raise SettingsError("dp-noise-multiplier", "must be > 0 with dp enabled (0 gives no privacy)")
            if not 0.0 < self.dp_delta < 1.0:
                raise SettingsError("dp-delta", "must be in (0, 1), typically below 1/(number of examples)")
            if self.compression != "none":
                raise SettingsError("compression", f"cannot be combined with dp={self.dp}: set compression=none or dp=none")
        if self.dp == "local":
            if self.dp_max_grad_norm <= 0:
                raise SettingsError("dp-max-grad-norm", "must be > 0")
            if self.model not in DP_LOCAL_MODELS:
                raise SettingsError(
                    "model", f"dp=local needs a model without BatchNorm ({', '.join(DP_LOCAL_MODELS)}), got {self.model!r}"
                )
            if self.strategy == "fedprox" and self.proximal_mu > 0:
                raise SettingsError(
                    "proximal-mu", "fedprox's proximal term never reaches DP-SGD's per-sample gradients: use dp=central or mu=0"
                )
        if self.dp == "central" and self.dp_clipping_norm <= 0:
            raise SettingsError("dp-clipping-norm", "must be > 0")

    def partition_spec(self, partition_id: int, num_partitions: int) -> PartitionSpec:
        """Which slice of the data node `partition_id` of `num_partitions` trains on in this run."""
        from flowerbed_app.partition_cache import PartitionSpec  # numpy & co. only where data is loaded

        return PartitionSpec(
            source=self.dataset,
            partitioner=self.partitioner,
            num_partitions=num_partitions,
            partition_id=partition_id,
            alpha=self.alpha,
            seed=self.seed,
            validation_fraction=self.validation_fraction,
        )

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
