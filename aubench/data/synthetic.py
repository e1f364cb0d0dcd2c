"""The built-in synthetic AU faces as a torch Dataset, and their export to a folder.

Images come from :mod:`aubench.faces.synth`: (seed, split, index) fixes image, landmarks and
label on any machine. Labels are already canonical (0 neutral … 6 sadness, 7 contempt with 8
classes), so there is no id mapping to document; every block of ``num_classes`` consecutive
indices holds each class once. AU counterfactuals of any item (some AUs removed or scaled, all
else equal) come from :meth:`SyntheticFaces.counterfactual` and, batched,
:meth:`SyntheticFaces.counterfactuals`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from aubench.data.sample import IMAGENET_MEAN, IMAGENET_STD, Sample
from aubench.faces.codebook import EXPRESSIONS, Codebook
from aubench.faces.synth import (
    Intervention,
    SynthConfig,
    SynthSample,
    check_size,
    face_landmarks,
    given_label_of,
    render_as_sample,
    render_sample,
    rendered_intensity,
    sample_params,
    split_code,
)
from aubench.faces.synth_difficulty import Difficulty
from aubench.io import write_atomic

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


class SyntheticFaces(Dataset):
    """``n`` procedural AU faces of one split, yielding the Sample contract (DESIGN.md).

    Each item is a dict: ``image`` float32 (3, size, size) — RGB in [0, 1], then
    ``(x − IMAGENET_MEAN) / IMAGENET_STD`` when ``normalize`` —, ``label`` int (canonical order),
    ``landmarks`` float32 (68, 2) (x, y) pixels, ``id`` ``"synthetic-<split>-<index:06d>"``,
    ``shortcut`` bool (whether the class-coloured cue was drawn), ``cue_corner`` int (its corner
    for :func:`~aubench.faces.synth.cue_box`, −1: none) and ``au_intensity`` float32
    (len(ALL_AUS),): the intensity each AU was drawn at, 0 for absent AUs, indexed like
    :data:`aubench.faces.codebook.ALL_AUS` (the ground-truth AU evidence). ``transform`` (a
    callable on that dict) is applied last.

    Args:
        n: number of faces (indices 0 … n − 1).
        size: image side in pixels, 64–224.
        split: ``train``, ``val`` or ``test`` (different faces; ``test`` decorrelates the
            shortcut cue by default).
        seed: non-negative int.
        num_classes: 7 or 8 (with contempt).
        codebook: the expression → AU codebook the faces show.
        shortcut: probability ρ of the class-coloured background cue (0 = never).
        shortcut_mode: ``auto``, ``correlated`` or ``decorrelated`` (see :class:`SynthConfig`).
        difficulty: ``easy`` (default here: the knob-free faces), ``moderate`` (the default
            of a ``synthetic:`` data spec and ``aubench synth``), ``hard``, knobs or a
            ``Difficulty`` (:mod:`aubench.faces.synth_difficulty`).
        one_sided: contempt faces show their AUs on one side (``au_side`` in each sample: −1,
            +1, or 0 for faces drawn on both sides; see :class:`SynthConfig`).
        transform: optional callable applied to each Sample dict.
        normalize: apply the ImageNet normalisation.
    """

    def __init__(
        self,
        n: int,
        size: int = 112,
        split: str = "train",
        seed: int = 0,
        num_classes: int = 7,
        codebook: str | Codebook | Mapping = "belharbi2024-fixed",
        shortcut: float = 0.0,
        transform: Callable[[Sample], Sample] | None = None,
        normalize: bool = True,
        shortcut_mode: str = "auto",
        difficulty: str | Difficulty | Mapping = "easy",
        one_sided: bool = False,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.n = n
        self.size = check_size(size)
        split_code(split)
        self.split = split
        self.seed = seed
        self.config = SynthConfig(
            num_classes, codebook, shortcut, shortcut_mode, difficulty, one_sided
        )
        self.transform = transform
        self.normalize = normalize

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        return self._sample(index, self.render(index), None)

    def counterfactual(self, index: int, intervention: Intervention) -> Sample:
        """Item ``index`` with its AUs changed by ``intervention``, as a Sample dict.

        The same keys as ``dataset[index]`` (the same transform applied): the same identity,
        pose, lighting, background and shortcut patch; ``label`` stays the item's class;
        ``landmarks`` are those the counterfactual is drawn from (a removed AU's displacement
        is absent from them, a scaled one's scaled); ``au_intensity`` is what was drawn;
        ``id`` is ``"<sample_id>@<intervention>"`` (the plain sample id for the identity, whose
        counterfactual is ``dataset[index]`` bit for bit).
        """
        return self._sample(index, self.render(index, intervention), intervention)

    def counterfactuals(
        self,
        indices: Sequence[int],
        interventions: Intervention | Sequence[Intervention],
        collate_fn: Callable[[list[Sample]], dict] = default_collate,
    ) -> dict:
        """The counterfactuals of many items as one batch: ``collate_fn`` (default
        ``default_collate``; pass :class:`~aubench.data.batch.HeatmapCollate` for heatmaps) of
        ``[counterfactual(i, v) for i, v in zip(indices, interventions)]``.

        ``interventions`` is one per index, or a single one for all (e.g. one AU removed from
        every face that shows it: one batched forward per AU). Each distinct index's parameters
        are sampled once, however many interventions it comes with.
        """
        items = [self._index(i) for i in indices]
        if isinstance(interventions, Intervention):
            interventions = [interventions] * len(items)
        elif len(interventions) != len(items):
            raise ValueError(
                f"counterfactuals got {len(items)} indices but {len(interventions)} interventions"
            )
        params = {
            i: sample_params(self.seed, self.split, i, self.config) for i in dict.fromkeys(items)
        }
        return collate_fn(
            [
                self._sample(i, render_as_sample(params[i], self.size, v), v)
                for i, v in zip(items, interventions, strict=True)
            ]
        )

    def render(self, index: int, intervention: Intervention | None = None) -> SynthSample:
        """Item ``index`` (its counterfactual under ``intervention``, if given) as numpy: uint8
        (size, size, 3) RGB image, landmarks, label, shortcut, AU intensities."""
        return render_sample(
            self.seed, self.split, self._index(index), self.size, self.config, intervention
        )

    def au_intensity(self, index: int) -> np.ndarray:
        """float32 (len(ALL_AUS),) the intensities item ``index`` is drawn with, as its sample's
        ``au_intensity``, without rendering it (its ``facs`` evidence)."""
        params = sample_params(self.seed, self.split, self._index(index), self.config)
        return rendered_intensity(params).astype(np.float32)

    def sample_id(self, index: int, intervention: Intervention | None = None) -> str:
        """``"synthetic-<split>-<index:06d>"``, then ``"@<intervention>"`` unless ``intervention``
        is None or the identity (e.g. ``synthetic-test-000012@au12x0``)."""
        base = f"synthetic-{self.split}-{self._index(index):06d}"
        if intervention is None or intervention.is_identity:
            return base
        return f"{base}@{intervention}"

    def _sample(self, index: int, face: SynthSample, intervention: Intervention | None) -> Sample:
        """The Sample dict of a rendered ``face`` of item ``index``, ``transform`` applied."""
        image = torch.from_numpy(face.image).permute(2, 0, 1).float().div_(255.0)
        if self.normalize:
            image = image.sub_(_MEAN).div_(_STD)
        sample = {
            "image": image,
            "label": face.label,
            "landmarks": torch.from_numpy(face.landmarks),
            "id": self.sample_id(index, intervention),
            "shortcut": face.shortcut,
            "au_intensity": torch.from_numpy(face.au_intensity),
            "cue_corner": face.cue_corner,
        }
        if self.config.one_sided:
            sample["au_side"] = face.side
        return self.transform(sample) if self.transform is not None else sample

    @property
    def labels(self) -> list[int]:
        """Every item's (given) label, without rendering (for samplers and class counts)."""
        return [given_label_of(self.seed, self.split, i, self.config) for i in range(self.n)]

    @property
    def content_fingerprint(self) -> str:
        """16 hex digits of SHA-256 identifying these faces: the settings that fix them (n, size,
        split, seed, classes, each class's AUs, shortcut and its mode, the difficulty's knobs
        unless easy), every label, and the
        pixels and landmarks of the first and the last face (rendered, so a change of the
        renderer changes it too). The counterpart of
        :attr:`aubench.data.base.FaceDataset.content_fingerprint`."""
        settings = {
            "n": self.n,
            "size": self.size,
            "split": self.split,
            "seed": self.seed,
            "num_classes": self.config.num_classes,
            "class_aus": self.config.class_aus,
            "shortcut": self.config.shortcut,
            "shortcut_mode": self.config.shortcut_mode,
        }
        if not self.config.difficulty.is_easy:  # easy faces keep their earlier fingerprint
            settings["difficulty"] = self.config.difficulty.describe()
        if self.config.one_sided:
            settings["one_sided"] = True
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        digest.update(np.asarray(self.labels, dtype=np.int64).tobytes())
        for index in sorted({0, self.n - 1}):
            face = self.render(index)
            digest.update(face.image.tobytes() + face.landmarks.tobytes())
        return digest.hexdigest()[:16]

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} synthetic faces")
        return int(index) % self.n


def export_synthetic(
    dataset: SyntheticFaces, out_dir: str | os.PathLike, progress: bool = True
) -> Path:
    """Write every face of ``dataset`` to ``out_dir`` and return its path.

    Layout: ``images/<id>.png`` (RGB), ``labels.csv`` with header
    ``image,label,expression,x0,…,x67,y0,…,y67`` (image path relative to ``out_dir``, canonical
    label id, expression name, landmark pixels with 3 decimals) and ``synth.json`` (the generator
    settings). The folder is what the ``folder`` dataset reads. A preview grid is
    :func:`aubench.data.preview.save_synthetic_preview`.

    Every file is written atomically (temporary file, then rename). Re-running on a previous export
    with the same settings keeps the images already there (any n: it extends or re-lists) and
    rewrites the CSV. A non-empty folder that is not an export, or an export made with other
    settings, is refused with an error.
    """
    out = Path(out_dir)
    settings = {
        "generator": "aubench.faces.synth",
        "size": dataset.size,
        "split": dataset.split,
        "seed": dataset.seed,
        "num_classes": dataset.config.num_classes,
        "codebook": dataset.config.codebook,
        "shortcut": dataset.config.shortcut,
    }
    if not dataset.config.difficulty.is_easy:
        settings["difficulty"] = dataset.config.difficulty.describe()
    _prepare_export_dir(out, settings)
    images_dir = out / "images"
    images_dir.mkdir(exist_ok=True)
    write_atomic(out / "synth.json", json.dumps(settings, indent=2).encode())

    rows = []
    for index in tqdm(
        range(len(dataset)), desc="synthetic faces", unit="face", disable=not progress
    ):
        name = f"{dataset.sample_id(index)}.png"
        path = images_dir / name
        if path.exists():
            params = sample_params(dataset.seed, dataset.split, index, dataset.config)
            landmarks, label = face_landmarks(params, dataset.size), params.given_label
        else:
            face = dataset.render(index)
            landmarks, label = face.landmarks, face.label
            write_atomic(path, _png(face.image))
        rows.append(
            [f"images/{name}", label, EXPRESSIONS[label]]
            + [f"{v:.3f}" for v in landmarks[:, 0]]
            + [f"{v:.3f}" for v in landmarks[:, 1]]
        )
    header = ["image", "label", "expression"]
    header += [f"x{i}" for i in range(68)] + [f"y{i}" for i in range(68)]
    write_atomic(out / "labels.csv", _csv_bytes([header, *rows]))
    return out


def _prepare_export_dir(out: Path, settings: dict) -> None:
    """Create ``out`` or check that it is empty or a previous export with the same settings."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not ((out / "labels.csv").is_file() or (out / "images").is_dir()):
            raise FileExistsError(
                f"{out} is not empty and is not a synthetic export (no labels.csv or images/); "
                "choose an empty or new directory"
            )
        manifest = out / "synth.json"
        if manifest.is_file():
            previous = json.loads(manifest.read_text())
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            if changed:
                details = ", ".join(f"{k}: {previous.get(k)!r} → {settings[k]!r}" for k in changed)
                raise ValueError(
                    f"{out} holds an export made with other settings ({details}); "
                    "use a new directory"
                )
    out.mkdir(parents=True, exist_ok=True)


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def _csv_bytes(rows: list[list]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().encode()
