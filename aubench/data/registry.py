"""Datasets by name: ``open_dataset("rafdb:/data/RAF-DB", "train")``, the ``--data NAME:PATH`` of
every command.

Spec syntax: ``NAME:PATH`` for a dataset on disk, optionally followed by ``?key=value,key=value``
loader options (``rafdb:/data/RAF-DB?images=original``); ``synthetic`` or
``synthetic:key=value,…`` for the built-in faces (``synthetic:n=2048,shortcut=0.5``). Option values
are read as int, float, ``true``/``false`` or text.

==============  ============================================================  ====================
name            what PATH is                                                  options
==============  ============================================================  ====================
``rafdb``       RAF-DB (``basic/`` with ``EmoLabel/`` and ``Image/``)         ``images=aligned``
                                                                              or ``original``
``affectnet``   AffectNet, CSV (``Manually_Annotated_file_lists``) or npy     ``release=auto``,
                (``train_set``/``val_set``) release                          ``csv`` or ``npy``
``fer2013``     FER2013 (``fer2013.csv`` or ``icml_face_data.csv``)            —
``ferplus``     FERPlus votes (``fer2013new.csv``) + FER2013 pixels            —
``ckplus``      CK+ (``cohn-kanade-images``, ``Emotion``, ``Landmarks``,       ``frames=1``,
                ``FACS``)                                                     ``neutral=false``,
                                                                              ``folds=10, fold=0``
``disfa``       DISFA (``ActionUnit_Labels`` + its frames, extracted)          ``labels=prototype``,
                                                                              ``frames=auto``,
                                                                              ``first_frame=1``,
                                                                              ``stride=1``,
                                                                              ``folds=3, fold=0``
``bp4d``        BP4D (``AUCoding/AU_OCC`` + the 2D frames)                     ``labels=task`` or
                                                                              ``prototype``,
                                                                              ``stride=1``,
                                                                              ``folds=3, fold=0``
``folder``      images + ``labels.csv`` (an ``aubench synth`` export)          —
``synthetic``   — (the built-in procedural AU faces)                          ``n=2048``,
                                                                              ``shortcut=0.0``,
                                                                              ``codebook``,
                                                                              ``shortcut_mode``,
                                                                              ``difficulty=``
                                                                              ``moderate``
                                                                              and its knobs
==============  ============================================================  ====================

Each loader's module documents its layout, id → canonical label table and split protocol. Splits:
``train``, ``val``, ``test`` (and ``all`` for the datasets on disk: every row). Where a dataset
ships no validation split, ``val`` is a stratified ``val_fraction`` of train drawn with ``seed``
(CK+: whole subjects), and ``train`` is the rest. ``synthetic`` has its own splits: ``train`` has
``n`` faces, ``val`` and ``test`` ``n // 4`` each.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from aubench.data.affectnet import read_affectnet
from aubench.data.au_datasets import read_bp4d, read_disfa
from aubench.data.base import FaceDataset
from aubench.data.ckplus import read_ckplus
from aubench.data.fer2013 import read_fer2013, read_ferplus
from aubench.data.folder import read_folder
from aubench.data.rafdb import read_rafdb
from aubench.data.sample import Sample
from aubench.data.synthetic import SyntheticFaces
from aubench.data.table import FaceTable
from aubench.faces.synth_difficulty import DEFAULT_DIFFICULTY, get_difficulty

#: Datasets read from disk: name → reader(path, **options) → FaceTable.
READERS: dict[str, Callable[..., FaceTable]] = {
    "rafdb": read_rafdb,
    "affectnet": read_affectnet,
    "fer2013": read_fer2013,
    "ferplus": read_ferplus,
    "ckplus": read_ckplus,
    "disfa": read_disfa,
    "bp4d": read_bp4d,
    "folder": read_folder,
}
#: Default number of synthetic training faces (val and test get a quarter each).
SYNTHETIC_N = 2048
_COMMON = ("size", "seed", "val_fraction", "num_classes", "normalize", "transform", "landmarks")


def _open_from_disk(name: str) -> Callable[..., Dataset]:
    reader = READERS[name]

    def load(path: str | Path | None, split: str, **kwargs: Any) -> FaceDataset:
        if path is None or str(path) == "":
            raise ValueError(f"{name} needs a path: --data {name}:/path/to/{name}")
        common = {k: kwargs.pop(k) for k in _COMMON if k in kwargs}
        _check_options(name, reader, kwargs)
        return FaceDataset(reader(Path(path).expanduser(), **kwargs), split, **common)

    load.__doc__ = f"Open a split of {name} (see :func:`{reader.__module__}.{reader.__name__}`)."
    return load


class SyntheticDataset(SyntheticFaces):
    """:class:`SyntheticFaces` with the attribute every registry dataset has: ``num_classes``."""

    @property
    def num_classes(self) -> int:
        return self.config.num_classes


def _open_synthetic(
    path: str | Path | None,
    split: str,
    *,
    size: int = 112,
    seed: int = 0,
    val_fraction: float = 0.1,
    num_classes: int | None = None,
    normalize: bool = True,
    transform: Callable[[Sample], Sample] | None = None,
    landmarks: str = "auto",
    n: int = SYNTHETIC_N,
    shortcut: float = 0.0,
    codebook: str = "belharbi2024-fixed",
    shortcut_mode: str = "auto",
    difficulty: str = DEFAULT_DIFFICULTY,
    intensity_low: float | None = None,
    intensity_high: float | None = None,
    noise: float | None = None,
    blur: float | None = None,
    occluders: float | None = None,
    pose: float | None = None,
    identity: float | None = None,
    label_noise: float | None = None,
    one_sided: bool = False,
) -> SyntheticDataset:
    """The built-in faces: ``train`` has ``n``, ``val``/``test`` ``n // 4`` (at least 1); the
    landmarks are exact (``landmarks`` may only be ``auto`` or ``dataset``). ``difficulty`` names
    a preset and the knob options override its knobs (``intensity_low``/``intensity_high`` its
    intensity range; :mod:`aubench.faces.synth_difficulty`); ``one_sided`` draws contempt's AUs on
    one side (with ``num_classes=8``)."""
    if path is not None:
        raise ValueError(f"synthetic takes options, not a path (got {path!r}): synthetic:n=2048")
    if landmarks not in ("auto", "dataset"):
        raise ValueError(
            f"synthetic faces carry exact landmarks; landmarks={landmarks!r} is not "
            "supported (use 'auto')"
        )
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test for synthetic, got {split!r}")
    count = n if split == "train" else max(1, n // 4)
    knobs = dict(noise=noise, blur=blur, occluders=occluders, pose=pose, identity=identity)
    knobs = {k: v for k, v in {**knobs, "label_noise": label_noise}.items() if v is not None}
    if intensity_low is not None or intensity_high is not None:
        low, high = get_difficulty(difficulty).intensity
        knobs["intensity"] = (
            low if intensity_low is None else intensity_low,
            high if intensity_high is None else intensity_high,
        )
    return SyntheticDataset(
        count,
        size,
        split,
        seed,
        num_classes or 7,
        codebook,
        shortcut,
        transform=transform,
        normalize=normalize,
        shortcut_mode=shortcut_mode,
        difficulty=get_difficulty(difficulty, **knobs),
        one_sided=one_sided,
    )


#: Every dataset: name → loader(path_or_None, split, **open_dataset keywords, **options).
DATASETS: dict[str, Callable[..., Dataset]] = {
    **{name: _open_from_disk(name) for name in READERS},
    "synthetic": _open_synthetic,
}
_PATHLESS = {"synthetic"}


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _parse_options(text: str, spec: str) -> dict[str, Any]:
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
            raise ValueError(f"bad option {item!r} in data spec {spec!r}: expected key=value")
        options[key.strip()] = _parse_value(value)
    return options


def parse_data_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """Split ``NAME:PATH[?k=v,…]`` or ``synthetic[:k=v,…]`` into ``(name, path or None, options)``.

    Unknown names raise a ``ValueError`` suggesting the nearest known ones.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"data spec must be NAME:PATH or synthetic, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)}){hint}")
    if name in _PATHLESS:
        return name, None, _parse_options(rest, spec)
    path, sep, options = rest.rpartition("?")
    if not sep or "=" not in options:
        path, options = rest, ""
    return name, path or None, _parse_options(options, spec)


def _check_options(name: str, reader: Callable, options: dict[str, Any]) -> None:
    accepted = [
        p.name
        for p in inspect.signature(reader).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) or "none"
        raise ValueError(f"unknown option(s) {unknown} for {name} (accepted: {listed})")


def open_dataset(
    spec: str,
    split: str,
    *,
    size: int = 112,
    seed: int = 0,
    val_fraction: float = 0.1,
    num_classes: int | None = None,
    normalize: bool = True,
    transform: Callable[[Sample], Sample] | None = None,
    landmarks: str = "auto",
) -> Dataset:
    """Open one split of the dataset ``spec`` (see the module docstring) as the Sample contract.

    Items: ``image`` float32 (3, size, size) (ImageNet-normalised when ``normalize``), ``label``
    int (canonical), ``landmarks`` float32 (68, 2) pixels of the returned image (all-NaN when
    unknown), ``id`` str; ``transform`` runs last. The dataset has ``labels`` (every label, no
    image read) and ``num_classes``.

    Args:
        spec: ``NAME:PATH[?options]`` or ``synthetic[:options]``.
        split: ``train``, ``val`` or ``test`` (``all`` for datasets on disk).
        size: output image side in pixels.
        seed: seeds the validation carve (and the synthetic faces).
        val_fraction: share of train moved to ``val`` where the dataset has no validation split.
        num_classes: 7 or 8 (with contempt); ``None`` = the dataset's default protocol
            (AffectNet 7, FERPlus and CK+ 8, folder: 8 if it has contempt).
        normalize: ImageNet normalisation.
        transform: callable on the Sample dict, applied last.
        landmarks: ``auto`` (shipped, then the ``aubench landmarks`` cache, else NaN),
            ``dataset``, ``cache``, ``cache:<backend>``, ``none`` or a ``landmarks.txt`` path.
    """
    name, path, options = parse_data_spec(spec)
    common = {
        "size": size,
        "seed": seed,
        "val_fraction": val_fraction,
        "num_classes": num_classes,
        "normalize": normalize,
        "transform": transform,
        "landmarks": landmarks,
    }
    clash = sorted(set(options) & set(_COMMON))
    if clash:
        raise ValueError(
            f"{clash} cannot be given in the data spec {spec!r}; pass them as arguments"
        )
    if name in _PATHLESS:
        accepted = set(inspect.signature(_open_synthetic).parameters) - {"path", "split", *_COMMON}
        unknown = sorted(set(options) - accepted)
        if unknown:
            listed = ", ".join(sorted(accepted))
            raise ValueError(f"unknown option(s) {unknown} for synthetic (accepted: {listed})")
    return DATASETS[name](path, split, **common, **options)
