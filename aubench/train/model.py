"""The classifier a training config trains, and how it is trained: the training methods.

:func:`build_model` builds ``config.method``'s model (also to rebuild one from a checkpoint for
evaluation: the stored config rebuilds the same architecture); :func:`get_method` gives the
:class:`Method` whose hooks the training step (:mod:`aubench.train.step`) calls. One registry,
:data:`METHODS`, one small class per method (options: the config's ``<method>_…`` fields):

- ``cam``: the timm model as it is (GAP + linear); CE; explainer ``cam``.
- ``wildcat``, ``prm``: a CNN whose classifier is a
  :class:`~aubench.models.methods.WildcatHead` / :class:`~aubench.models.methods.PRMHead`; CE;
  explainers ``wildcat`` / ``prm``.
- ``acol``: a CNN + :class:`~aubench.models.methods.AcolHead`; ``CE(A) + CE(B)``, the labels
  passed to the head for the erasing; explainer ``acol``.
- ``adl``: a CNN with :class:`~aubench.models.methods.ADL` layers inserted; CE; explainer ``cam``.
- ``cutmix``: the timm model as it is; CutMix batches (:mod:`aubench.train.cutmix`) and their
  mixed CE; explainer ``cam``.
- ``tscam``: a ViT/DeiT made TS-CAM (:func:`~aubench.models.methods.attach_tscam`); CE;
  explainer ``tscam``.
- ``apvit``: a CNN stem + pooling ViT (:class:`~aubench.models.methods.APViT`); CE; explainer
  ``apvit``.

Every method trains with or without AU guidance: the alignment loss acts on ``config.layers``,
captured around :meth:`Method.forward` (CutMix's on its mixed heatmaps). The ``cam`` method is
the trainer's original behaviour, operation for operation. A model whose last 1-D bias is not
the K-wide class bias cannot be rebuilt from a checkpoint (``load_trained`` reads K off it):
every head here ends with it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from aubench.models import create, stage_names
from aubench.models.methods import (
    ADL,
    AcolHead,
    APViT,
    PRMHead,
    WildcatHead,
    adl_positions,
    attach_tscam,
    find_module,
    insert_adl,
    is_token_model,
    replace_classifier,
    tap_names,
)
from aubench.train.config import METHOD_NAMES, TrainConfig
from aubench.train.cutmix import cutmix

#: method name → its :class:`Method` class (every name of ``TrainConfig.method``).
METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add ``cls`` to :data:`METHODS` under ``cls.name``."""
    if cls.name not in METHOD_NAMES or cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} is not a TrainConfig method or is registered")
    METHODS[cls.name] = cls
    return cls


def get_method(config: TrainConfig) -> Method:
    """The :class:`Method` of ``config.method``, holding ``config``."""
    return METHODS[config.method](config)


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The model ``config`` trains (method, timm model, weights, large maps, output stride), on
    the CPU. ``num_classes`` is the head's width K (logits (B, K)). Unsuitable combinations (a
    model that takes no ``output_stride`` while it is set, a method on a model it cannot use)
    raise ``ValueError`` naming them."""
    return get_method(config).build(num_classes)


@register_method
class Method:
    """``cam``: the timm model with its own GAP + linear head; the base of every method.

    Hooks, each called by the training step: :meth:`build` (the model), :meth:`prepare` (the
    device batch after its heatmaps, before the forward), :meth:`forward` (the logits),
    :meth:`loss` (the classification term); :meth:`explained_by` names the explainer and layer
    of the method's map.
    """

    name: ClassVar[str] = "cam"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def backbone(self, num_classes: int, pretrained: str | bool | None = True) -> nn.Module:
        """The timm model of the config (``pretrained=True``: the config's weights)."""
        c = self.config
        weights = c.pretrained if pretrained is True else pretrained
        extra = {} if c.output_stride is None else {"output_stride": c.output_stride}
        try:
            return create(
                c.model, num_classes, weights, img_size=c.size, large_maps=c.large_maps, **extra
            )
        except TypeError as err:
            if not extra:
                raise
            raise ValueError(f"model {c.model!r} takes no output_stride ({err})") from err

    def build(self, num_classes: int) -> nn.Module:
        """The model, randomly initialised under the caller's seed, or from its weights."""
        return self.backbone(num_classes)

    def prepare(self, batch: dict) -> dict:
        """The batch the model trains on (``image``, ``label``, ``heatmap``/``valid`` if
        guided); the default is ``batch`` itself."""
        return batch

    def forward(self, net: nn.Module, model: nn.Module, batch: dict) -> torch.Tensor:
        """Logits (B, K) of ``net`` (``model``, or its DDP wrapper) on ``batch["image"]``."""
        return net(batch["image"])

    def loss(self, model: nn.Module, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The classification term: ``CE(logits, y)`` (mean over the batch, float32)."""
        return F.cross_entropy(logits.float(), batch["label"])

    def explained_by(self, model: nn.Module) -> tuple[str, str]:
        """(registered explainer, layer spec) that read this method's map from ``model``: the
        method's own explainer at its map tap, or ``cam`` at stage 5 for a model without one."""
        taps = tap_names(model)
        return (self.name, taps[0]) if taps else ("cam", "stage:5")

    def unsuitable(self, reason: str) -> ValueError:
        """The error for a model this method cannot use, naming both."""
        return ValueError(f"method {self.name!r} cannot use model {self.config.model!r}: {reason}")


class HeadMethod(Method):
    """A method that replaces a CNN's classifier by its own head on the unpooled features."""

    def head(self, in_channels: int, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def build(self, num_classes: int) -> nn.Module:
        model = self.backbone(num_classes)
        if is_token_model(model):
            raise self.unsuitable("its head needs a CNN's (B, C, H, W) feature maps")
        return replace_classifier(model, self.head(model.num_features, num_classes), num_classes)


@register_method
class Wildcat(HeadMethod):
    """``wildcat``: class maps from ``wildcat_modalities`` maps per class, top-k/bottom-k pooled
    (``wildcat_kmax``, ``wildcat_kmin``, ``wildcat_alpha``; ``kmin = 0``: the reference's)."""

    name = "wildcat"

    def head(self, in_channels: int, num_classes: int) -> nn.Module:
        c = self.config
        return WildcatHead(
            in_channels,
            num_classes,
            c.wildcat_modalities,
            c.wildcat_kmax,
            c.wildcat_kmin,
            c.wildcat_alpha,
        )


@register_method
class PRM(HeadMethod):
    """``prm``: class maps, ``prm_kernel``² local-max pooling (stride 1), then GAP."""

    name = "prm"

    def head(self, in_channels: int, num_classes: int) -> nn.Module:
        return PRMHead(in_channels, num_classes, self.config.prm_kernel)


@register_method
class ACoL(HeadMethod):
    """``acol``: two branches (``acol_width`` channels), B on features erased where A's map of
    the label is ≥ ``acol_threshold``; loss ``CE(A) + CE(B)``, the logits A's."""

    name = "acol"

    def head(self, in_channels: int, num_classes: int) -> nn.Module:
        c = self.config
        return AcolHead(in_channels, num_classes, c.acol_threshold, c.acol_width, c.acol_norm)

    def forward(self, net: nn.Module, model: nn.Module, batch: dict) -> torch.Tensor:
        with find_module(model, AcolHead, self.name).erasing(batch["label"]):
            return net(batch["image"])

    def loss(self, model: nn.Module, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        head = find_module(model, AcolHead, self.name)
        logits_b, head.logits_b = head.logits_b, None
        return super().loss(model, logits, batch) + super().loss(model, logits_b, batch)


@register_method
class ADLMethod(Method):
    """``adl``: ADL layers (``adl_drop_rate``, ``adl_threshold``) after the blocks
    ``adl_layers``; the plain GAP + linear head, whose CAM (``cam``) reads the stage output.

    ``adl_quirk`` reproduces the reference's two index slips: the pretrained weights are loaded by
    name *after* the insertion (as ``get_encoder``'s ``strict=False`` load,
    ``encoders/__init__.py:129-134``), so each block after an ADL gets the next block's weights
    and the last one keeps its random init; and the CAM is read at the name of the last stage's
    last block (the reference's hook ``layer4.2``, ``constants.py:352-361``), which then denotes
    an earlier block (``adl-quirk`` explainer).
    """

    name = "adl"

    def build(self, num_classes: int) -> nn.Module:
        c = self.config
        model = self.backbone(num_classes)
        if is_token_model(model):
            raise self.unsuitable("ADL needs a CNN's (B, C, H, W) feature maps")
        try:
            positions = adl_positions(model, c.adl_layers)
        except ValueError as err:
            raise self.unsuitable(f"{err}; set adl_layers") from None
        if c.adl_quirk and c.pretrained is not None:
            weights = model.state_dict()
            model = self.backbone(num_classes, pretrained=None)
            insert_adl(model, positions, c.adl_drop_rate, c.adl_threshold)
            own = model.state_dict()
            usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(usable, strict=False)
            return model
        return insert_adl(model, positions, c.adl_drop_rate, c.adl_threshold)

    def explained_by(self, model: nn.Module) -> tuple[str, str]:
        if not self.config.adl_quirk:
            return "cam", "stage:5"
        stage = stage_names(model)[-1]
        blocks = [m for m in model.get_submodule(stage) if not isinstance(m, ADL)]
        return "adl-quirk", f"{stage}.{len(blocks) - 1}"


@register_method
class CutMix(Method):
    """``cutmix``: every batch mixed with probability ``cutmix_prob``, ``λ ~ Beta(β, β)``
    (``cutmix_beta``), heatmaps cut with the images (:mod:`aubench.train.cutmix`); loss
    ``λ'·CE(y) + (1 − λ')·CE(y_π)``."""

    name = "cutmix"

    def prepare(self, batch: dict) -> dict:
        return cutmix(batch, self.config.cutmix_beta, self.config.cutmix_prob)

    def loss(self, model: nn.Module, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        if "label_b" not in batch:
            return super().loss(model, logits, batch)
        logits, lam = logits.float(), batch["lam"]
        return lam * F.cross_entropy(logits, batch["label"]) + (1 - lam) * F.cross_entropy(
            logits, batch["label_b"]
        )


@register_method
class TSCAM(Method):
    """``tscam``: a ViT/DeiT whose head makes class maps from the patch tokens; its map is
    the class-token attention summed over blocks ⊙ the class map."""

    name = "tscam"

    def build(self, num_classes: int) -> nn.Module:
        model = self.backbone(num_classes)
        if not isinstance(model, VisionTransformer):
            raise self.unsuitable(
                f"it needs a ViT/DeiT (timm VisionTransformer), not {type(model).__name__}"
            )
        try:
            return attach_tscam(model, num_classes)
        except ValueError as err:
            raise self.unsuitable(str(err)) from None


@register_method
class APViTMethod(Method):
    """``apvit``: ``config.model`` is the CNN stem (cut at stride ``apvit_stride``), the
    transformer the first ``apvit_depth`` blocks of ``apvit_vit`` (weights
    ``apvit_vit_pretrained``), ``apvit_k`` tokens kept, keep rate ``apvit_r``; its map is the
    class-agnostic attention. ``large_maps`` and ``output_stride`` do not apply to the stem."""

    name = "apvit"

    def build(self, num_classes: int) -> nn.Module:
        c = self.config
        try:
            levels = create(c.model, num_classes, features_only=True).feature_info
        except (RuntimeError, TypeError, AttributeError) as err:
            raise self.unsuitable(f"its stem needs timm's features_only ({err})") from None
        reductions = levels.reduction()
        if c.apvit_stride not in reductions:
            raise self.unsuitable(f"apvit_stride must be one of its strides {reductions}")
        index = max(i for i, r in enumerate(reductions) if r == c.apvit_stride)
        options: dict[str, Any] = {"features_only": True, "out_indices": (index,)}
        stem = create(c.model, num_classes, c.pretrained, img_size=c.size, **options)
        with torch.no_grad():
            grid = tuple(stem.eval()(torch.zeros(1, 3, c.size, c.size))[-1].shape[-2:])
        vit = create(c.apvit_vit, num_classes, c.apvit_vit_pretrained)
        try:
            model = APViT(stem, vit, num_classes, grid, c.apvit_depth, c.apvit_k, c.apvit_r)
        except ValueError as err:
            raise self.unsuitable(f"apvit_vit {c.apvit_vit!r}: {err}") from None
        return model.train()
