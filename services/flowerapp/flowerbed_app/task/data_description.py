"""What a node tells the federation about its data, and how the ServerApp agrees on a run from it.

Before round 1 of a `data-source = "node"` run the ServerApp asks every node to describe
its data (`describe`, run by the ClientApp): format, example count, feature columns or
image shape, class names and counts, and — for tables — the mean and variance of each
feature over its training share. Never a row. Class counts under `MIN_REPORTED_COUNT`
are reported as "< k", and when one is, the example count is rounded up to a multiple
of k, so that a small class cannot be recovered as "total minus the others".

`agree` (ServerApp) turns the descriptions into one `Conversion` for the run — the
class list, the input shape, the federation's feature statistics (weighted by each
node's count, so no node standardises with its own) — or fails the run, naming each
node that disagrees and how, before any training.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowerbed_app.task.node_data import Conversion, validation_split
from flowerbed_app.task.node_files import RawData

# k: class counts below it are never reported exactly.
MIN_REPORTED_COUNT = 5


class DataDisagreement(ValueError):
    """Nodes whose data cannot train one model together; the message names them and the difference."""


def suppressed(count: int, k: int = MIN_REPORTED_COUNT) -> int | str:
    return count if count >= k else f"< {k}"


def describe(raw: RawData, site: str, validation_fraction: float, seed: int, k: int = MIN_REPORTED_COUNT) -> dict[str, Any]:
    """A node's description: JSON-ready, k-anonymous class counts, no example."""
    names, counts = np.unique(raw.labels.astype(str), return_counts=True)
    classes = {str(n): suppressed(int(c), k) for n, c in zip(names, counts, strict=True)}
    examples = len(raw.labels)
    rounded = any(isinstance(v, str) for v in classes.values())
    if rounded:
        examples = math.ceil(examples / k) * k
    description: dict[str, Any] = {
        "site": site,
        "format": raw.format,
        "examples": examples,
        "examples_rounded_up_to": k if rounded else None,
        "classes": classes,
    }
    if raw.columns:
        train, _ = validation_split(len(raw.labels), validation_fraction, seed)
        values = raw.x[train]
        description["columns"] = list(raw.columns)
        description["feature_mean"] = [float(v) for v in values.mean(axis=0)]
        description["feature_var"] = [float(v) for v in values.var(axis=0)]
    else:
        description["image_shape"] = list(raw.image_shape)
    return description


@dataclass(frozen=True)
class RunData:
    """What the run agreed on: the conversion every node applies, and each node's example bound."""

    conversion: Conversion
    format: str
    columns: tuple[str, ...]
    node_examples: dict[int, int]

    def summary(self) -> dict[str, Any]:
        """For events and checkpoint metadata: what a model of this run expects as input."""
        return {
            "format": self.format,
            "classes": list(self.conversion.classes),
            "input_shape": list(self.conversion.input_shape),
            "feature_columns": list(self.columns),
            "feature_mean": list(self.conversion.feature_mean),
            "feature_std": list(self.conversion.feature_std),
        }


def _who(node_id: int, description: Mapping[str, Any]) -> str:
    site = description.get("site")
    return f"node {node_id}" + (f" (site {site!r})" if site else "")


def _kind(description: Mapping[str, Any]) -> str:
    """Tables and feature-vector npz files train the same models; images are another kind."""
    return "table" if "columns" in description else "images"


def agree(descriptions: Mapping[int, Mapping[str, Any]]) -> RunData:
    """One conversion for all nodes, or DataDisagreement naming every node that differs."""
    if not descriptions:
        raise DataDisagreement("no node described usable data")
    nodes = sorted(descriptions)
    problems: list[str] = []
    kinds = Counter(_kind(descriptions[n]) for n in nodes)
    kind = max(kinds, key=lambda k: (kinds[k], k == _kind(descriptions[nodes[0]])))
    for n in nodes:
        if _kind(descriptions[n]) != kind:
            problems.append(f"{_who(n, descriptions[n])} holds {descriptions[n].get('format')} data, the others {kind}s")
    columns: tuple[str, ...] = ()
    if kind == "table":
        signatures = Counter(tuple(descriptions[n]["columns"]) for n in nodes if _kind(descriptions[n]) == kind)
        columns = max(signatures, key=lambda s: signatures[s])
        for n in nodes:
            if _kind(descriptions[n]) == kind and tuple(descriptions[n]["columns"]) != columns:
                mine = set(descriptions[n]["columns"])
                extra, missing = sorted(mine - set(columns)), sorted(set(columns) - mine)
                problems.append(
                    f"{_who(n, descriptions[n])} has different columns than the others: "
                    + "; ".join(
                        part
                        for part in (
                            f"extra {', '.join(extra)}" if extra else "",
                            f"missing {', '.join(missing)}" if missing else "",
                        )
                        if part
                    )
                )
    class_sets = {n: set(descriptions[n]["classes"]) for n in nodes}
    if len(nodes) > 1:
        for n in nodes:
            others = set().union(*(class_sets[m] for m in nodes if m != n))
            if not class_sets[n] & others:
                problems.append(
                    f"{_who(n, descriptions[n])} has classes {', '.join(sorted(class_sets[n]))}, which no other node has "
                    f"(the others: {', '.join(sorted(others))})"
                )
    if problems:
        raise DataDisagreement("nodes disagree about the data: " + " — ".join(problems))
    classes = tuple(sorted(set().union(*class_sets.values()), key=_class_order))
    examples = {n: int(descriptions[n]["examples"]) for n in nodes}
    if kind == "table":
        mean, std = federated_statistics(
            [descriptions[n]["feature_mean"] for n in nodes],
            [descriptions[n]["feature_var"] for n in nodes],
            [examples[n] for n in nodes],
        )
        conversion = Conversion(classes, (len(columns),), tuple(mean), tuple(std))
    else:
        conversion = Conversion(classes, _image_shape([descriptions[n]["image_shape"] for n in nodes]))
    return RunData(conversion, kind, columns, examples)


def _class_order(name: str) -> tuple[int, float, str]:
    """Numeric class names in numeric order (2 before 10), then text ones alphabetically."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def federated_statistics(
    means: Sequence[Sequence[float]], variances: Sequence[Sequence[float]], counts: Sequence[int]
) -> tuple[list[float], list[float]]:
    """Pooled mean and standard deviation from per-node means, variances and counts
    (the law of total variance); a constant feature gets std 1 (it is centred, not blown up)."""
    weights = np.asarray(counts, dtype=np.float64)[:, None]
    m, v = np.asarray(means, dtype=np.float64), np.asarray(variances, dtype=np.float64)
    total = weights.sum()
    mean = (weights * m).sum(axis=0) / total
    var = (weights * (v + (m - mean) ** 2)).sum(axis=0) / total
    std = np.sqrt(var)
    std[std < 1e-12] = 1.0
    return [float(x) for x in mean], [float(x) for x in std]


def _image_shape(shapes: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """Colour if any node has colour; the most common size (ties: the larger)."""
    channels = max(int(s[0]) for s in shapes)
    sizes = Counter((int(s[1]), int(s[2])) for s in shapes)
    height, width = max(sizes, key=lambda size: (sizes[size], size))
    return channels, height, width


def conversion_to_config(conversion: Conversion) -> dict[str, Any]:
    """ConfigRecord values (Flower rejects empty lists: tables only carry statistics)."""
    values: dict[str, Any] = {"classes": list(conversion.classes), "input-shape": list(conversion.input_shape)}
    if conversion.feature_mean:
        values["feature-mean"] = list(conversion.feature_mean)
        values["feature-std"] = list(conversion.feature_std)
    return values


def conversion_from_config(config: Mapping[str, Any]) -> Conversion:
    return Conversion(
        tuple(str(c) for c in config["classes"]),
        tuple(int(d) for d in config["input-shape"]),
        tuple(float(v) for v in config.get("feature-mean", ())),
        tuple(float(v) for v in config.get("feature-std", ())),
    )
