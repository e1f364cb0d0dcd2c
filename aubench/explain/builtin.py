"""Built-in maps: the explainers of the interpretable-by-design methods.

These models (:mod:`aubench.models.methods`) compute their own map in the forward pass and hand
it to a :class:`~aubench.models.methods.MapTap` (``fc.cams``, ``head.cams``, ``attention``); the
explainer reads the tap's output in the single pass (:func:`~aubench.explain.engine.layer_maps`),
so the map costs the model's forward and nothing more. Give the tap as the layer
(``Method.explained_by`` in :mod:`aubench.train.model` names it):

=============  ======================================================================  ========
explainer      map of target t (B, h, w), raw                                          pass
=============  ======================================================================  ========
``wildcat``    class map ``M_t = (1/M) Σ_m conv(F)_{t,m} + b_t``                        shared
``prm``        class map ``M_t = conv₁ₓ₁(F)_t`` (before the peak pooling)             shared
``tscam``      ``A ⊙ M_t``, A the class-token attention summed over blocks            shared
``apvit``      the class-agnostic attention ``Σ_c |X_c|`` (the same for every t)      shared
``acol``       ``max(minmax(M^A_t), minmax(M^B_t))``, B on features erased for t      own
``adl-quirk``  ``Σ_k W_tk A_k`` at any layer with the classifier's channels           shared
=============  ======================================================================  ========

``acol`` runs its own forward (one, like CAM's pass), because branch B depends on the class
explained: the reference passes the ground-truth label to the forward at evaluation and erases
for it. ADL and CutMix models keep the GAP + linear head, so ``cam`` is their explainer;
``adl-quirk`` is the reference's ADL CAM, read at a block that no longer feeds the pool (see
``adl_quirk`` in :mod:`aubench.train.model`). None ends with a ReLU: the reference min-max
normalises these maps as they are.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from aubench.explain.base import Explainer, Layers, Targets, register, resolve_targets
from aubench.explain.cam import CAM
from aubench.explain.engine import LayerMethod, LayerPass, layer_maps
from aubench.models.methods import AcolHead, MapTap, find_module, tap_names


class BuiltinMap(LayerMethod):
    """The target's channel of a method's map, read at its :class:`MapTap` layer."""

    needs_gradients = False
    #: The map is one for all classes (channel 0 whatever the target).
    class_agnostic: ClassVar[bool] = False

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        if not isinstance(p.model.get_submodule(p.layer), MapTap):
            taps = ", ".join(tap_names(p.model)) or "none: not a model of this method"
            raise ValueError(
                f"{self.name} reads the map its model computes; explain layer {p.layer!r} "
                f"is not its map tap (taps of {type(p.model).__name__}: {taps})"
            )
        maps = p.activations
        if self.class_agnostic:
            return maps[:, 0]
        if maps.shape[1] != p.logits.shape[1]:
            raise ValueError(
                f"{self.name}: layer {p.layer!r} holds {maps.shape[1]} maps, not one per class "
                f"({p.logits.shape[1]}); is the model a {self.name} model?"
            )
        return maps[torch.arange(maps.shape[0], device=maps.device), p.targets]


@register("wildcat")
class WildcatMap(BuiltinMap):
    """WILDCAT's class map of the target (the modality mean, before the top-k pooling)."""

    name = "wildcat"


@register("prm")
class PRMMap(BuiltinMap):
    """PRM's class map of the target (before the local-max and average pooling)."""

    name = "prm"


@register("tscam")
class TSCAMMap(BuiltinMap):
    """TS-CAM: the class-token attention summed over blocks ⊙ the target's class map."""

    name = "tscam"


@register("apvit")
class APViTMap(BuiltinMap):
    """APViT's attention map: class-agnostic, so a class-specific CAM (the paper's CAM-COS)
    does not exist for it; scores computed from it measure where the model pools, for every
    class alike."""

    name = "apvit"
    class_agnostic = True


class _ACoLTap(BuiltinMap):
    """The fused map at ACoL's tap, read inside :class:`ACoLMap`'s own pass."""

    name = "acol"


@register("acol")
class ACoLMap(Explainer):
    """ACoL's CAM for the target: one forward with branch B erased for the target class
    (A's prediction for ``targets="pred"``), then the fused map at the head's tap."""

    name = "acol"

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: Targets,
        layers: Layers = None,
        *,
        landmarks: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        head = find_module(model, AcolHead, self.name)
        erased = None
        if not isinstance(targets, str):
            classes = getattr(model, "num_classes", None)
            erased = resolve_targets(targets, images.shape[0], classes, None, images.device)
        with head.erasing(erased):
            return layer_maps(model, images, targets, layers, [_ACoLTap()], landmarks=landmarks)[0]


@register("adl-quirk")
class ADLQuirkCAM(CAM):
    """``Σ_k W_tk A_k`` with the classifier's weights at any layer of matching width, without
    CAM's check that the layer feeds the pool: the reference's ADL CAM at ``layer4.2``, which
    after the ADL insertion is ResNet-50's middle block of layer 4 (paper-protocol.md §9.10)."""

    name = "adl-quirk"

    def weights(self, p: LayerPass) -> torch.Tensor:
        weight = self.linear_head(p.model).weight.detach().float()
        if weight.shape[1] != p.activations.shape[1]:
            raise ValueError(
                f"adl-quirk: layer {p.layer!r} has {p.activations.shape[1]} channels but the "
                f"classifier takes {weight.shape[1]}"
            )
        return weight[p.targets]
