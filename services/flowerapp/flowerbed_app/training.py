"""Local training and evaluation as plain functions over numpy arrays.

No Flower types here: the ClientApp (federated) and the ServerApp (centralized
evaluation) and the benchmarks all call the same code.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Fashion-MNIST training-set mean and std of pixel intensity in [0, 1].
_MEAN, _STD = 0.2860, 0.3530

StepScope = Callable[[int, int], AbstractContextManager[Any]]
"""Wraps one optimizer step (epoch, step); if it yields an object with
`set_attribute`, the step's loss is recorded on it. Used for tracing."""


@dataclass(frozen=True)
class TrainResult:
    loss: float
    accuracy: float
    num_examples: int
    seconds: float
    steps: int


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] → normalized float [N, 1, 28, 28]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x.sub_(_MEAN).div_(_STD).unsqueeze(1)


def train(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    learning_rate: float,
    momentum: float,
    epochs: int,
    batch_size: int,
    seed: int,
    step_scope: StepScope | None = None,
    epoch_scope: Callable[[int], AbstractContextManager[object]] | None = None,
) -> TrainResult:
    """SGD with momentum over shuffled mini-batches; returns the epoch-mean metrics."""
    started = time.perf_counter()
    x, y = to_tensor(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    model.train()
    total_loss, correct, seen, steps = 0.0, 0, 0, 0
    for epoch in range(epochs):
        with epoch_scope(epoch) if epoch_scope else contextlib.nullcontext():
            order = torch.randperm(len(x), generator=generator)
            for step, start in enumerate(range(0, len(x), batch_size)):
                with step_scope(epoch, step) if step_scope else contextlib.nullcontext() as scope:
                    batch = order[start : start + batch_size]
                    xb, yb = x[batch], y[batch]
                    optimizer.zero_grad(set_to_none=True)
                    out = model(xb)
                    loss = F.nll_loss(out, yb)
                    loss.backward()
                    optimizer.step()
                    loss_value = float(loss.detach())
                    if scope is not None and hasattr(scope, "set_attribute"):
                        scope.set_attribute("loss", loss_value)
                total_loss += loss_value * len(batch)
                correct += int((out.argmax(1) == yb).sum())
                seen += len(batch)
                steps += 1
    return TrainResult(
        loss=total_loss / max(seen, 1),
        accuracy=correct / max(seen, 1),
        num_examples=len(x),
        seconds=time.perf_counter() - started,
        steps=steps,
    )


@torch.inference_mode()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 250) -> tuple[float, float]:
    """Mean NLL loss and accuracy; (0, 0) on an empty set."""
    if len(images) == 0:
        return 0.0, 0.0
    model.eval()
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    total_loss, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        xb = to_tensor(images[start : start + batch_size])
        yb = y[start : start + batch_size]
        out = model(xb)
        total_loss += float(F.nll_loss(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    return total_loss / len(images), correct / len(images)


def seeded_model(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Same seed → same initial weights on every machine (reproducible runs)."""
    torch.manual_seed(seed)
    return factory()
