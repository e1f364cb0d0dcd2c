"""What works on a loaded model, by the form it came in.

- An ``nn.Module`` (timm, a factory): everything: forward hooks on any layer, gradients.
- A ``torch.export`` program (``.pt2``), loaded through ``torch.export.unflatten``: every
  explainer works: the module hierarchy and names of the exported model are kept, forward
  hooks on its submodules fire, and gradients flow to the input and to hooked activations.
  Its limits are the export's: input shapes must satisfy the exported ones (a fixed batch size
  and image size unless it was exported with dynamic dimensions), and ``train()``/``eval()`` do
  not change it (dropout and batch norm run as they were exported).
- A TorchScript module (``torch.jit.load``): accuracy, model-level metrics and input-level
  attributions (saliency, integrated gradients, …: gradients flow through it) work; layer
  explainers (attention, CAM, Grad-CAM, …) do not, because ScriptModules take no forward
  hooks. :func:`check_layer_access` turns that into one clear error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.export.unflatten import UnflattenedModule

from aubench.models.checkpoints import LoadReport

#: The attribute of a loaded model holding its :class:`ModelSource`.
SOURCE_ATTRIBUTE = "aubench_source"


class LayerAccessError(ValueError):
    """Layers of this model cannot be captured (a TorchScript module takes no forward hooks)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model loaded by :func:`aubench.models.load_model` came from: its spec, its form,
    its file (the TorchScript/.pt2 file, the factory's file, or None) and the checkpoint's
    :class:`~aubench.models.checkpoints.LoadReport` (None without a checkpoint)."""

    spec: str
    kind: Literal["timm", "factory", "torchscript", "export"]
    file: Path | None = None
    report: LoadReport | None = None


class ScriptedForward(nn.Module):
    """An ``nn.Module`` calling a TorchScript module, so that hooks on the whole model (input
    and output adaptation) work where the ScriptModule itself takes none."""

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.scripted = scripted

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scripted(images)


def source_of(model: nn.Module) -> ModelSource | None:
    """The :class:`ModelSource` of a model from ``load_model`` (also through
    :class:`ScriptedForward`), or None for a model built otherwise."""
    model = model.scripted if isinstance(model, ScriptedForward) else model
    return getattr(model, SOURCE_ATTRIBUTE, None)


def supports_layers(model: nn.Module) -> bool:
    """Whether forward hooks can capture ``model``'s layers (False for TorchScript)."""
    inner = model.scripted if isinstance(model, ScriptedForward) else model
    return not isinstance(inner, torch.jit.ScriptModule)


def check_layer_access(model: nn.Module) -> None:
    """Raise :class:`LayerAccessError` naming the file when ``model`` is TorchScript."""
    if supports_layers(model):
        return
    source = source_of(model)
    where = f" ({source.file})" if source is not None and source.file is not None else ""
    raise LayerAccessError(
        f"the model{where} is TorchScript, whose modules take no forward hooks, so layer "
        "explainers (attention, CAM, Grad-CAM, …) cannot read its layers; accuracy, model-level "
        "metrics and input-level attributions (saliency, integrated gradients, …) work. For "
        "layer maps, export it with torch.export to a .pt2 file (torch.export.save) or load it "
        "by its factory (FILE.py:FACTORY or package.module:FACTORY) with --checkpoint"
    )


def describe_support(model: nn.Module) -> str:
    """One paragraph saying which of aubench's explainers and metrics work on ``model``."""
    source = source_of(model)
    where = f" ({source.file})" if source is not None and source.file is not None else ""
    if not supports_layers(model):
        return (
            f"TorchScript module{where}: accuracy, model-level metrics and input-level "
            "attributions (saliency, integrated gradients, …) work; layer explainers "
            "(attention, CAM, Grad-CAM, …) do not (TorchScript takes no forward hooks): export "
            "it to a .pt2 file or load it by its factory for layer maps"
        )
    if isinstance(model, UnflattenedModule):
        return (
            f"torch.export program{where}: every explainer and metric works (forward hooks fire "
            "on its submodules, named as in the exported model; gradients flow). Inputs must "
            "match the exported shapes (a fixed batch size and image size unless exported with "
            "dynamic dimensions); train()/eval() do not change it (dropout and batch norm run "
            "as exported)"
        )
    return (
        f"{type(model).__name__}{where}: every explainer and metric works (forward hooks on "
        "any layer, gradients)"
    )
