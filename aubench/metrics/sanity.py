"""Sanity check: cascading model-parameter randomisation (Adebayo et al. 2018).

A map that stays the same while the model's weights are destroyed, from the logits down, does
not explain the model. Here the layers are re-initialised cumulatively from the top, the maps
recomputed after each one, and each compared with the original maps by Spearman's ρ.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from aubench.metrics.base import check_valid, register
from aubench.metrics.correlation import spearman

__all__ = ["Randomisation", "cascading_randomisation", "randomisable_layers"]

MapFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class Randomisation(NamedTuple):
    """``layers``: names randomised, top first; ``similarity`` (D, B): row d is Spearman's ρ
    between the original maps and the maps with layers[0..d] randomised."""

    layers: tuple[str, ...]
    similarity: torch.Tensor


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters and a ``reset_parameters()``, in registration
    order (taken as depth: input first)."""
    return [
        name
        for name, module in model.named_modules()
        if hasattr(module, "reset_parameters") and next(module.parameters(False), None) is not None
    ]


@register(
    "cascading_randomisation",
    higher_is_better=False,
    range=(-1.0, 1.0),
    category="sanity",
    kind="sanity",
    column_prefix="sanity_spearman",
)
def cascading_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    explain: MapFunction,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    absolute: bool = False,
) -> Randomisation:
    """Spearman similarity of the maps after randomising the model cumulatively from the top.

    The model is deep-copied (the caller's is untouched) and, for d = 1..D, the modules
    ``layers[:d]`` are re-initialised with their ``reset_parameters()`` (BatchNorm also resets
    its running statistics) under ``torch.manual_seed(seed + d)`` inside a forked RNG (global
    state is left alone); then ``explain(randomised, images, targets)`` is compared with the
    original maps. The original self-similarity (1) is not a row (Quantus's MPRT averages it in,
    anchors-and-metrics.md §2.10).

    Args:
        model: the model, in the mode the maps should be computed in (usually ``eval()``).
        images: (B, C, H, W) inputs.
        targets: (B,) explained classes.
        explain: ``(model, images, targets) -> maps (B, H, W)`` (any resolution, any scale;
            ρ is invariant to increasing transforms).
        valid: (B,) bool, None for all.
        layers: module names to randomise, top (logits) first; default
            :func:`randomisable_layers` reversed.
        seed: base seed of the re-initialisations.
        absolute: compare ``|map|`` (Adebayo et al. report both).

    Returns:
        :class:`Randomisation` with ``similarity`` (D, B) in [−1, 1]: low is good (the maps
        changed); NaN for invalid samples and constant maps (e.g. a ReLU'd map gone all-zero).
    """
    working = copy.deepcopy(model)
    names = list(reversed(randomisable_layers(working))) if layers is None else list(layers)
    modules = dict(working.named_modules())
    unknown = [n for n in names if n not in modules or not hasattr(modules[n], "reset_parameters")]
    if unknown:
        raise ValueError(f"layers {unknown} are not modules of the model with reset_parameters()")
    flags = check_valid(valid, images.shape[0], images.device)

    def compare(maps: torch.Tensor) -> torch.Tensor:
        maps = maps.abs() if absolute else maps
        return spearman(maps, original, flags)

    original = explain(working, images, targets).detach()
    original = original.abs() if absolute else original
    devices = [images.device] if images.device.type == "cuda" else []
    rows = []
    for depth, name in enumerate(names, start=1):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + depth)
            modules[name].reset_parameters()
        rows.append(compare(explain(working, images, targets).detach()))
    similarity = torch.stack(rows) if rows else original.new_empty(0, images.shape[0])
    return Randomisation(tuple(names), similarity)
