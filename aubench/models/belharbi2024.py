"""The seed paper's published checkpoints as aubench models: ``belharbi2024:<method>``.

Belharbi et al. (FG 2024) publish one trained model per table row, dataset and variant (44 files:
RAF-DB and AffectNet × 11 methods × with/without AUs; ``shared-trained-models/FG_FER/<DS>/<encoder>/
STD_CL/<Method>/align_atten_to_heatmap_<True|False>/<tag>/model.pt``, README "Pretrained
weights"). :func:`load_reference` rebuilds each as aubench's own model of that method
(:mod:`aubench.models.methods`), so aubench's explainers (``cam``, ``wildcat``, ``prm``, ``acol``,
``adl-quirk``, ``tscam``, the gradient family) read it unchanged, and moves the reference's
tensors onto it by a key map (:class:`Rename` rules). What the reference saves
(``learning/train_wsol.py:_save_model``):

- CNN methods: ``{"encoder": encoder.state_dict(), "classification_head": head.state_dict()}``,
  read here as the full model's names ``encoder.*`` and ``classification_head.*``;
- TS-CAM (and APViT): the whole model's ``state_dict()``.

The models, as the published runs built them (README commands, ``configure/config.py``):

- ResNet-50 encoder (torchvision layout, the names timm's ``resnet50`` uses: ``conv1``, ``bn1``,
  ``layerS.B.{conv,bn}{1,2,3}``, ``layerS.0.downsample.{0,1}``) with ``large_maps=True``: stride 1
  in layer 3 and layer 4 (28×28 maps at 224 px; :func:`~aubench.models.set_large_maps`);
- heads: WGAP = GAP + ``fc`` (CAM, GradCAM, GradCAM++, LayerCAM, ADL, CutMix: one architecture,
  separately trained); WILDCAT ``to_modalities`` (1×1 conv to 7·5 maps, kmax 0.5, its kmin branch
  dropped by the reference: ``kmin = 0``); PRM ``conv`` (1×1) + 3×3 stride-1 max-pool + GAP; ACoL
  ``acol_pooler.classifier_{A,B}`` (conv3×3 2048→1024, conv3×3 1024→1024, conv1×1 →7; erase
  threshold 0.1); ADL layers after layer3 block 0 and layer4 blocks 0 and 2
  (``_ADL_POSITION``), which shift the saved names (``layer4.2`` is block 1);
- TS-CAM: DeiT-S/16 at 224 px (timm's ``deit_small_patch16_224``: same names) whose ``head`` is a
  3×3 conv to class maps, GAP'd.

WILDCAT's per-modality biases (7·5) enter its class maps only through their mean per class
(``M_k = (1/5) Σ_m (W_km·F + b_km)``), so aubench's head keeps one bias per class: the key map
averages them (the same function). APViT cannot be mapped (:data:`APVIT_UNSUPPORTED`).

Evaluation in the reference (``eval.py``, ``datasets/wsol_loader.py:get_eval_tranforms``): the
224×224 face crops resized to 224, ImageNet mean/std, logits over 7 classes in the order
``Neutral, Happiness, Surprise, Fear, Anger, Disgust, Sadness`` (``datasets/
default_labels_order.py``: aubench's canonical order). :func:`reference_card` is that card, its
``layers`` the layer of the method's CAM (the reference's hook ``encoder.layer4.2.relu3`` = the
layer-4 output, or the head's own maps); ATT-COS ("layer 5") is the ``attention`` explainer at
:attr:`ReferenceModel.attention_layer`.

When ``config_model.yaml`` (saved beside every ``model.pt``) is there, its settings that the
tensors cannot reveal (``large_maps``, ``wc_kmax``, ``prm_ks``, …) are checked against the
published ones (:attr:`ReferenceModel.settings`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from aubench.models.checkpoints import WeightsFile, load_state
from aubench.models.factory import create
from aubench.models.methods import (
    AcolHead,
    PRMHead,
    WildcatHead,
    attach_tscam,
    insert_adl,
    replace_classifier,
)
from aubench.models.support import ModelSource

#: The SPEC prefix.
SCHEME = "belharbi2024"
#: The reference's classes, in its output order (= aubench's canonical order, no contempt).
REFERENCE_CLASSES = ("neutral", "happiness", "surprise", "fear", "anger", "disgust", "sadness")
#: ImageNet statistics the reference normalises with (``wsol_loader.py:2478-2479``).
REFERENCE_MEAN = (0.485, 0.456, 0.406)
REFERENCE_STD = (0.229, 0.224, 0.225)
#: The card keys every reference model shares (:func:`reference_card` adds ``layers``).
REFERENCE_CARD: dict[str, Any] = {
    "input_size": 224,
    "channels": 3,
    "mean": list(REFERENCE_MEAN),
    "std": list(REFERENCE_STD),
    "classes": list(REFERENCE_CLASSES),
    "crop": "as-is",
    "output": "logits",
}
#: The file saved beside each ``model.pt`` with the run's settings.
CONFIG_FILE = "config_model.yaml"
#: WILDCAT's modalities per class in the published runs (``wc_modalities``).
WILDCAT_MODALITIES = 5
#: Where the reference inserts ADL layers (``_ADL_POSITION = [[], [], [], [0], [0, 2]]``).
ADL_POSITIONS = {"layer3": [0], "layer4": [0, 2]}

APVIT_UNSUPPORTED = (
    "the reference's APViT is an IR-50 face-recognition stem (PReLU, BN-first residual units, "
    "MS1M weights; not a timm model) feeding a 768-wide, 8-head, MLP-ratio-3 pooling ViT without "
    "qkv bias, while aubench's apvit method is APViT-style (a timm CNN stem + timm ViT blocks), "
    "so the checkpoint's tensors have no place in it. Score it with the maps the reference code "
    "writes (aubench evaluate --maps), or wrap the reference code as FILE.py:FACTORY, whose flat "
    "state dict then loads as it is (--checkpoint). The paper reports no CAM-COS for APViT"
)


@dataclass(frozen=True)
class Rename:
    """Reference key prefix ``source`` → aubench prefix ``target``; ``transform`` (if any) maps
    the tensor too."""

    source: str
    target: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def modality_mean(bias: torch.Tensor, modalities: int = WILDCAT_MODALITIES) -> torch.Tensor:
    """WILDCAT's (K·M,) per-modality biases → (K,) class biases, the mean of each class's M
    (channel ``k·M + m``: the reference's ``view(N, K, M, -1)``). Another shape is returned as
    it is, for :func:`~aubench.models.checkpoints.load_state` to name the mismatch."""
    if bias.dim() != 1 or bias.numel() % modalities:
        return bias
    return bias.view(-1, modalities).mean(1)


#: The encoder's names are timm ResNet-50's.
ENCODER = Rename("encoder.", "")


@dataclass(frozen=True)
class ReferenceModel:
    """One method of the paper's tables: its architecture, key map, maps and settings.

    ``build(K)`` returns aubench's model of the method (random weights); ``renames`` map the
    reference's state-dict names onto it (first matching rule; names no rule matches are kept).
    ``explainer`` at ``cam_layer`` gives the row's CAM-COS map, ``attention`` at
    ``attention_layer`` its ATT-COS map. ``settings``: ``config_model.yaml`` values (dotted
    paths) the published runs used and the model assumes. ``unsupported``: why the method cannot
    be loaded (its models are then refused).
    """

    name: str
    reference: str
    build: Callable[[int], nn.Module] | None
    renames: tuple[Rename, ...]
    explainer: str
    cam_layer: str
    attention_layer: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    unsupported: str | None = None

    def map_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` (reference names) under aubench's names; ``ValueError`` when two of its keys
        land on one name."""
        mapped: dict[str, torch.Tensor] = {}
        origin: dict[str, str] = {}
        for key, value in state.items():
            rule = next((r for r in self.renames if key.startswith(r.source)), None)
            name = key if rule is None else rule.target + key.removeprefix(rule.source)
            if rule is not None and rule.transform is not None:
                value = rule.transform(value)
            if name in mapped:
                raise ValueError(
                    f"{SCHEME}:{self.name}: checkpoint keys {origin[name]!r} and {key!r} both map "
                    f"to {name!r}"
                )
            mapped[name], origin[name] = value, key
        return mapped

    def describe_renames(self) -> str:
        """The key map in one line (``encoder.* → *, …``)."""
        return ", ".join(f"{r.source}* → {r.target}*" for r in self.renames)


def _resnet50(num_classes: int) -> nn.Module:
    """timm ResNet-50 with the reference's ``large_maps`` (layer 3/4 stride 1), random weights."""
    return create("resnet50", num_classes, large_maps=True)


def _with_head(make_head: Callable[[int, int], nn.Module], num_classes: int) -> nn.Module:
    model = _resnet50(num_classes)
    return replace_classifier(model, make_head(model.num_features, num_classes), num_classes)


def _adl(num_classes: int) -> nn.Module:
    return insert_adl(_resnet50(num_classes), ADL_POSITIONS, drop_rate=0.4, threshold=0.1)


def _tscam(num_classes: int) -> nn.Module:
    return attach_tscam(create("deit_small_patch16_224", num_classes, img_size=224), num_classes)


_CNN = {
    "model.encoder_name": "resnet50",
    "model.large_maps": True,
    "model.scale_in": 1.0,
    "align_atten_to_heatmap_use_self_atten": False,
}
_WGAP = (ENCODER, Rename("classification_head.fc.", "fc."))


def _wgap(name: str, reference: str, explainer: str, cam_layer: str = "layer4") -> ReferenceModel:
    """A GAP + linear (WGAP) ResNet-50 row: the same architecture, trained per row."""
    settings = {**_CNN, "spatial_pooling": "WGAP", "method": reference}
    build = _adl if reference == "ADL" else _resnet50
    return ReferenceModel(name, reference, build, _WGAP, explainer, cam_layer, "layer4", settings)


#: aubench method name → :class:`ReferenceModel` (the SPEC's ``<method>``).
REFERENCE_MODELS: dict[str, ReferenceModel] = {
    model.name: model
    for model in (
        _wgap("cam", "CAM", "cam"),
        _wgap("gradcam", "GradCam", "gradcam"),
        _wgap("gradcam++", "GradCAMpp", "gradcam++-belharbi2024"),  # its α = g²
        _wgap("layercam", "LayerCAM", "layercam"),
        _wgap("cutmix", "CutMIX", "cam"),
        # the reference's CAM hook ``encoder.layer4.2.relu3`` is block 1 once ADL is inserted
        _wgap("adl", "ADL", "adl-quirk", cam_layer="layer4.2"),
        ReferenceModel(
            "wildcat",
            "WILDCAT",
            partial(_with_head, lambda c, k: WildcatHead(c, k, WILDCAT_MODALITIES, 0.5, 0.0)),
            (
                ENCODER,
                Rename("classification_head.to_modalities.weight", "fc.conv.weight"),
                Rename("classification_head.to_modalities.bias", "fc.bias", modality_mean),
            ),
            "wildcat",
            "fc.cams",
            "layer4",
            {
                **_CNN,
                "method": "WILDCAT",
                "spatial_pooling": "WildCatCLHead",
                "wc_modalities": WILDCAT_MODALITIES,
                "wc_kmax": 0.5,
            },
        ),
        ReferenceModel(
            "prm",
            "PRM",
            partial(_with_head, lambda c, k: PRMHead(c, k, kernel=3)),
            (ENCODER, Rename("classification_head.conv.", "fc.conv.")),
            "prm",
            "fc.cams",
            "layer4",
            {**_CNN, "method": "PRM", "spatial_pooling": "PRM", "prm_ks": 3, "prm_st": 1},
        ),
        ReferenceModel(
            "acol",
            "ACoL",
            partial(_with_head, lambda c, k: AcolHead(c, k, threshold=0.1, width=1024)),
            (
                ENCODER,
                Rename("classification_head.acol_pooler.classifier_A.", "fc.branch_a."),
                Rename("classification_head.acol_pooler.classifier_B.", "fc.branch_b."),
            ),
            "acol",
            "fc.cams",
            "layer4",
            {**_CNN, "method": "ACoL", "spatial_pooling": "ACOL", "acol_drop_threshold": 0.1},
        ),
        ReferenceModel(
            "tscam",
            "TSCAM",
            _tscam,
            (Rename("head.", "head.conv."),),
            "tscam",
            "head.cams",
            "norm",  # the reference's layer 1: the patch tokens after the final norm
            {"method": "TSCAM", "model.encoder_name": "deit_tscam_small_patch16_224"},
        ),
        ReferenceModel(
            "apvit", "APVIT", None, (), "apvit", "attention", "stem", {}, APVIT_UNSUPPORTED
        ),
    )
}


def reference_model(method: str) -> ReferenceModel:
    """The :class:`ReferenceModel` of ``method``: aubench's name (``cam``, ``gradcam++``) or the
    reference's (``CAM``, ``GradCAMpp``), any case. ``ValueError`` lists the known ones."""
    key = method.strip().lower()
    by_name = dict(REFERENCE_MODELS)
    by_name.update({model.reference.lower(): model for model in REFERENCE_MODELS.values()})
    if key in by_name:
        return by_name[key]
    close = difflib.get_close_matches(key, list(by_name), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown {SCHEME} method {method!r}{hint} (known: {', '.join(REFERENCE_MODELS)})"
    )


def reference_card(method: str) -> dict[str, Any]:
    """The model card keys of ``method``'s reference models: :data:`REFERENCE_CARD` and, as
    ``layers``, the layer of its CAM (:attr:`ReferenceModel.cam_layer`)."""
    return {**REFERENCE_CARD, "layers": [reference_model(method).cam_layer]}


def spec_card(spec: str) -> dict[str, Any]:
    """:func:`reference_card` of SPEC ``belharbi2024:<method>``."""
    return reference_card(_method_of(spec))


def spec_explainers(spec: str) -> tuple[str, ...]:
    """The explainer giving the CAM-COS map of SPEC ``belharbi2024:<method>`` (its row's)."""
    return (reference_model(_method_of(spec)).explainer,)


def read_reference(path: str | os.PathLike) -> WeightsFile:
    """The tensors of a reference ``model.pt`` under the full model's names: nested state dicts
    (``{"encoder": …, "classification_head": …}``) are flattened with their key as prefix.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it
    cannot be read or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"checkpoint {path} is corrupt or not a torch.save file ({type(err).__name__}: "
            f"{str(err)[:200]})"
        ) from None
    state = _flatten(raw) if isinstance(raw, Mapping) else {}
    if not state:
        raise ValueError(
            f"checkpoint {path} holds no tensors (a {type(raw).__name__}); expected the "
            "reference's model.pt: {'encoder': …, 'classification_head': …} or a state dict"
        )
    return WeightsFile(path, state)


def _flatten(tree: Mapping[Any, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of nested mappings ``tree``, keyed ``outer.inner``."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        if torch.is_tensor(value):
            flat[f"{prefix}{key}"] = value
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def check_settings(model: ReferenceModel, checkpoint: Path) -> None:
    """Refuse a checkpoint whose ``config_model.yaml`` (beside it; none: nothing to check)
    says a setting differs from :attr:`ReferenceModel.settings`, naming the setting and both
    values (a GradCAM checkpoint under ``belharbi2024:cam`` included: same tensors, other row)."""
    path = checkpoint.with_name(CONFIG_FILE)
    if not path.is_file():
        return
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    problems = []
    for dotted, expected in model.settings.items():
        value: Any = config
        for part in dotted.split("."):
            value = value.get(part, _ABSENT) if isinstance(value, Mapping) else _ABSENT
        if value is not _ABSENT and value != expected:
            problems.append(f"{dotted}: {value!r} (the published runs: {expected!r})")
    if problems:
        trained = config.get("method")
        other = [
            m.name for m in REFERENCE_MODELS.values() if m.reference == trained != model.reference
        ]
        hint = f"; a {trained} checkpoint loads as {SCHEME}:{other[0]}" if other else ""
        raise ValueError(
            f"{SCHEME}:{model.name} rebuilds the published {model.reference} models, but "
            f"{path} says {'; '.join(problems)}{hint}"
        )


_ABSENT = object()


def load_reference(
    spec: str, checkpoint: str | os.PathLike | None, strict: bool = True
) -> tuple[nn.Module, ModelSource]:
    """SPEC ``belharbi2024:<method>``: aubench's model of the method with the reference's
    ``model.pt`` ``checkpoint`` loaded through the key map (module doc), on the CPU.

    ``strict``: as :func:`~aubench.models.checkpoints.load_state`, whose error names the missing,
    unexpected and mismatched keys (in aubench's names once mapped; the message adds the map).
    Raises ``ValueError`` for an unknown method, APViT, no checkpoint, and settings of
    ``config_model.yaml`` the model does not reproduce; ``FileNotFoundError`` for a missing file.
    """
    reference = reference_model(_method_of(spec))
    if reference.build is None:
        raise ValueError(f"{spec}: {reference.unsupported}")
    if checkpoint is None:
        raise ValueError(
            f"{spec} needs the reference's weights: --checkpoint .../{reference.reference}/"
            "align_atten_to_heatmap_<True|False>/<tag>/model.pt (README: Score the paper's models)"
        )
    path = Path(checkpoint)
    weights = read_reference(path)
    check_settings(reference, path)
    mapped = WeightsFile(path, reference.map_state(weights.state))
    model = reference.build(len(REFERENCE_CLASSES))
    try:
        report = load_state(model, mapped, strict=strict)
    except ValueError as err:
        raise ValueError(f"{spec}: {err}; key map: {reference.describe_renames()}") from None
    return model.eval(), ModelSource(spec, "factory", None, report)


def _method_of(spec: str) -> str:
    scheme, _, method = str(spec).partition(":")
    if scheme != SCHEME or not method:
        raise ValueError(
            f"expected {SCHEME}:<method>, got {spec!r} (methods: {', '.join(REFERENCE_MODELS)})"
        )
    return method
