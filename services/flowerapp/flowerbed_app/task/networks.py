"""The models a run can train, built by name.

All return log-probabilities, so training and evaluation code (NLL loss) never
depends on which model was chosen. The image models take the run's input shape
(channels × height × width: 1×28×28 for Fashion-MNIST, whatever a site's image
folders agree on otherwise); the MLP takes feature vectors (tables).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowerbed_app.task.fashion_mnist import SHAPE


class SimpleCNN(nn.Module):
    """Two 3×3 convolutions, max-pool, dropout, two dense layers (the seed's model)."""

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        channels, height, width = input_shape
        if height < 6 or width < 6:
            raise ValueError(f"cnn needs images of at least 6×6 pixels, got {height}×{width}")
        self.conv1 = nn.Conv2d(channels, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * ((height - 4) // 2) * ((width - 4) // 2), 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


class BasicBlock(nn.Module):
    """ResNet's two-convolution residual block (He et al., 2016)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlock × [2, 2, 2, 2]) adapted to small images (1×28×28, 3×32×32).

    The ImageNet stem (7×7 stride-2 conv + max-pool) would shrink 28×28 to 7×7 before
    the first block; a 3×3 stride-1 stem keeps the spatial detail small images need,
    as in the common CIFAR adaptation.
    """

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers: list[nn.Module] = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for block_stride in (stride, 1):
                layers.append(BasicBlock(in_planes, planes, block_stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return F.log_softmax(self.fc(out), dim=1)


class MLP(nn.Module):
    """Two hidden layers for tables: sized from the number of features and classes."""

    def __init__(self, num_classes: int = 2, input_shape: tuple[int, ...] = (30,)) -> None:
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"mlp trains on feature vectors (tables), not on inputs of shape {input_shape}")
        hidden = max(16, min(256, 2 * input_shape[0]))
        self.net = nn.Sequential(
            nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.net(x), dim=1)


MODEL_FACTORIES: dict[str, type[nn.Module]] = {"cnn": SimpleCNN, "resnet18": ResNet18, "mlp": MLP}
FASHION_MNIST_SHAPE = SHAPE


def create_model(name: str, num_classes: int = 10, input_shape: tuple[int, ...] = FASHION_MNIST_SHAPE) -> nn.Module:
    """Build a fresh model; an unknown name lists the valid ones."""
    try:
        factory = MODEL_FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODEL_FACTORIES)}") from None
    return factory(num_classes, tuple(input_shape))
