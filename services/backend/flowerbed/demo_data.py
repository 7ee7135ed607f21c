"""`flowerbed demo-data`: site directories that look like what real sites bring.

Two kinds, one directory per site, each ready for `flowerbed up --node-data DIR`:

- `breast-cancer/site-N/records.csv`: scikit-learn's bundled Wisconsin breast-cancer
  table (569 patients, 30 features, `label` = benign | malignant), split unevenly and
  with skewed labels, as hospitals of different sizes and case mixes would hold it;
- `fashion-mnist/site-N/<class>/<i>.png`: Fashion-MNIST images (Debian's
  `dataset-fashion-mnist`) as PNG files in one folder per class.

Seeded: the same arguments write the same files. Pooling the sites' tables gives the
whole data set back (bench/node_data.py trains on it centrally for comparison).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)


def breast_cancer_table() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features [569, 30], label names, feature names) from scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError:  # pragma: no cover - make setup installs it (requirements-dev.txt)
        raise RuntimeError("the breast-cancer demo data comes from scikit-learn: run `make setup`") from None
    data = load_breast_cancer()
    labels = np.asarray(data.target_names)[data.target]
    return np.asarray(data.data), labels, [str(n) for n in data.feature_names]


def site_shares(sites: int, label: int) -> np.ndarray:
    """Each site's share of one class: benign (0) falls steeply from site 1 on, malignant (1)
    is spread evenly — so sites differ in size and in case mix."""
    ranks = np.arange(sites)
    weights = (sites - ranks) / (ranks + 1) if label == 0 else np.ones(sites)
    return weights / weights.sum()


def write_breast_cancer(out: Path, sites: int, seed: int = 0) -> list[Path]:
    import pandas as pd

    x, labels, columns = breast_cancer_table()
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(sites)]
    for label, name in enumerate(("benign", "malignant")):
        idx = rng.permutation(np.flatnonzero(labels == name))
        bounds = np.round(np.cumsum(site_shares(sites, label)) * len(idx)).astype(int)
        for site, chunk in enumerate(np.split(idx, bounds[:-1])):
            parts[site].extend(chunk.tolist())
    written = []
    for site, rows in enumerate(parts, start=1):
        rows = sorted(rows, key=lambda _: rng.random())
        frame = pd.DataFrame(x[rows], columns=columns)
        frame["label"] = labels[rows]
        directory = out / "breast-cancer" / f"site-{site}"
        directory.mkdir(parents=True, exist_ok=True)
        frame.to_csv(directory / "records.csv", index=False)
        written.append(directory)
    return written


def write_fashion_mnist(out: Path, sites: int, per_site: int, seed: int = 0, source: str | None = None) -> list[Path]:
    from PIL import Image

    from flowerbed_app.task.fashion_mnist import DEFAULT_DIR, load_split

    images, labels = load_split(source or DEFAULT_DIR, "train")
    order = np.random.default_rng(seed).permutation(len(labels))
    written = []
    for site in range(sites):
        directory = out / "fashion-mnist" / f"site-{site + 1}"
        for i in order[site * per_site : (site + 1) * per_site]:
            class_dir = directory / FASHION_MNIST_CLASSES[int(labels[i])]
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(class_dir / f"{int(i):05d}.png")
        written.append(directory)
    return written


def write_demo_data(out: Path, sites: int, images_per_site: int = 300, seed: int = 0) -> dict[str, list[Path]]:
    if sites < 1:
        raise ValueError("--sites must be at least 1")
    return {
        "breast-cancer": write_breast_cancer(out, sites, seed),
        "fashion-mnist": write_fashion_mnist(out, sites, images_per_site, seed),
    }
