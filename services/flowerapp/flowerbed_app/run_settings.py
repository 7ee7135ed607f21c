"""Every run setting, declared once, and the one typed, validated view of a run's configuration.

Each field of `RunSettings` is a setting: its type, default, bounds, choices, label, form
group and when it matters (`setting_spec.Spec`). Flower hands apps a flat dict of kebab-case
keys (pyproject defaults merged with per-run overrides); every app module reads them through
`RunSettings.from_run_config`, so a bad value fails before any training starts. The backend
derives its API model, `/training/schema`, the CLI flags and README's table from the same
fields (flowerbed.runs.run_config); tests check the app's pyproject against them.

Adding a setting: one `setting(...)` line here, and its use. The values a setting chooses
from are in run_choices.py, the form's sections in setting_groups.py, what every declaration
can do (parse, check, write back) in setting_spec.py, and rules that involve two settings are
the named checks in run_rules.py.
"""

from __future__ import annotations

import dataclasses

from flowerbed_app import run_choices
from flowerbed_app.run_rules import RULES
from flowerbed_app.runtime import checkpoint_retention
from flowerbed_app.setting_groups import GROUPS
from flowerbed_app.setting_spec import Declared, DeclaredSettings, SettingsError, declared, keys_of, setting

__all__ = ["BY_KEY", "GROUPS", "SETTINGS", "RunSettings", "SettingsError"]

_RUN, _CLIENTS, _DATA, _LOCAL, _STRAT, _SEL, _DP, _COMP, _SECAGG, _CKPT, _DEPLOY = GROUPS
_DP_ON = {"dp": ("local", "central")}
_ADAPTIVE = {"strategy": ("fedadam", "fedyogi")}
_SECAGG_ON = {"secure_aggregation": ("secaggplus",)}
_FEDAVGM = {"strategy": ("fedavgm",)}
_PARTITIONS = {"data_source": ("partitions",)}
_TOPK = {"compression": ("topk", "topk+int8")}


@dataclasses.dataclass(frozen=True)
class RunSettings(DeclaredSettings):
    model: str = setting(
        "cnn",
        "Model",
        _RUN,
        "Network to train: cnn, resnet18 (images) or mlp (tables, with data_source=node).",
        choices=run_choices.MODELS,
    )
    strategy: str = setting(
        "fedavg", "Strategy", _RUN, "Aggregation strategy (Flower's own classes).", choices=run_choices.STRATEGIES
    )
    num_rounds: int = setting(3, "Rounds", _RUN, "Server rounds to run.", ge=1, le=1000, key="num-server-rounds")
    evaluate_every: int = setting(
        0,
        "Federated evaluation every k rounds",
        _RUN,
        "Federated evaluation every k rounds (0: carried in train replies).",
        ge=0,
        le=1000,
        advanced=True,
    )
    seed: int = setting(42, "Seed", _RUN, "Seed for sampling, partitions and init.", ge=0, le=2**31 - 1, advanced=True)
    fraction_train: float = setting(  # 0.4 with 2 local epochs (was 0.8 × 1): BENCHMARKS.md §3 (2026-11-27, defaults)
        0.4, "Train fraction", _CLIENTS, "Fraction of nodes sampled for training each round.", gt=0, le=1
    )
    fraction_evaluate: float = setting(
        0.8, "Evaluate fraction", _CLIENTS, "Fraction of nodes sampled for federated evaluation.", gt=0, le=1, advanced=True
    )
    min_nodes: int = setting(2, "Min. nodes per round", _CLIENTS, "Minimum nodes that must reply in a round.", ge=1, le=10_000)
    min_available_nodes: int = setting(
        2, "Min. connected nodes", _CLIENTS, "Nodes that must be connected before a round starts (>= min_nodes).", ge=1, le=10_000
    )
    node_wait_timeout: float = setting(
        60.0, "Node wait timeout (s)", _CLIENTS, "Seconds to wait for min_available_nodes.", gt=0, le=86_400, advanced=True
    )
    round_timeout: float = setting(
        600.0,
        "Round timeout (s)",
        _CLIENTS,
        "Seconds a round may take before replies are dropped.",
        gt=0,
        le=86_400,
        advanced=True,
    )
    data_source: str = setting(
        "partitions",
        "Data source",
        _DATA,
        "Training data: partitions of the central Fashion-MNIST copy, or each node's own data directory "
        "(node config data-dir; accuracy is then the federated evaluation).",
        choices=run_choices.DATA_SOURCES,
    )
    label_column: str = setting(
        "label",
        "Label column (tables)",
        _DATA,
        "Tables (data_source=node): the column holding each row's class.",
        min_length=1,
        max_length=200,
        when={"data_source": ("node",)},
    )
    partitioner: str = setting(
        "iid", "Partitioner", _DATA, "How the dataset is split across nodes.", choices=run_choices.PARTITIONERS, when=_PARTITIONS
    )
    alpha: float = setting(
        0.5,
        "Dirichlet α",
        _DATA,
        "Dirichlet concentration (smaller = more skewed labels).",
        gt=0,
        le=1e6,
        when={"data_source": ("partitions",), "partitioner": ("dirichlet",)},
    )
    max_train_examples: int = setting(
        0,
        "Max. train examples per client",
        _DATA,
        "Cap on training and on validation examples per client, for quick runs (0: whole partition).",
        ge=0,
        le=10_000_000,
    )
    max_test_examples: int = setting(
        0,
        "Max. test examples (server)",
        _DATA,
        "The server evaluates each round on a seeded sample of this many test examples, for quick runs (0: all).",
        ge=0,
        le=10_000_000,
        when={"data_source": ("partitions",)},
        advanced=True,
    )
    batch_size: int = setting(32, "Batch size", _LOCAL, "Client mini-batch size.", ge=1, le=4096)
    learning_rate: float = setting(  # 0.05 with cosine: BENCHMARKS.md §3 (2026-11-27)
        0.05, "Learning rate", _LOCAL, "Client SGD learning rate (of round 1 with a schedule).", gt=0, le=100
    )
    lr_schedule: str = setting(
        "cosine",
        "Learning-rate schedule",
        _LOCAL,
        "Client learning rate across rounds: constant, or cosine decay towards 0 by the last round.",
        choices=run_choices.LR_SCHEDULES,
        advanced=True,
    )
    momentum: float = setting(0.9, "Momentum", _LOCAL, "Client SGD momentum.", ge=0, lt=1, advanced=True)
    local_epochs: int = setting(2, "Local epochs", _LOCAL, "Epochs each client trains per round.", ge=1, le=100)
    weight_decay: float = setting(0.0, "Weight decay", _LOCAL, "Client SGD L2 weight decay (0: none).", ge=0, le=1, advanced=True)
    dropout: float = setting(  # 0 (was the seed model's 0.25/0.5): BENCHMARKS.md §3 (2026-11-27, dropout)
        0.0,
        "Dropout",
        _LOCAL,
        "Rate of the cnn's dropout layers while clients train (0: none).",
        ge=0,
        lt=1,
        when={"model": ("cnn",)},
        advanced=True,
    )
    clip_norm: float = setting(  # 10: BENCHMARKS.md §3 (2026-11-27, dropout)
        10.0,
        "Gradient clipping",
        _LOCAL,
        "Largest L2 norm of a client's batch gradient; larger ones are scaled down (0: no clipping).",
        ge=0,
        le=1e6,
        advanced=True,
    )
    proximal_mu: float = setting(
        0.0, "FedProx μ", _STRAT, "FedProx proximal term μ (0 = FedAvg).", ge=0, le=1e3, when={"strategy": ("fedprox",)}
    )
    server_learning_rate: float = setting(
        1.0, "FedAvgM server learning rate", _STRAT, "FedAvgM server learning rate.", gt=0, le=100, when=_FEDAVGM
    )
    server_momentum: float = setting(
        0.0, "FedAvgM server momentum", _STRAT, "FedAvgM server momentum.", ge=0, lt=1, when=_FEDAVGM
    )
    server_eta: float = setting(
        0.01, "Server learning rate η", _STRAT, "FedAdam/FedYogi server learning rate.", gt=0, le=100, when=_ADAPTIVE
    )
    tau: float = setting(1e-3, "Adaptivity τ", _STRAT, "FedAdam/FedYogi adaptivity τ.", gt=0, le=1, when=_ADAPTIVE, advanced=True)
    beta_1: float = setting(0.9, "β₁", _STRAT, "FedAdam/FedYogi β₁.", ge=0, lt=1, when=_ADAPTIVE, advanced=True)
    beta_2: float = setting(0.99, "β₂", _STRAT, "FedAdam/FedYogi β₂.", ge=0, lt=1, when=_ADAPTIVE, advanced=True)
    trim_beta: float = setting(
        0.2,
        "Trimmed share β",
        _STRAT,
        "FedTrimmedAvg: share cut from each end.",
        gt=0,
        lt=0.5,
        when={"strategy": ("fedtrimmedavg",)},
    )
    krum_num_malicious: int = setting(
        0,
        "Krum f",
        _STRAT,
        "Krum: tolerated malicious nodes f (needs min_nodes >= 2f+3 when f > 0).",
        ge=0,
        le=1000,
        when={"strategy": ("krum",)},
    )
    selection: str = setting(
        "random",
        "Client selection",
        _SEL,
        "Client selection: uniform, or by each node's last validation loss with exploration.",
        choices=run_choices.SELECTIONS,
    )
    selection_explore: float = setting(
        0.25,
        "Exploration share",
        _SEL,
        "Share of picks given to the least recently selected (> 0 so that no node starves).",
        gt=0,
        le=1,
        when={"selection": ("performance",)},
    )
    dp: str = setting(
        "none",
        "Differential privacy",
        _DP,
        "Differential privacy: local (Opacus DP-SGD per client) or central (server-side clipping + noise).",
        choices=run_choices.DP_MODES,
    )
    dp_noise_multiplier: float = setting(
        1.0, "DP noise multiplier", _DP, "Gaussian noise multiplier (DP).", ge=0, le=100, when=_DP_ON
    )
    dp_max_grad_norm: float = setting(
        1.0, "DP max. gradient norm", _DP, "Per-sample gradient clipping norm (local DP).", gt=0, le=1e6, when={"dp": ("local",)}
    )
    dp_delta: float = setting(1e-5, "DP δ", _DP, "δ of (ε, δ)-DP.", gt=0, lt=1, when=_DP_ON, advanced=True)
    dp_clipping_norm: float = setting(
        10.0, "DP clipping norm", _DP, "Update clipping norm (central DP).", gt=0, le=1e6, when={"dp": ("central",)}
    )
    compression: str = setting(
        "none", "Compression", _COMP, "Client update compression, with error feedback.", choices=run_choices.COMPRESSIONS
    )
    compression_ratio: float = setting(
        0.1, "Top-k share kept", _COMP, "Share of update entries top-k keeps.", gt=0, le=1, when=_TOPK
    )
    secure_aggregation: str = setting(
        "none",
        "Secure aggregation",
        _SECAGG,
        "Secure aggregation: secaggplus masks every update (Flower's SecAgg+), the server sees their sum.",
        choices=run_choices.SECURE_AGGREGATIONS,
    )
    secagg_num_shares: int = setting(
        3, "SecAgg+ shares", _SECAGG, "SecAgg+: shares of each node's key.", ge=3, le=1000, when=_SECAGG_ON, advanced=True
    )
    secagg_reconstruction_threshold: int = setting(
        2,
        "SecAgg+ reconstruction threshold",
        _SECAGG,
        "SecAgg+: shares needed to unmask a node that dropped out (higher: more privacy, fewer dropouts tolerated).",
        ge=2,
        le=1000,
        when=_SECAGG_ON,
    )
    secagg_clipping_range: float = setting(
        8.0,
        "SecAgg+ clipping range",
        _SECAGG,
        "SecAgg+: parameters clipped to ±this before masking.",
        gt=0,
        le=1e6,
        when=_SECAGG_ON,
        advanced=True,
    )
    secagg_quantization_range: int = setting(
        4194304,
        "SecAgg+ quantization levels",
        _SECAGG,
        "SecAgg+: integer levels of the quantized parameters.",
        ge=2,
        le=2**28,
        when=_SECAGG_ON,
        advanced=True,
    )
    keep_checkpoints: str = setting(
        checkpoint_retention.DEFAULT,
        "Checkpoints to keep",
        _CKPT,
        "Checkpoints this run keeps (one is written per round): all, best, or last-N (the N newest). "
        "The newest and the best (centralized accuracy) are always kept.",
        max_length=10,
        pattern=checkpoint_retention.PATTERN,
        check=checkpoint_retention.parse,
        advanced=True,
    )
    from_checkpoint: str = setting(
        "",
        "From checkpoint (model id)",
        _CKPT,
        "Model id to resume from; rounds continue at its round + 1.",
        max_length=200,
        nullable=True,
        key="resume-from",
    )
    dataset: str = setting(
        "/usr/share/datasets/fashion-mnist",
        "Dataset",
        _DEPLOY,
        "Fashion-MNIST: an IDX directory, or the hub id zalando-datasets/fashion_mnist.",
        api=False,
    )
    validation_fraction: float = setting(
        0.1,
        "Validation fraction",
        _DEPLOY,
        "Share of each partition held out for the client's validation.",
        ge=0,
        lt=1,
        api=False,
    )
    trace_step_every: int = setting(
        1,
        "Trace every k-th step",
        _DEPLOY,
        "A train.step span for every k-th optimizer step (only when OTEL_* configures an exporter); 0 = none.",
        ge=0,
        api=False,
    )
    flowerbed_run_id: str = setting(
        "", "Flowerbed run id", _DEPLOY, "Set by the backend/CLI; empty with plain `flwr run`.", api=False
    )
    model_store: str = setting("", "Model store", _DEPLOY, "Where checkpoints go; set by the backend/CLI.", api=False)
    traceparent: str = setting("", "Trace parent", _DEPLOY, "W3C trace context of the request that started the run.", api=False)

    def validate(self) -> None:
        """Each value against its declaration, then the named rules that relate settings."""
        super().validate()
        for rule in RULES:
            rule(self)


SETTINGS: tuple[Declared, ...] = declared(RunSettings)
BY_KEY: dict[str, Declared] = keys_of(RunSettings)
