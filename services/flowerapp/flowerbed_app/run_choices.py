"""The values run settings choose from: one list of models, strategies, privacy modes and the rest.

run_settings.py declares each setting with one of these as its `choices`; the strategy table
(strategy/strategies.py), the network factories (task/networks.py) and the dashboard are held
to the same lists by tests, so a strategy or a model is named in one place.

Light on purpose (plain tuples): every ClientApp process imports it.
"""

from __future__ import annotations

MODELS = ("cnn", "resnet18", "mlp")
# Which kind of input each model takes: "images" (C×H×W) or "table" (feature vectors).
MODEL_INPUT = {"cnn": "images", "resnet18": "images", "mlp": "table"}
# Where each node's training data comes from: a partition of the central Fashion-MNIST copy
# (demo, benchmarks), or the node's own directory (node config data-dir; task/node_data.py).
DATA_SOURCES = ("partitions", "node")
PARTITIONERS = ("iid", "dirichlet")
STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum")
SELECTIONS = ("random", "performance")
DP_MODES = ("none", "local", "central")
COMPRESSIONS = ("none", "topk", "int8", "topk+int8")
# Secure aggregation (algorithms/secure_aggregation.py): Flower's SecAgg+, the ServerApp sees only the sum.
SECURE_AGGREGATIONS = ("none", "secaggplus")
# Clients' learning rate across a run's rounds (training.scheduled_learning_rate).
LR_SCHEDULES = ("constant", "cosine")
# Opacus' per-sample gradients need layers it can hook; BatchNorm mixes samples.
DP_LOCAL_MODELS = ("cnn", "mlp")
