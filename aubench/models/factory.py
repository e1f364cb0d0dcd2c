"""Model factory: any timm classifier, CNN or ViT, with weights only from local files.

``create("resnet18", 7)`` builds a randomly initialised timm model; ``pretrained=PATH`` loads a
local ``.pth``/``.pt``/``.bin``/``.safetensors`` state dict (a classifier head whose shape does
not match ``num_classes`` is left at its fresh initialisation); ``pretrained="hub"`` loads timm's
own weights from the user's Hugging Face or torch hub cache and never downloads: the caches are
only read, and absent weights are a ``FileNotFoundError`` that says how to provide them.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from pathlib import Path

import timm
import torch
from torch import nn

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the closest timm model names when it is unknown."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
    raise ValueError(f"unknown model {name!r}{hint}")


def create(
    name: str,
    num_classes: int,
    pretrained: str | os.PathLike | None = None,
    *,
    img_size: int | tuple[int, int] | None = None,
    large_maps: bool = False,
    **timm_kwargs,
) -> nn.Module:
    """Build timm model ``name`` with a ``num_classes``-way head.

    Args:
        name: a timm model name (``resnet18``, ``convnext_atto``, ``vit_tiny_patch16_224``, …).
        num_classes: size of the classifier head (7, or 8 with contempt).
        pretrained: ``None`` (random init), a path to a local weights file, or ``"hub"`` (timm's
            weights from the local hub cache; fails with instructions when they are not there).
        img_size: input side in px, or (H, W), for models that need it at construction (ViT/DeiT
            position embeddings); ignored by models without that argument.
        large_maps: ResNets only: stride 1 in the last two stages (the paper's 28×28 layer-4 maps
            at 224 px, /8 overall); see :func:`set_large_maps`.
        **timm_kwargs: passed to ``timm.create_model``.
    """
    check_model_name(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
    from_hub = pretrained is not None and str(pretrained) == "hub"
    kwargs = {"pretrained": from_hub, "num_classes": num_classes, **timm_kwargs}
    try:
        with _hub_cache_only(name if from_hub else None):
            model = _create_timm(name, img_size, kwargs)
    except Exception as err:
        if not from_hub:
            raise
        raise FileNotFoundError(
            f"no {name} weights in the local hub cache ({type(err).__name__}: {err}). "
            "Download them once on a connected machine with HF_HUB_OFFLINE unset (python -c "
            f"\"import timm; timm.create_model('{name}', pretrained=True)\") and copy "
            "~/.cache/huggingface here, or pass a local weights file: --pretrained PATH"
        ) from err
    if pretrained is not None and not from_hub:
        load_weights(model, pretrained)
    if large_maps:
        set_large_maps(model)
    return model


@contextlib.contextmanager
def _hub_cache_only(name: str | None):
    """While loading ``name``'s hub weights, read caches only: Hugging Face offline mode is forced
    and torch-hub URL weights must already be in ``torch.hub.get_dir()/checkpoints``."""
    if name is None:
        yield
        return
    import huggingface_hub.constants as hub

    cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(name.split(".")[0])
    if cfg is not None and not cfg.hf_hub_id and cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if not cached.is_file():
            raise FileNotFoundError(f"{cached} is not in the torch hub cache")
    offline = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = offline


def _create_timm(name: str, img_size: int | tuple[int, int] | None, kwargs: dict) -> nn.Module:
    """``timm.create_model`` with ``img_size`` for the model classes whose constructor takes it."""
    if img_size is None:
        return timm.create_model(name, **kwargs)
    try:
        return timm.create_model(name, img_size=img_size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        return timm.create_model(name, **kwargs)


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a local state dict into ``model``; head tensors of another shape are skipped.

    Accepts a raw state dict or a checkpoint holding one under ``state_dict``/``model``; a
    ``module.`` prefix (DDP) is stripped. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` when the file cannot be read or matches none of the model's parameters.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {path} does not exist; pass a local .pth/.safetensors file "
            "(e.g. torchvision or timm ImageNet weights downloaded once) or leave --pretrained out"
        )
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path}: expected one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read weights ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(
            f"{path}: none of its {len(state)} tensors match {type(model).__name__}'s parameters"
        )
    model.load_state_dict(usable, strict=False)


def set_large_maps(model: nn.Module) -> nn.Module:
    """Set stride 1 in the first block of ``layer3`` and ``layer4`` of a timm ResNet (in place).

    Every strided conv (and average-pool downsample) of those blocks gets stride 1, with the
    weights unchanged, so layer 3 and layer 4 keep layer 2's resolution (28×28 at 224 px), as the
    paper's ``large_maps=True``. Raises ``ValueError`` for models without ``layer3``/``layer4``.
    """
    stages = [getattr(model, name, None) for name in ("layer3", "layer4")]
    if any(stage is None for stage in stages):
        raise ValueError(f"large_maps needs a ResNet (layer3/layer4), not {type(model).__name__}")
    for stage in stages:
        for module in stage[0].modules():
            if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
                module.stride = (1, 1)
            elif isinstance(module, nn.AvgPool2d) and module.stride not in (1, (1, 1)):
                module.stride = 1
                module.kernel_size = 1
    return model
