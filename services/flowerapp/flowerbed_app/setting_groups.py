"""The sections of the Start form that run settings are grouped in, in order, with the hint each shows.

Each setting names its group in its declaration (run_settings.py); `/training/schema` hands
these to the dashboard as `x-groups`, and README's table follows the same order.
"""

from __future__ import annotations

GROUPS = {
    "Model & schedule": "What to train and for how long.",
    "Clients": "How many SuperNodes take part in each round.",
    "Data": "Fashion-MNIST split across clients (partitions), or each node's own data directory (node).",
    "Local training": "Optimiser settings on every client.",
    "Strategy parameters": "The chosen strategy's own parameters.",
    "Client selection": "Who trains each round.",
    "Privacy": "Differential privacy, local (Opacus in every client) or central (server-side).",
    "Compression": "Client updates sent compressed, with error feedback.",
    "Secure aggregation": "SecAgg+: every update masked, the server sees only their sum.",
    "Checkpoints": "What this run keeps, and a stored checkpoint to continue from (leave empty to start fresh).",
    "Deployment": "Set by the backend or the deployment, not by users.",
}
