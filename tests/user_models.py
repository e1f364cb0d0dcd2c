"""Hand-written user models (not timm) for the tests/test_models_*.py modules: what a researcher
brings to aubench, loaded by its factory as ``tests/user_models.py:FACTORY``."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

#: GreyNet's output order (FER2013's), unlike aubench's canonical one.
USER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class GreyNet(nn.Module):
    """Grey 48×48 inputs with values in [−1, 1]; three convs named ``layers.conv1`` …
    ``layers.conv3`` (48 → 48 → 24 → 12 px), global average pooling, a linear head over
    :data:`USER_CLASSES`."""

    def __init__(self, num_classes: int = len(USER_CLASSES)):
        super().__init__()
        self.layers = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 8, 3, padding=1),
                act1=nn.ReLU(),
                conv2=nn.Conv2d(8, 16, 3, stride=2, padding=1),
                act2=nn.ReLU(),
                conv3=nn.Conv2d(16, 16, 3, stride=2, padding=1),
                act3=nn.ReLU(),
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(x)), 1))


def make_grey_net() -> GreyNet:
    """The factory of ``tests/user_models.py:make_grey_net`` (random weights, seed 0)."""
    torch.manual_seed(0)
    return GreyNet()


def save_forms(model: GreyNet, root: Path) -> dict[str, Path]:
    """``model`` saved as a state dict (``state``), a TorchScript file without a telling suffix
    (``script``: recognised by content) and a .pt2 program exported with a dynamic batch
    dimension (``export``), in folder ``root``."""
    paths = {"state": root / "grey.pth", "script": root / "grey.bin", "export": root / "grey.pt2"}
    torch.save(model.state_dict(), paths["state"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.save(torch.jit.script(model), paths["script"])
    example = (torch.zeros(2, 1, 48, 48),)
    batch = {"x": {0: torch.export.Dim("batch")}}
    torch.export.save(torch.export.export(model, example, dynamic_shapes=batch), paths["export"])
    return paths


class OneHotNet(nn.Module):
    """Scores one-hot at position ``hot`` of its outputs for every image (``probabilities``:
    softmax of 5 × that one-hot); a grey 1×1 conv keeps the input in the graph."""

    def __init__(self, hot: int, width: int = len(USER_CLASSES), probabilities: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.register_buffer("hot", nn.functional.one_hot(torch.tensor(hot), width).float())
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.hot.expand(x.shape[0], -1) + 0 * self.conv(x).mean((1, 2, 3))[:, None]
        return (5 * scores).softmax(1) if self.probabilities else scores


class InputProbe(nn.Module):
    """Records the input it gets (``seen``) and scores zeros over :data:`USER_CLASSES`."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x.new_zeros(x.shape[0], len(USER_CLASSES))


def broken_factory() -> nn.Module:
    """A factory that raises."""
    raise RuntimeError("weights server unreachable")


def not_a_module() -> dict:
    """A factory that returns no module."""
    return {"layers": 3}
