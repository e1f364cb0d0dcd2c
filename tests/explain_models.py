"""Small hand-built models and helpers shared by the tests/test_explain_*.py modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread per test module: the 2 cores are shared, and 2 threads thrash (10×
    slower small ops) when another process holds a core. Import it into a test module to use."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HandNet(nn.Module):
    """1×1 conv (A0 = x0, A1 = x1, A2 = x0 + x1) → GAP → fc with fixed weights.

    ``y_c = b_c + Σ_k W_ck mean_ij A_k``; W = [[1, −2, 0.5], [−1, 1, 2]], b = [0.5, −1].
    No ReLU, so activations can be negative.
    """

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(2, 3, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.features.weight.copy_(
                torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[..., None, None]
            )
            self.fc.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


def hand_inputs() -> torch.Tensor:
    """Two (2, 2, 2) inputs: sample 0 x0 = [[1,2],[3,4]], x1 = [[0,1],[−1,2]];
    sample 1 x0 = [[0,1],[2,0]], x1 = [[1,1],[0,−2]]."""
    return torch.tensor(
        [
            [[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]],
            [[[0.0, 1.0], [2.0, 0.0]], [[1.0, 1.0], [0.0, -2.0]]],
        ]
    )


class TinyCNN(nn.Module):
    """conv3×3(3→8) → ReLU → conv3×3 stride 2 (8→6) → ReLU ("act") → GAP → fc(6→3).

    Six channels at the explained layer keep Score-CAM/Ablation-CAM at B·6 forward passes.
    """

    num_classes = 3

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv2(self.act1(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre, backward and backward-pre hooks on every module of ``model``."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )
