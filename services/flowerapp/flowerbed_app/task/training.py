"""Local training and evaluation as plain functions over numpy arrays.

No Flower types here: the ClientApp (federated) and the ServerApp (centralized
evaluation) and the benchmarks all call the same code.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flowerbed_app.run_choices import LR_SCHEDULES

if TYPE_CHECKING:
    from flowerbed_app.run_settings import RunSettings

# Fashion-MNIST training-set mean and std of pixel intensity in [0, 1].
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530

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
    # DP-SGD only: Opacus' accountant history after this training (all steps so far).
    privacy_history: list[tuple[float, float, int]] | None = None
    # Wall-clock time the first optimizer step began (ClientApp start-up latency).
    first_step_at: float = 0.0


@dataclass(frozen=True)
class DpSgd:
    """Opacus DP-SGD settings plus the node's accountant history from earlier rounds."""

    noise_multiplier: float
    max_grad_norm: float
    history: list[tuple[float, float, int]] = field(default_factory=list)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images [N, H, W] or [N, C, H, W] → normalized float [N, C, H, W]; float
    feature vectors [N, F] (tables, already standardised by the federation) as they are."""
    if images.dtype != np.uint8:
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.sub_(PIXEL_MEAN).div_(PIXEL_STD)
    return x.unsqueeze(1) if x.ndim == 3 else x


def train(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    learning_rate: float,
    momentum: float,
    weight_decay: float = 0.0,
    dropout: float | None = None,
    clip_norm: float = 0.0,
    epochs: int,
    batch_size: int,
    seed: int,
    step_scope: StepScope | None = None,
    epoch_scope: Callable[[int], AbstractContextManager[object]] | None = None,
    proximal_mu: float = 0.0,
    global_params: list[torch.Tensor] | None = None,
    dp: DpSgd | None = None,
) -> TrainResult:
    """SGD with momentum over shuffled mini-batches; returns the epoch-mean metrics.

    proximal_mu > 0 adds FedProx's mu/2·||w − w_global||² to every batch loss
    (w_global: `global_params`, default the model's weights on entry). `dropout` sets the rate
    of every dropout layer for this training (None: the model's own rates). `clip_norm` > 0
    scales each batch's gradient down to that L2 norm at most: without dropout, SGD at the
    default rate sent a client holding 91% of one class to NaN within its first epoch
    (BENCHMARKS.md §3); DP-SGD clips per sample instead. `dp` trains with
    Opacus DP-SGD instead (per-sample clipping + noise); its proximal term would not
    reach the per-sample gradients, so the two are not combined.
    """
    started = time.perf_counter()
    x, y = to_tensor(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    generator = torch.Generator().manual_seed(seed)
    # Dropout draws from torch's global generator, which every fresh process seeds at
    # random: seed it too, or the same run config never trains the same model twice.
    torch.manual_seed(seed)
    if dropout is not None:
        for layer in model.modules():
            if isinstance(layer, nn.Dropout):
                layer.p = dropout
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if proximal_mu > 0 and dp is not None:
        raise ValueError("proximal_mu and dp cannot be combined")
    anchors: list[torch.Tensor] = []
    if proximal_mu > 0:
        source = global_params if global_params is not None else list(model.parameters())
        anchors = [p.detach().clone() for p in source]
    engine = None
    model.train()  # Opacus insists; callers often evaluated the received model just before
    if dp is not None:
        model, optimizer, loader, engine = _make_private(model, optimizer, x, y, batch_size, generator, dp)
    model.train()
    total_loss, correct, seen, steps = 0.0, 0, 0, 0
    first_step_at = 0.0
    for epoch in range(epochs):
        with epoch_scope(epoch) if epoch_scope else contextlib.nullcontext():
            if engine is not None:
                batches = iter(loader)
            else:
                order = torch.randperm(len(x), generator=generator)
                batches = ((x[order[i : i + batch_size]], y[order[i : i + batch_size]]) for i in range(0, len(x), batch_size))
            for step, (xb, yb) in enumerate(batches):
                first_step_at = first_step_at or time.time()
                with step_scope(epoch, step) if step_scope else contextlib.nullcontext() as scope:
                    optimizer.zero_grad(set_to_none=True)
                    out = model(xb)
                    loss = F.nll_loss(out, yb)
                    if anchors:
                        drift = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchors, strict=True))
                        loss = loss + (proximal_mu / 2.0) * drift
                    loss.backward()
                    if clip_norm > 0 and engine is None:
                        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                    optimizer.step()
                    loss_value = float(loss.detach())
                    if scope is not None and hasattr(scope, "set_attribute"):
                        scope.set_attribute("loss", loss_value)
                total_loss += loss_value * len(yb)
                correct += int((out.argmax(1) == yb).sum())
                seen += len(yb)
                steps += 1
    if engine is not None:
        model.to_standard_module()  # Opacus' hooks off the caller's module (it may train again)
    return TrainResult(
        loss=total_loss / max(seen, 1),
        accuracy=correct / max(seen, 1),
        num_examples=len(x),
        seconds=time.perf_counter() - started,
        steps=steps,
        privacy_history=list(engine.accountant.history) if engine is not None else None,
        first_step_at=first_step_at,
    )


def _make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    dp: DpSgd,
) -> tuple[Any, Any, Any, Any]:
    """Opacus' PrivacyEngine (RDP accountant resumed from `dp.history`) around model and optimizer."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    engine = PrivacyEngine(accountant="rdp")
    engine.accountant.history = list(dp.history)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=generator)
    private_model, private_optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=False,
        noise_generator=torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator))),
    )
    return private_model, private_optimizer, private_loader, engine


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 250) -> tuple[float, float]:
    """Mean NLL loss and accuracy; (0, 0) on an empty set.

    Under inference mode: without it autograd records a graph for every batch, which costs
    time and memory on the server's per-round evaluation of the whole test split.
    Convolutions run channels-last: SimpleCNN infers ~1.5× faster that way on these CPUs
    (training gains nothing, measured), and the server's evaluation of the test split sets
    the round cadence (BENCHMARKS.md #1). The weights go back to the default layout
    afterwards — outside inference mode, so they stay trainable — because serialization and
    aggregation expect contiguous tensors.
    """
    if len(images) == 0:
        return 0.0, 0.0
    model.eval()
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    total_loss, correct = 0.0, 0
    model.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                xb = to_tensor(images[start : start + batch_size])
                yb = y[start : start + batch_size]
                out = model(xb)
                total_loss += float(F.nll_loss(out, yb, reduction="sum"))
                correct += int((out.argmax(1) == yb).sum())
    finally:
        model.to(memory_format=torch.contiguous_format)
    return total_loss / len(images), correct / len(images)


def scheduled_learning_rate(base: float, schedule: str, server_round: int, num_rounds: int) -> float:
    """The clients' learning rate in `server_round` (1-based) of a run of `num_rounds`.

    "cosine" anneals from `base` in round 1 towards 0 after the last round (half a cosine
    over the run): large steps while the model is far from a minimum, small ones at the end,
    where a constant rate keeps the global model oscillating between rounds — most visibly
    on non-IID data, where each round's sampled nodes pull it their own way."""
    if schedule == "constant" or num_rounds <= 1:
        return base
    if schedule == "cosine":
        progress = (min(max(server_round, 1), num_rounds) - 1) / num_rounds
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr-schedule {schedule!r}; valid: {', '.join(LR_SCHEDULES)}")


def round_options(settings: RunSettings, server_round: int, node_key: int) -> dict[str, Any]:
    """`train`'s optimiser arguments for one node in one round, from the run's settings alone.

    The ClientApp and the in-process benchmark both train with these, so a local-training
    setting reaches the optimiser one way (the run config), never through the train message.
    `node_key` sets nodes' shuffling apart (client_inputs.seed_key)."""
    return {
        "learning_rate": scheduled_learning_rate(settings.learning_rate, settings.lr_schedule, server_round, settings.num_rounds),
        "momentum": settings.momentum,
        "weight_decay": settings.weight_decay,
        "dropout": settings.dropout,
        "clip_norm": settings.clip_norm,
        "epochs": settings.local_epochs,
        "batch_size": settings.batch_size,
        "seed": settings.seed * 100_003 + server_round * 1_009 + node_key,
        "proximal_mu": settings.proximal_mu if settings.strategy == "fedprox" else 0.0,
    }


def seeded_model(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Same seed → same initial weights on every machine (reproducible runs)."""
    torch.manual_seed(seed)
    return factory()
