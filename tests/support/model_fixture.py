"""Trained checkpoints for the tests that use models (export, predict, lineage), made once a session.

A real federation run would take minutes on this shared machine for what these tests need:
a checkpoint with weights that mean something. So the same training function the ClientApps
run (`flowerbed_app.task.training.train`) trains a SimpleCNN centrally on a slice of Fashion-MNIST
for a few seconds, and the ServerApp's own writer (`checkpoints.save_checkpoint`) stores it in
a backend's model store, metadata included. ResNet-18 gets a few steps only: exports are
compared on outputs, which need non-trivial weights and batch-norm statistics, not accuracy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backend_fixture import Backend

from flowerbed_app.runtime import checkpoints
from flowerbed_app.task.fashion_mnist import DEFAULT_DIR, load_split
from flowerbed_app.task.networks import create_model
from flowerbed_app.task.training import evaluate, train


@dataclass(frozen=True)
class TrainedCheckpoint:
    model_id: str
    architecture: str
    module: Any  # the torch module the checkpoint was saved from, in eval mode
    accuracy: float


def train_checkpoint(store: Path, run_key: str, architecture: str, examples: int, epochs: int) -> TrainedCheckpoint:
    import torch

    torch.manual_seed(7)
    x_train, y_train = load_split(DEFAULT_DIR, "train")
    x_test, y_test = load_split(DEFAULT_DIR, "test")
    model = create_model(architecture)
    # One thread: on a busy 2-core machine two torch threads contend with every other process
    # and train 5-10× slower (measured: 1000 examples, 67 s with two threads, 11 s with one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(
            model, x_train[:examples], y_train[:examples], learning_rate=0.05, momentum=0.9, epochs=epochs, batch_size=32, seed=7
        )
        loss, accuracy = evaluate(model, x_test[:1000], y_test[:1000])
    finally:
        torch.set_num_threads(threads)
    meta = checkpoints.save_checkpoint(
        store,
        run_key,
        1,
        model.state_dict(),
        {"run_id": run_key, "model": architecture, "metrics": {"accuracy": accuracy, "loss": loss}, "config": {}},
    )
    model.eval()
    return TrainedCheckpoint(meta["model_id"], architecture, model, accuracy)


@pytest.fixture(scope="session")
def trained_cnn(backend: Backend) -> TrainedCheckpoint:
    """A SimpleCNN (about 65 % test accuracy: seconds of training) in the shared backend's model store."""
    return train_checkpoint(backend.data_dir / "models", "tiny-cnn", "cnn", examples=1500, epochs=1)


@pytest.fixture(scope="session")
def stepped_resnet18(backend: Backend) -> TrainedCheckpoint:
    """A ResNet-18 after a few SGD steps: weights and batch-norm statistics away from their initial values."""
    return train_checkpoint(backend.data_dir / "models", "stepped-resnet18", "resnet18", examples=64, epochs=1)


def png_of(pixels: np.ndarray) -> bytes:
    """A Fashion-MNIST image as the PNG file a user would upload."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
