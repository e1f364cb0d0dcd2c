"""The explainer protocol, the registry of map producers, and target resolution.

Every producer is called the same way::

    maps = explainer(model, images, targets, layers)     # {layer: (B, H', W') raw float maps}

- ``images``: (B, 3, H, W) normalised input batch on the model's device.
- ``targets``: the class explained for each sample — the ground-truth labels (the paper's
  protocol: pass the batch's ``label``), ``"pred"`` (the model's argmax), one ``int`` for every
  sample, or a (B,) sequence/tensor of class indices. Targets are logits, never probabilities.
- ``layers``: layer specs (:func:`aubench.models.resolve_layers`: module names, ``feature:N``,
  ``stage:N``); ``None`` means ``stage:5`` (the paper's CAM layer).
- Result: one raw map per requested layer at that layer's resolution, keyed by module name;
  input-level attributions (captum Saliency, IG, …) return one map at input resolution under the
  pseudo-layer :data:`INPUT`. Maps are detached float32, unnormalised: ReLU, resizing and min-max
  are separate named steps (:mod:`aubench.explain.postprocess`).

Class attributes drive the defaults downstream: ``relu`` (the method's definition ends with a
ReLU, applied by :func:`~aubench.explain.postprocess.default_postprocess`), ``level``
(``"layer"`` or ``"input"``) and ``is_control`` (a baseline map, not an explanation).
"""

from __future__ import annotations

import difflib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar, TypeAlias

import torch
from torch import nn

#: Pseudo-layer name of input-resolution attributions.
INPUT = "input"
#: Layers explained when none are given: the paper's CAM layer.
DEFAULT_LAYERS = ("stage:5",)

Targets: TypeAlias = int | str | Sequence[int] | torch.Tensor
Layers: TypeAlias = str | Sequence[str | int] | None


class Explainer(ABC):
    """A map producer: ``explainer(model, images, targets, layers) -> {layer: (B, H', W')}``."""

    #: Registry name (adapters set it per instance).
    name: str = ""
    #: Whether the method's definition ends with a ReLU (the default post-processing applies it).
    relu: bool = False
    #: ``"layer"``: one map per requested layer; ``"input"``: one map under :data:`INPUT`.
    level: str = "layer"
    #: Baseline maps that ignore the model's evidence (random, centre prior, generic face).
    is_control: ClassVar[bool] = False

    @abstractmethod
    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: Targets,
        layers: Layers = None,
        *,
        landmarks: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Raw maps {layer: (B, H', W') float32} for ``targets`` (see the module doc).

        ``landmarks`` (B, 68, 2) in the images' pixels is used by the generic-face control only.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


#: Registry: canonical name → factory taking the explainer's options.
EXPLAINERS: dict[str, Callable[..., Explainer]] = {}


def _key(name: str) -> str:
    """Lookup key: lower case without spaces, ``-`` and ``_`` (``Grad-CAM`` → ``gradcam``)."""
    return re.sub(r"[\s_\-]", "", name.lower())


def register(name: str, factory: Callable[..., Explainer] | None = None) -> Callable:
    """Register ``factory`` (a class or callable returning an :class:`Explainer`) as ``name``.

    Usable as a class decorator (``@register("gradcam")``) or directly with a factory.
    """

    def add(target: Callable[..., Explainer]) -> Callable[..., Explainer]:
        taken = {_key(known) for known in EXPLAINERS}
        if _key(name) in taken:
            raise ValueError(f"explainer {name!r} is already registered")
        EXPLAINERS[name] = target
        return target

    return add if factory is None else add(factory)


def get_explainer(name: str, **options) -> Explainer:
    """Build the explainer registered as ``name`` (case, spaces, ``-`` and ``_`` ignored).

    Raises ``ValueError`` with the closest registered names for an unknown ``name``.
    """
    by_key = {_key(known): known for known in EXPLAINERS}
    known = by_key.get(_key(name))
    if known is None:
        close = difflib.get_close_matches(_key(name), list(by_key), n=3, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(by_key[c] for c in close)}?"
            if close
            else f"; known: {', '.join(EXPLAINERS)}"
        )
        raise ValueError(f"unknown explainer {name!r}{hint}")
    return EXPLAINERS[known](**options)


def resolve_targets(
    targets: Targets,
    batch_size: int,
    num_classes: int | None,
    logits: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The (B,) int64 class index explained for each sample.

    Args:
        targets: ``"pred"``, an ``int``, or a (B,) sequence/tensor of class indices (e.g. the
            ground-truth labels).
        batch_size: B.
        num_classes: K, to check the range (None: not checked).
        logits: (B, K) model outputs; required for ``"pred"``.
        device: where the result lives (default: the logits' device, else CPU).

    Raises ``ValueError`` for a wrong kind, shape or range.
    """
    if device is None:
        device = logits.device if logits is not None else "cpu"
    if isinstance(targets, str):
        if targets != "pred":
            raise ValueError(
                f"targets={targets!r}: pass the ground-truth labels (the paper's protocol), "
                "'pred', one class index, or a (B,) sequence of indices"
            )
        if logits is None:
            raise ValueError("targets='pred' needs the model's logits")
        return logits.detach().argmax(1).to(device)
    if targets is None:
        raise ValueError(
            "targets=None: pass the ground-truth labels (the paper's protocol) or 'pred'"
        )
    if isinstance(targets, bool):
        raise ValueError(f"targets={targets!r} is not a class index")
    if isinstance(targets, int):
        resolved = torch.full((batch_size,), targets, dtype=torch.long)
    else:
        resolved = torch.as_tensor(targets)
        if resolved.is_floating_point() or resolved.is_complex() or resolved.dtype == torch.bool:
            raise ValueError(f"targets must be integer class indices, got dtype {resolved.dtype}")
        if resolved.shape != (batch_size,):
            raise ValueError(
                f"targets must have shape ({batch_size},) (one class per image), "
                f"got {tuple(resolved.shape)}"
            )
        resolved = resolved.long()
    upper = num_classes if num_classes is not None else torch.iinfo(torch.long).max
    outside = (resolved < 0) | (resolved >= upper)
    if outside.any():
        classes = f"0 … {num_classes - 1}" if num_classes is not None else "≥ 0"
        raise ValueError(f"target class {int(resolved[outside][0])} is out of range ({classes})")
    return resolved.to(device)


def model_targets(model: nn.Module, images: torch.Tensor, targets: Targets) -> torch.Tensor:
    """:func:`resolve_targets` for explainers that run the model themselves (the adapters).

    Runs one gradient-free forward pass only when needed: for ``"pred"``, or to learn the number
    of classes when the model has no integer ``num_classes`` attribute (timm models have one).
    """
    num_classes = getattr(model, "num_classes", None)
    logits = None
    if isinstance(targets, str) or not isinstance(num_classes, int):
        with torch.no_grad():
            logits = model(images)
        num_classes = logits.shape[1]
    return resolve_targets(targets, images.shape[0], num_classes, logits, images.device)


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``model`` in eval mode; restore each module's own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def check_images(images: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a floating (B, C, H, W) batch."""
    if not torch.is_tensor(images) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got {shape}")
