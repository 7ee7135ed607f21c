"""Federated vs centralized on the same hospital tables (issue 16).

Three sites hold the breast-cancer tables of `flowerbed demo-data` (uneven sizes, skewed
labels). The federation trains `mlp` on them (data-source=node); in the same run this
script trains the same MLP centrally on the pooled data — the same training examples,
standardised with the same statistics, for as many epochs as a node trains in the whole
run — and evaluates both on the same examples: every site's held-out validation share.

    .venv/bin/python bench/node_data.py --sites 3 --rounds 5 --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import federation, ours_config, run

from flowerbed.demo_data import write_breast_cancer
from flowerbed.paths import app_dir
from flowerbed_app.task.data_description import agree, describe
from flowerbed_app.task.networks import create_model
from flowerbed_app.task.node_data import convert, validation_split
from flowerbed_app.task.node_files import read_raw
from flowerbed_app.task.training import evaluate, seeded_model, train


def centralized(sites: list[Path], settings: dict, epochs: int) -> float:
    """Accuracy of the MLP trained on the pooled training shares, on the pooled validation shares."""
    raws = [read_raw(d, "label") for d in sites]
    share = settings["validation-fraction"]
    run_data = agree({i: describe(r, d.name, share, settings["seed"]) for i, (r, d) in enumerate(zip(raws, sites, strict=True))})
    xs_train, ys_train, xs_val, ys_val = [], [], [], []
    for raw in raws:
        x, y = convert(raw, run_data.conversion)
        tr, va = validation_split(len(y), share, settings["seed"])
        xs_train.append(x[tr])
        ys_train.append(y[tr])
        xs_val.append(x[va])
        ys_val.append(y[va])
    conversion = run_data.conversion
    model = seeded_model(lambda: create_model("mlp", len(conversion.classes), conversion.input_shape), settings["seed"])
    train(
        model,
        np.concatenate(xs_train),
        np.concatenate(ys_train),
        learning_rate=settings["learning-rate"],
        momentum=0.9,
        epochs=epochs,
        batch_size=settings["batch-size"],
        seed=settings["seed"],
    )
    return evaluate(model, np.concatenate(xs_val), np.concatenate(ys_val))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument(
        "--validation-fraction", type=float, default=0.3, help="each site's held-out share (0.3: 171 of 569 patients)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = {
        "data-source": "node",
        "model": "mlp",
        "num-server-rounds": args.rounds,
        "local-epochs": args.local_epochs,
        "learning-rate": 0.05,
        "batch-size": 16,
        "seed": 42,
        "validation-fraction": args.validation_fraction,
        "fraction-train": 1.0,
        "fraction-evaluate": 1.0,
        "min-nodes": args.sites,
        "min-available-nodes": args.sites,
    }
    with tempfile.TemporaryDirectory(prefix="flowerbed-bench-sites-") as tmp:
        sites = write_breast_cancer(Path(tmp), args.sites, seed=0)
        sizes = [len((d / "records.csv").read_text().splitlines()) - 1 for d in sites]
        started = time.time()
        with federation(args.sites, node_data=sites) as fed:
            events, _, status = run(fed, app_dir(), ours_config(fed, **settings))
        seconds = time.time() - started
        central = centralized(sites, settings, args.rounds * args.local_epochs)
    rounds = [e for e in events if e["event"] == "round_finished"]
    curve = [round(r["accuracy"], 4) for r in rounds]
    federated = curve[-1] if curve else None
    result = {
        "status": status,
        "site_sizes": sizes,
        "federated_accuracy_by_round": curve,
        "federated_accuracy": federated,
        "centralized_accuracy": round(central, 4),
        "validation_examples": sum(round(n * args.validation_fraction) for n in sizes),
        "gap_pp": round(100 * (central - federated), 2) + 0.0 if federated is not None else None,
        "seconds": round(seconds, 1),
    }
    print(f"sites {sizes}: federated {federated} after {args.rounds} rounds, centralized {central:.4f} (same epochs)")
    print(f"federated by round: {curve}; gap {result['gap_pp']} pp; {seconds:.0f} s")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
