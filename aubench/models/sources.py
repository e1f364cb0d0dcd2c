"""Models from anywhere: :func:`load_model` reads a model SPEC (and an optional checkpoint).

SPEC forms:

- ``timm:NAME``: timm model NAME (random init) with ``checkpoint`` loaded into it (a state dict,
  a ``.safetensors`` file, or an aubench checkpoint, whose training config also sets the model's
  ``large_maps``, ``output_stride`` and ViT ``img_size``). The head's width is ``num_classes``,
  or the checkpoint's classifier's when ``num_classes`` is None.
- ``path/to/file.py:FACTORY`` (imported by path, its folder on ``sys.path`` while it is imported)
  or ``package.module:FACTORY``: ``FACTORY()`` must return an ``nn.Module``; ``checkpoint``
  optional.
- ``belharbi2024:METHOD``: the seed paper's published checkpoints (the reference's
  ``model.pt`` as ``checkpoint``), rebuilt as aubench's model of METHOD with the reference's key
  map (:mod:`aubench.models.belharbi2024`); the SPEC brings its model card (:func:`spec_card`).
- a TorchScript file (``torch.jit.save``) or a ``torch.export`` file (``torch.export.save``,
  usually ``.pt2``), recognised by content, whatever the suffix; they carry their own weights.
  A ``.pt2`` program is unflattened (``torch.export.unflatten``) so that its submodules keep
  their names and take forward hooks. What works on each: :mod:`aubench.models.support`.

The model is returned in eval mode, on the CPU, with its :class:`~aubench.models.support.
ModelSource` (spec, form, file, checkpoint report) at :func:`~aubench.models.support.source_of`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import timm
import torch
from torch import nn

from aubench.models import belharbi2024
from aubench.models.checkpoints import (
    LoadReport,
    WeightsFile,
    is_safetensors,
    load_state,
    read_weights,
)
from aubench.models.factory import create
from aubench.models.support import SOURCE_ATTRIBUTE, ModelSource

_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
FORMS = (
    "timm:NAME, belharbi2024:METHOD, path/to/file.py:FACTORY, package.module:FACTORY, a "
    "TorchScript file or a torch.export .pt2 file"
)


class Scheme(NamedTuple):
    """A SPEC prefix naming models aubench builds itself: ``load(spec, checkpoint, strict)``
    gives the model and its :class:`ModelSource`, ``card(spec)`` the model card keys it comes
    with, ``explainers(spec)`` the explainers it is scored with by default."""

    load: Callable[[str, str | os.PathLike | None, bool], tuple[nn.Module, ModelSource]]
    card: Callable[[str], dict[str, Any]]
    explainers: Callable[[str], tuple[str, ...]]


#: SPEC prefix (before the first ``:``) → its :class:`Scheme` (``timm:`` is handled apart: it
#: also takes ``num_classes``).
SCHEMES: dict[str, Scheme] = {
    belharbi2024.SCHEME: Scheme(
        belharbi2024.load_reference, belharbi2024.spec_card, belharbi2024.spec_explainers
    ),
}


def load_model(
    spec: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    strict: bool = True,
    num_classes: int | None = None,
) -> nn.Module:
    """The model that ``spec`` names (forms: the module doc), with ``checkpoint`` loaded.

    ``strict``: see :func:`~aubench.models.checkpoints.load_state` (False loads what matches;
    the report is in the model's :class:`ModelSource`). ``num_classes`` applies to ``timm:``
    specs only. Raises ``FileNotFoundError`` for missing files and ``ValueError`` naming the
    value for everything else: an unknown form, a factory that cannot be found, raises or
    returns no module, an unreadable model file, a checkpoint that does not fit.
    """
    spec = str(spec).strip()
    path = Path(spec)
    if num_classes is not None and not spec.startswith("timm:"):
        raise ValueError(
            f"num_classes sets the head of timm: models only, not of {spec!r} (its output width "
            "is checked against the model card's classes)"
        )
    scheme = spec.partition(":")[0]
    if spec.startswith("timm:"):
        model, source = _timm(spec, checkpoint, strict, num_classes)
    elif scheme in SCHEMES:
        model, source = SCHEMES[scheme].load(spec, checkpoint, strict)
    elif path.is_file():
        model, source = _model_file(spec, path, checkpoint)
    elif ":" in spec:
        model, source = _factory(spec, checkpoint, strict)
    else:
        raise ValueError(_unknown_form(spec))
    model.eval()
    setattr(model, SOURCE_ATTRIBUTE, source)
    return model


def spec_card(spec: str | os.PathLike) -> dict[str, Any] | None:
    """The model card keys that SPEC ``spec`` comes with (``belharbi2024:cam``: the reference's
    preprocessing, classes and CAM layer), or None for the forms that bring none; a card file or
    flags given by the user override its keys. ``ValueError`` for an unknown method of a scheme."""
    spec = str(spec).strip()
    scheme = SCHEMES.get(spec.partition(":")[0])
    return None if scheme is None else scheme.card(spec)


def spec_explainers(spec: str | os.PathLike) -> tuple[str, ...] | None:
    """The explainers SPEC ``spec`` is scored with when none are given (``belharbi2024:wildcat``:
    ``wildcat``, its row's map), or None for the forms that name none."""
    spec = str(spec).strip()
    scheme = SCHEMES.get(spec.partition(":")[0])
    return None if scheme is None else scheme.explainers(spec)


def _unknown_form(spec: str) -> str:
    if timm.is_model(spec):
        return f"unknown model spec {spec!r}; did you mean timm:{spec}? (forms: {FORMS})"
    looks_like_file = bool(Path(spec).suffix) or os.sep in spec or "/" in spec
    missing = f"no file {spec} exists; " if looks_like_file else ""
    return f"unknown model spec {spec!r}: {missing}expected {FORMS}"


def _timm(
    spec: str, checkpoint: str | os.PathLike | None, strict: bool, num_classes: int | None
) -> tuple[nn.Module, ModelSource]:
    """A timm model, its head from ``num_classes`` or the checkpoint, the checkpoint loaded."""
    name = spec.removeprefix("timm:")
    if checkpoint is None and num_classes is None:
        raise ValueError(
            f"{spec}: give num_classes (--num-classes) or a checkpoint whose head sets it"
        )
    weights = None if checkpoint is None else read_weights(checkpoint)
    config = {} if weights is None else weights.config
    extra = (
        {} if config.get("output_stride") is None else {"output_stride": config["output_stride"]}
    )
    model = create(
        name,
        num_classes or 1,
        img_size=config.get("size"),
        large_maps=bool(config.get("large_maps", False)),
        **extra,
    )
    if num_classes is None:
        model.reset_classifier(_head_width(model, weights, spec))
    report = None if weights is None else load_state(model, weights, strict=strict)
    return model, ModelSource(spec, "timm", None, report)


def _head_width(model: nn.Module, weights: WeightsFile, spec: str) -> int:
    """The number of rows of the checkpoint's classifier weight (timm's ``classifier`` key)."""
    head = model.pretrained_cfg.get("classifier", "")
    key = f"{head[0] if isinstance(head, tuple | list) else head}.weight"
    if key not in weights.state:
        raise ValueError(
            f"{spec}: checkpoint {weights.path} has no classifier weight {key!r} to take the "
            "number of classes from; give num_classes (--num-classes)"
        )
    return int(weights.state[key].shape[0])


def _model_file(
    spec: str, path: Path, checkpoint: str | os.PathLike | None
) -> tuple[nn.Module, ModelSource]:
    """A TorchScript module or an unflattened torch.export program from ``path``."""
    kind = _file_kind(path)
    if kind == "weights":
        raise ValueError(
            f"{path} is a weights file, not a model: pass it as the checkpoint (--checkpoint) of "
            "a timm:NAME or FILE.py:FACTORY spec"
        )
    if kind is None:
        raise ValueError(
            f"{path} is neither a TorchScript nor a torch.export (.pt2) file, or it is corrupt "
            f"(expected {FORMS})"
        )
    if checkpoint is not None:
        raise ValueError(
            f"{path} is a {kind} file, which carries its own weights; a checkpoint applies to "
            "timm:NAME and FACTORY specs only"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            if kind == "torchscript":
                model = torch.jit.load(path, map_location="cpu")
            else:
                model = torch.export.unflatten(torch.export.load(path))
    except Exception as err:
        raise ValueError(
            f"cannot load {kind} file {path}: corrupt, or written by an incompatible torch "
            f"({type(err).__name__}: {str(err)[:300]})"
        ) from None
    return model, ModelSource(spec, kind, path)


def _file_kind(path: Path) -> str | None:
    """``"torchscript"``, ``"export"``, ``"weights"`` (a torch.save/safetensors file) or None,
    from the file's content: all three torch kinds are zip archives, told apart by members."""
    if is_safetensors(path):
        return "weights"
    if not zipfile.is_zipfile(path):
        with path.open("rb") as handle:
            return "weights" if handle.read(1) == b"\x80" else None  # a legacy torch.save pickle
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name.split("/", 1)[-1] for name in archive.namelist()}
    except zipfile.BadZipFile:
        return None
    if "archive_format" in members or any(m.startswith("models/") for m in members):
        return "export"
    if "constants.pkl" in members and any(m.startswith("code/") for m in members):
        return "torchscript"
    return "weights" if "data.pkl" in members else None


def _factory(
    spec: str, checkpoint: str | os.PathLike | None, strict: bool
) -> tuple[nn.Module, ModelSource]:
    """``FACTORY()`` from a file or an importable module, the checkpoint (if any) loaded."""
    target, _, name = spec.rpartition(":")
    if target.endswith(".py"):
        file = Path(target)
        module = _import_file(file)
    elif _MODULE.match(target):
        file = None
        try:
            module = importlib.import_module(target)
        except Exception as err:
            raise ValueError(
                f"model spec {spec!r}: cannot import module {target!r} ({type(err).__name__}: "
                f"{err}; forms: {FORMS})"
            ) from None
    else:
        raise ValueError(_unknown_form(spec))
    factory = getattr(module, name, None)
    if not callable(factory):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"model spec {spec!r}: {target} has no callable {name!r}{hint} "
            f"(callables there: {', '.join(sorted(names)) or 'none'})"
        )
    try:
        model = factory()
    except Exception as err:
        raise ValueError(f"model factory {spec!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    report: LoadReport | None = None
    if checkpoint is not None:
        report = load_state(model, checkpoint, strict=strict)
    return model, ModelSource(spec, "factory", file, report)


def _import_file(file: Path) -> ModuleType:
    """Import Python file ``file`` as a module of its own, its folder first on ``sys.path`` while
    it runs (so it can import its neighbours)."""
    if not file.is_file():
        raise FileNotFoundError(f"model factory file {file} does not exist")
    resolved = file.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    name = f"aubench_user_model_{resolved.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(resolved.parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ValueError(
            f"importing model factory file {file} failed ({type(err).__name__}: {err})"
        ) from err
    finally:
        sys.path.remove(str(resolved.parent))
    return module
