"""Score your own model or maps: ``aubench.evaluate`` in Python and ``aubench evaluate`` on the
command line, one code path.

Both build a one-model suite (:func:`evaluation_suite`: the model SPEC with its checkpoint and
card, or the maps, as an :class:`~aubench.bench.suite.ExternalModel`) and run it with
:func:`aubench.bench.runner.run_suite`, so the run folder is exactly ``aubench run``'s: results,
per-image scores, sample maps, manifest; ``aubench report`` and ``aubench check`` read it
unchanged, a killed evaluation resumes, and a folder scored with other files or data is refused.
The default folder is ``<runs_root>/evaluate-<name>-<suite hash>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from aubench.bench.crops import FROM_DATASET
from aubench.bench.results import read_manifest, read_results
from aubench.bench.runner import run_suite
from aubench.bench.suite import CONTROLS, Suite, suite_from_dict
from aubench.models import ModelCard, load_card, spec_card, spec_explainers

#: What ``evaluate`` scores when not told: the suite defaults (attention, CAM, Grad-CAM at
#: stage 5 with the three controls; cosine).
DEFAULT_EXPLAINERS = ("attention", "cam", "gradcam")
DEFAULT_METRICS = ("cosine",)


def default_name(source: str) -> str:
    """A model's name from its SPEC or maps path: ``timm:resnet18`` → ``resnet18``,
    ``nets/grey.py:build`` → ``grey``, ``pkg.fer:build`` → ``fer``, ``grey.pt2`` → ``grey``,
    ``maps/`` → ``maps``, ``belharbi2024:cam`` → ``belharbi2024-cam``."""
    text = str(source)
    if text.startswith("timm:"):
        return text.removeprefix("timm:")
    if spec_card(text) is not None:  # a scheme of models aubench builds: one name per method
        return text.replace(":", "-")
    if Path(text).exists():  # a TorchScript or .pt2 file, maps
        return Path(text).stem or "model"
    target = text.rpartition(":")[0] or text
    return Path(target).stem if target.endswith(".py") else target.rpartition(".")[2]


def evaluation_suite(
    data: str,
    *,
    model: str | os.PathLike | None = None,
    maps: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    card: ModelCard | str | os.PathLike | Mapping[str, Any] | None = None,
    card_overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
    strict: bool = True,
    skip_bad_maps: bool = False,
    explainers: Sequence[str] | None = None,
    controls: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    split: str = "test",
    batch_size: int = 64,
    max_images: int | None = None,
    target: str = "gt",
    samples_per_class: int = 2,
    bootstrap: int = 1000,
    protocol: str = "aubench",
    empty_class: float | None = None,
    evidence: str = "codebook",
) -> Suite:
    """The one-model suite scoring ``model`` (a SPEC, with ``checkpoint``, a path or
    ``{variant: path}``) or ``maps`` on ``data`` (``NAME:PATH``), described by ``card`` (a
    :class:`~aubench.models.ModelCard`, a YAML file or its keys, with ``card_overrides``
    replacing its keys; recorded in full in the suite). Maps are taken to be in the frame of the
    dataset's images (``crop: as-is``) unless the card sets ``crop``; they have no explainers or
    controls. ``None`` takes the defaults above. ``protocol``: the evaluation protocol,
    ``aubench`` or ``belharbi2024`` (the reference code's: its heatmaps, map post-processing and
    undefined scores → 0); ``empty_class``: the value of a class with no scored image, averaged
    into the macro (the reference: −1; None leaves the class out); ``evidence``: also score the
    maps against each image's AU evidence (``facs``, ``detector:PATH``, ``hybrid[:PATH]``;
    metrics ``<name>@evidence``), a model's maps only."""
    if (model is None) == (maps is None):
        raise ValueError("give either a model (a SPEC) or maps to evaluate")
    given_maps = maps is not None
    if given_maps and (explainers or controls):
        raise ValueError("maps are scored as given: explainers and controls apply to a model")
    if not given_maps:  # a SPEC that comes with a card and explainers (belharbi2024:METHOD)
        card = spec_card(model) if card is None else card
        explainers = spec_explainers(model) if explainers is None else explainers
    resolved = resolve_card(card, card_overrides or {}, given_maps)
    source = str(maps if given_maps else model)
    if isinstance(checkpoint, Mapping):
        checkpoint = {str(k): str(v) for k, v in checkpoint.items()}
    elif checkpoint is not None:
        checkpoint = str(checkpoint)
    entry = {
        "name": name or default_name(source),
        "card": resolved.model_dump(mode="json"),
        **(
            {"maps": source, "skip_bad_maps": skip_bad_maps}
            if given_maps
            else {"model": source, "checkpoint": checkpoint, "strict": strict}
        ),
    }
    if given_maps:
        explainers, controls = (), ()
    values = {
        "name": f"evaluate-{entry['name']}",
        "description": f"{source} scored on {data}",
        "data": data,
        "models": [entry],
        "explainers": tuple(DEFAULT_EXPLAINERS if explainers is None else explainers),
        "controls": tuple(CONTROLS if controls is None else controls),
        "metrics": tuple(metrics or DEFAULT_METRICS),
        "eval": {
            "split": split,
            "batch_size": batch_size,
            "target": target,
            "max_images": max_images,
            "samples_per_class": samples_per_class,
        },
        "aggregation": {"bootstrap": bootstrap, "empty_class": empty_class},
        "protocol": protocol,
        "evidence": evidence,
    }
    return suite_from_dict(values, f"aubench evaluate {source}")


def resolve_card(
    card: ModelCard | str | os.PathLike | Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
    maps: bool,
) -> ModelCard:
    """``card`` (a card, its file or its keys) with ``overrides``; for ``maps`` whose card says
    nothing of the crop, ``crop: as-is``."""
    if isinstance(card, ModelCard):
        card = card.model_dump()  # every key set: its crop included
    resolved = load_card(card, **overrides)
    if not maps or "crop" in overrides:
        return resolved
    keys = card if isinstance(card, Mapping) else {}
    if card is not None and not isinstance(card, Mapping):
        keys = yaml.safe_load(Path(card).read_text()) or {}  # load_card has validated it
    return resolved if "crop" in keys else resolved.model_copy(update={"crop": "as-is"})


def evaluate(
    model: str | os.PathLike | None = None,
    data: str | None = None,
    *,
    maps: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    card: ModelCard | str | os.PathLike | Mapping[str, Any] | None = None,
    explainers: Sequence[str] | None = None,
    controls: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    runs_root: str | os.PathLike = "runs",
    device: str | None = None,
    progress: bool = False,
    **options: Any,
) -> tuple[pd.DataFrame, Path]:
    """Score ``model`` (a SPEC: ``timm:NAME``, ``FILE.py:FACTORY``, ``package.module:FACTORY``,
    a TorchScript or ``.pt2`` file) or ``maps`` on ``data`` (``NAME:PATH``); returns the results
    table (one row per model, variant, seed, method, layer, metric and class) and the run folder.

    ``card``: the model card (file, keys or :class:`~aubench.models.ModelCard`); ``checkpoint``:
    a weights file, or ``{variant: file}`` to compare checkpoints (the first is the reference of
    the report's paired tests). ``options``: the other arguments of :func:`evaluation_suite`
    (``name``, ``strict``, ``skip_bad_maps``, ``split``, ``batch_size``, ``max_images``,
    ``target``, ``samples_per_class``, ``bootstrap``, ``protocol``: ``"belharbi2024"`` scores
    the paper's way, ``empty_class``, ``evidence``: ``"facs"`` or ``"detector:PATH"`` also
    scores against each image's AU evidence). What was skipped or counted (checkpoint
    keys, landmarks detected on the fly, unusable maps, metrics needing a model) is in the
    manifest's ``models`` entry and in :func:`notes`."""
    if data is None:
        raise ValueError("give the data to score on: data='NAME:PATH' (e.g. 'folder:faces/')")
    suite = evaluation_suite(
        data,
        model=model,
        maps=maps,
        checkpoint=checkpoint,
        card=card,
        explainers=explainers,
        controls=controls,
        metrics=metrics,
        **options,
    )
    run = run_suite(suite, out=out, runs_root=runs_root, device=device, progress=progress)
    return read_results(run), run


def notes(run: str | os.PathLike) -> list[str]:
    """One line per thing a user should know about a run's models given as they are: the
    checkpoint tensors skipped, landmarks detected on the fly or missing, maps that matched
    oddly or could not be scored, metrics skipped."""
    lines = []
    for cell, info in read_manifest(run)["models"].items():
        if not isinstance(info, Mapping):
            continue  # a trained model: its folder
        if not info.get("complete", True):
            lines.append(f"{cell}: {info['load_report']}")
        counts = info.get("faces", {}).get("counts", {})
        odd = {reason: n for reason, n in counts.items() if reason != FROM_DATASET}
        if odd:
            shown = ", ".join(f"{reason}: {n}" for reason, n in odd.items())
            lines.append(
                f"{cell}: faces by landmark source: dataset {counts.get(FROM_DATASET, 0)}, {shown}"
            )
        if info.get("extra"):
            lines.append(
                f"{cell}: {info['extra']} map(s) match no scored image, e.g. "
                f"{', '.join(info['extra_examples'])}"
            )
        for problem, count in info.get("problems", {}).items():
            examples = "; ".join(info["problem_examples"][problem])
            lines.append(f"{cell}: {count} map(s) {problem}, not scored (e.g. {examples})")
        for metric, why in info.get("skipped_metrics", {}).items():
            lines.append(f"{cell}: {metric} not scored: {why}")
    return lines
