"""`TrainingConfig`: what a user may choose for a run, and its translation to Flower.

The API validates shapes and bounds here (and publishes them as JSON schema for
forms); the domain rules stay in `flowerbed_app.run_settings.RunSettings.validate`,
which the ServerApp runs too, so a rule is written once. Errors from it are mapped
back to this model's field names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowerbed_app import checkpoint_retention
from flowerbed_app.run_settings import RunSettings, SettingsError

# API field → RunSettings attribute, where the names differ.
_RENAMED = {"num_rounds": "num_server_rounds", "from_checkpoint": "resume_from"}
_API_FIELD = {v: k for k, v in _RENAMED.items()}


class FieldError(ValueError):
    """A value the schema allowed but the domain rejects; `field` is the API name."""

    def __init__(self, field: str, reason: str, value: Any = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.value = value


class TrainingConfig(BaseModel):
    """A training run's configuration. Unknown fields are rejected (typos fail loudly)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: Literal["cnn", "resnet18", "mlp"] = Field(
        "cnn", description="Network to train: cnn, resnet18 (images) or mlp (tables, with data_source=node)."
    )
    strategy: Literal["fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum"] = Field(
        "fedavg", description="Aggregation strategy (Flower's own classes)."
    )
    num_rounds: int = Field(3, ge=1, le=1000, strict=True, description="Server rounds to run.")
    fraction_train: float = Field(0.8, gt=0, le=1, description="Fraction of nodes sampled for training each round.")
    fraction_evaluate: float = Field(0.8, gt=0, le=1, description="Fraction of nodes sampled for federated evaluation.")
    min_nodes: int = Field(2, ge=1, strict=True, le=10_000, description="Minimum nodes that must reply in a round.")
    min_available_nodes: int = Field(
        2, ge=1, le=10_000, strict=True, description="Nodes that must be connected before a round starts (>= min_nodes)."
    )
    data_source: Literal["partitions", "node"] = Field(
        "partitions",
        description="Training data: partitions of the central Fashion-MNIST copy, or each node's own data directory "
        "(node config data-dir; accuracy is then the federated evaluation).",
    )
    label_column: str = Field(
        "label", min_length=1, max_length=200, description="Tables (data_source=node): the column holding each row's class."
    )
    partitioner: Literal["iid", "dirichlet"] = Field("iid", description="How the dataset is split across nodes.")
    alpha: float = Field(0.5, gt=0, le=1e6, description="Dirichlet concentration (smaller = more skewed labels).")
    learning_rate: float = Field(0.01, gt=0, le=100, description="Client SGD learning rate (of round 1 with a schedule).")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="Client learning rate across rounds: constant, or cosine decay towards 0 by the last round."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="Client SGD momentum.")
    local_epochs: int = Field(1, ge=1, le=100, strict=True, description="Epochs each client trains per round.")
    batch_size: int = Field(32, ge=1, le=4096, strict=True, description="Client mini-batch size.")
    seed: int = Field(42, ge=0, le=2**31 - 1, strict=True, description="Seed for sampling, partitions and init.")
    round_timeout: float = Field(600, gt=0, le=86_400, description="Seconds a round may take before replies are dropped.")
    node_wait_timeout: float = Field(60, gt=0, le=86_400, description="Seconds to wait for min_available_nodes.")
    evaluate_every: int = Field(
        0, ge=0, le=1000, strict=True, description="Federated evaluation every k rounds (0: carried in train replies)."
    )
    max_train_examples: int = Field(
        0,
        ge=0,
        le=10_000_000,
        strict=True,
        description="Cap on training and on validation examples per client, for quick runs (0: whole partition).",
    )
    selection: Literal["random", "performance"] = Field(
        "random", description="Client selection: uniform, or by each node's last validation loss with exploration."
    )
    selection_explore: float = Field(0.25, ge=0, le=1, description="Share of picks given to the least recently selected.")
    dp: Literal["none", "local", "central"] = Field(
        "none", description="Differential privacy: local (Opacus DP-SGD per client) or central (server-side clipping + noise)."
    )
    dp_noise_multiplier: float = Field(1.0, ge=0, le=100, description="Gaussian noise multiplier (DP).")
    dp_max_grad_norm: float = Field(1.0, gt=0, le=1e6, description="Per-sample gradient clipping norm (local DP).")
    dp_delta: float = Field(1e-5, gt=0, lt=1, description="δ of (ε, δ)-DP.")
    dp_clipping_norm: float = Field(10.0, gt=0, le=1e6, description="Update clipping norm (central DP).")
    compression: Literal["none", "topk", "int8", "topk+int8"] = Field(
        "none", description="Client update compression, with error feedback."
    )
    compression_ratio: float = Field(0.1, gt=0, le=1, description="Share of update entries top-k keeps.")
    proximal_mu: float = Field(0.0, ge=0, le=1e3, description="FedProx proximal term μ (0 = FedAvg).")
    server_learning_rate: float = Field(1.0, gt=0, le=100, description="FedAvgM server learning rate.")
    server_momentum: float = Field(0.0, ge=0, lt=1, description="FedAvgM server momentum.")
    server_eta: float = Field(0.01, gt=0, le=100, description="FedAdam/FedYogi server learning rate.")
    tau: float = Field(1e-3, gt=0, le=1, description="FedAdam/FedYogi adaptivity τ.")
    beta_1: float = Field(0.9, ge=0, lt=1, description="FedAdam/FedYogi β₁.")
    beta_2: float = Field(0.99, ge=0, lt=1, description="FedAdam/FedYogi β₂.")
    trim_beta: float = Field(0.2, gt=0, lt=0.5, description="FedTrimmedAvg: share cut from each end.")
    krum_num_malicious: int = Field(0, ge=0, le=1000, strict=True, description="Krum: tolerated malicious nodes f.")
    secure_aggregation: Literal["none", "secaggplus"] = Field(
        "none", description="Secure aggregation: secaggplus masks every update (Flower's SecAgg+), the server sees their sum."
    )
    secagg_num_shares: int = Field(3, ge=3, le=1000, strict=True, description="SecAgg+: shares of each node's key.")
    secagg_reconstruction_threshold: int = Field(
        2, ge=2, le=1000, strict=True, description="SecAgg+: shares needed to unmask a node that dropped out."
    )
    secagg_clipping_range: float = Field(8.0, gt=0, le=1e6, description="SecAgg+: parameters clipped to ±this before masking.")
    secagg_quantization_range: int = Field(
        4194304, ge=2, le=2**28, strict=True, description="SecAgg+: integer levels of the quantized parameters."
    )
    keep_checkpoints: str = Field(
        checkpoint_retention.DEFAULT,
        max_length=10,
        # Published for forms and clients; enforced by RunSettings.validate, whose error says what is valid.
        json_schema_extra={"pattern": checkpoint_retention.PATTERN},
        description="Checkpoints this run keeps (one is written per round): all, best, or last-N (the N newest). "
        "The newest and the best (centralized accuracy) are always kept.",
    )
    from_checkpoint: str | None = Field(
        None, max_length=200, description="Model id to resume from; rounds continue at its round + 1."
    )

    def run_settings(self, **extra: Any) -> RunSettings:
        values = {_RENAMED.get(k, k): v for k, v in self.model_dump().items()}
        values["resume_from"] = values["resume_from"] or ""
        return RunSettings(**{**values, **extra})

    def validate_domain(self) -> RunSettings:
        """Run the app's own rules; raise FieldError naming our field."""
        settings = self.run_settings()
        try:
            settings.validate()
        except SettingsError as exc:
            name = exc.key.replace("-", "_")
            field = _API_FIELD.get(name, name)
            raise FieldError(field, exc.reason, getattr(self, field, None)) from None
        return settings

    def overrides(self, run_id: str, model_store: str) -> dict[str, Any]:
        """StartRun overrides: kebab-case run-config keys, only the ones we set."""
        values = {_RENAMED.get(k, k).replace("_", "-"): v for k, v in self.model_dump().items() if k != "from_checkpoint"}
        for key in ("round-timeout", "node-wait-timeout", "fraction-train", "fraction-evaluate", "alpha"):
            values[key] = float(values[key])  # TOML floats: 600 would otherwise arrive as int
        values["learning-rate"] = float(values["learning-rate"])
        values["momentum"] = float(values["momentum"])
        values["flowerbed-run-id"] = run_id
        values["model-store"] = model_store
        if self.from_checkpoint:
            values["resume-from"] = self.from_checkpoint
        return values
