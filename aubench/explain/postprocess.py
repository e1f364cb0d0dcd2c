"""Normalisation and resizing of raw maps, as separate named steps recorded with each result.

Steps act on (B, H, W) float maps, per map, with no loop over samples:

- ``relu``: ``max(M, 0)``;
- ``resize(size, mode="bilinear", align_corners=False, antialias=False, keep_range=False)``:
  ``F.interpolate`` to ``size`` = (H, W) (``align_corners`` only for the linear modes; the
  paper's attention maps use ``align_corners=True, antialias=True``); ``keep_range`` then clamps
  each map to its own pre-resize [min, max] (the reference code's attention resize);
- ``minmax``: ``(M − min M) / (max M − min M)`` per map; a constant map becomes all zeros;
- ``clamp(low, high)``: ``min(max(M, low), high)``;
- ``shift-negative``: ``M − min M`` for the maps whose minimum is negative, the others unchanged.

A :class:`Postprocess` chains steps and describes itself as a string
(``relu > resize(112x112, bilinear, align_corners=False) > minmax``) and as a dict, so each
result can carry exactly how its maps were produced. The default (DESIGN.md): ReLU where the
method defines one, bilinear ``align_corners=False`` to the heatmap size, min-max.
pytorch-grad-cam's output equals ``relu > resize(input size) > minmax`` of the raw map up to
its 1e-7 epsilons (it min-maxes, resizes with cv2 bilinear, and min-maxes again; min-max
commutes with the linear resize).

:func:`protocol_postprocess` picks the steps of an evaluation protocol (:data:`PROTOCOLS`):
``aubench`` is the default above; ``belharbi2024`` is the reference code's
(shared/reference/paper-evaluation-protocol.md items 2–3; ``dlib/cams/core.py:105-109``,
``dlib/learning/inference_wsol.py:529-536,644-674`` in sbelharbi/interpretable-fer-aus):

- CAMs and every other map: ``[relu >] minmax > resize(size, bilinear, align_corners=False) >
  clamp(0, 1)`` — min-max at the layer's resolution, before the resize. The reference's second,
  same-size resize of the CAM (``align_corners=True, antialias=True``) and its clamp to the
  CAM's own range are identities, so they are not steps.
- Attention maps (:class:`~aubench.explain.attention.Attention`, ATT-COS): ``shift-negative >
  resize(size, bilinear, align_corners=True, antialias=True, keep_range=True)``, no min-max. The
  reference resizes, clamps to the pre-resize range, then adds −min when the pre-resize minimum
  is negative; the resize's weights sum to 1, so shifting first is the same map (to rounding).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aubench.explain.attention import Attention
from aubench.explain.base import Explainer

_LINEAR_MODES = ("linear", "bilinear", "bicubic", "trilinear")

#: Evaluation protocols :func:`protocol_postprocess` knows: aubench's own and the reference's.
PROTOCOLS = ("aubench", "belharbi2024")


class Step(ABC):
    """One named post-processing step on (B, H, W) maps."""

    name: str

    @abstractmethod
    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """The processed maps (B, H', W')."""

    def params(self) -> dict:
        """The step's parameters (JSON-serialisable)."""
        return {}

    def describe(self) -> str:
        """``name`` or ``name(param, …)``."""
        params = self.params()
        if not params:
            return self.name
        return f"{self.name}({', '.join(_format(k, v) for k, v in params.items())})"


def _format(key: str, value) -> str:
    if key == "size":
        return "x".join(str(v) for v in value)
    if key == "mode":
        return str(value)
    return f"{key}={value}"


@dataclass(frozen=True)
class ReLU(Step):
    """``max(M, 0)``."""

    name = "relu"

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.clamp_min(0)


@dataclass(frozen=True)
class Resize(Step):
    """``F.interpolate`` of each map to ``size`` = (H, W); with ``keep_range``, each resized map
    is then clamped to its own pre-resize [min, max]."""

    size: tuple[int, int]
    mode: str = "bilinear"
    align_corners: bool = False
    antialias: bool = False
    keep_range: bool = False
    name = "resize"

    def __post_init__(self) -> None:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"resize size must be (H, W) ≥ 1, got {self.size!r}")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        _check_maps(maps)
        linear = self.mode in _LINEAR_MODES
        out = F.interpolate(
            maps[:, None],
            size=self.size,
            mode=self.mode,
            align_corners=self.align_corners if linear else None,
            antialias=self.antialias,
        )[:, 0]
        if self.keep_range:
            flat = maps.flatten(1)
            out = out.clamp(flat.amin(1)[:, None, None], flat.amax(1)[:, None, None])
        return out

    def params(self) -> dict:
        params = {"size": list(self.size), "mode": self.mode}
        if self.mode in _LINEAR_MODES:
            params["align_corners"] = self.align_corners
        if self.antialias:
            params["antialias"] = True
        if self.keep_range:
            params["keep_range"] = True
        return params


@dataclass(frozen=True)
class MinMax(Step):
    """``(M − min) / (max − min)`` per map; constant maps → zeros."""

    name = "minmax"

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        _check_maps(maps)
        flat = maps.flatten(1)
        low = flat.amin(1)[:, None, None]
        span = flat.amax(1)[:, None, None] - low
        return (maps - low) / torch.where(span > 0, span, 1.0)


@dataclass(frozen=True)
class Clamp(Step):
    """``min(max(M, low), high)``."""

    low: float = 0.0
    high: float = 1.0
    name = "clamp"

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        _check_maps(maps)
        return maps.clamp(self.low, self.high)

    def params(self) -> dict:
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class ShiftNegative(Step):
    """``M − min M`` for each map whose minimum is negative; maps ≥ 0 are left as they are."""

    name = "shift-negative"

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        _check_maps(maps)
        return maps - maps.flatten(1).amin(1).clamp_max(0)[:, None, None]


def relu() -> ReLU:
    """The ReLU step."""
    return ReLU()


def resize(
    size: int | tuple[int, int],
    mode: str = "bilinear",
    align_corners: bool = False,
    antialias: bool = False,
    keep_range: bool = False,
) -> Resize:
    """The resize step to ``size`` (an int for a square)."""
    return Resize(size, mode, align_corners, antialias, keep_range)


def minmax() -> MinMax:
    """The per-map min-max step."""
    return MinMax()


def clamp(low: float = 0.0, high: float = 1.0) -> Clamp:
    """The clamp step to [``low``, ``high``]."""
    return Clamp(float(low), float(high))


def shift_negative() -> ShiftNegative:
    """The step shifting maps with a negative minimum to a minimum of 0."""
    return ShiftNegative()


@dataclass(frozen=True)
class Postprocess:
    """A chain of steps: ``Postprocess([relu(), resize(112), minmax()])(maps)``."""

    steps: Sequence[Step] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            maps = step(maps)
        return maps

    def describe(self) -> str:
        """E.g. ``relu > resize(112x112, bilinear, align_corners=False) > minmax``; ``none``."""
        return " > ".join(step.describe() for step in self.steps) or "none"

    def to_dict(self) -> dict:
        """``{"steps": [{"name": ..., **params}, ...]}``."""
        return {"steps": [{"name": step.name, **step.params()} for step in self.steps]}


def default_postprocess(explainer: Explainer | None, size: int | tuple[int, int]) -> Postprocess:
    """DESIGN.md's default: ReLU if ``explainer.relu``, bilinear resize to ``size``, min-max
    (``explainer`` None: maps given as they are, precomputed: no ReLU)."""
    steps = [relu()] if explainer is not None and explainer.relu else []
    return Postprocess([*steps, resize(size), minmax()])


def protocol_postprocess(
    explainer: Explainer | None, size: int | tuple[int, int], protocol: str = "aubench"
) -> Postprocess:
    """The steps of evaluation ``protocol`` (:data:`PROTOCOLS`) for ``explainer``'s maps
    (None: maps given as they are, precomputed, post-processed as a CAM without ReLU).

    ``"aubench"``: :func:`default_postprocess`. ``"belharbi2024"``: the reference code's (module
    doc) — attention maps shifted when negative, then resized with the reference's
    ``align_corners=True, antialias=True`` and no min-max; every other map ReLU'd where the
    method defines it, min-maxed at its own resolution, resized (``align_corners=False``) and
    clamped to [0, 1]. Raises ``ValueError`` for another protocol.
    """
    if protocol == "aubench":
        return default_postprocess(explainer, size)
    if protocol == "belharbi2024":
        if isinstance(explainer, Attention):
            resized = resize(size, align_corners=True, antialias=True, keep_range=True)
            return Postprocess([shift_negative(), resized])
        steps = [relu()] if explainer is not None and explainer.relu else []
        return Postprocess([*steps, minmax(), resize(size), clamp(0.0, 1.0)])
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def _check_maps(maps: torch.Tensor) -> None:
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, H, W), got {tuple(maps.shape)}")
