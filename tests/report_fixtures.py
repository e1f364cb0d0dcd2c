"""Run folders written by hand with the results store's own writers, for the report tests.

:func:`make_run` writes a realistic run: one model, five variants (a baseline, guided λ = 1, 4,
9 at layer4, and guided λ = 4 at layer3+layer4), two seeds, three methods (``cam`` at layer4,
``grad_cam`` and ``attention`` at layer3 and layer4) plus two controls, the metrics ``cosine``,
``kl`` (lower is better), ``iou`` and the per-AU ``au_energy:AU6``/``AU12``, per-image scores
(14 faces, 2 per class) from which the results rows are aggregated exactly as the runner does
(per-class means, macro over non-neutral classes, image-level mean), and sample faces.

:func:`make_tiny_run` writes the 2 methods × 2 variants run of the golden tests from literal
numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from aubench.bench.results import (
    CLASSIFIER,
    PER_IMAGE_COLUMNS,
    RESULT_COLUMNS,
    per_image_file,
    sample_file,
    write_manifest,
    write_per_image,
    write_results,
    write_samples,
)

MODEL = "resnet_18"
SPLIT = "test"
SUITE = "unit"
METRICS = {
    "cosine": {"higher_is_better": True, "range": [0.0, 1.0], "category": "correlation"},
    "kl": {"higher_is_better": False, "range": [0.0, float("inf")], "category": "saliency"},
    "iou": {"higher_is_better": True, "range": [0.0, 1.0], "category": "overlap"},
    "au_energy": {"higher_is_better": True, "range": [0.0, 1.0], "category": "mass"},
}
VARIANTS = {
    "baseline": {"guided": False, "lam": 0.0, "layers": [], "loss": "ce"},
    "guided_l1": {"guided": True, "lam": 1.0, "layers": ["layer4"], "loss": "ce+cos"},
    "guided": {"guided": True, "lam": 4.0, "layers": ["layer4"], "loss": "ce+cos"},
    "guided_l9": {"guided": True, "lam": 9.0, "layers": ["layer4"], "loss": "ce+cos"},
    "guided_34": {"guided": True, "lam": 4.0, "layers": ["layer3", "layer4"], "loss": "ce+cos"},
}
#: method → its layers ("" for the layer-less controls)
METHODS = {
    "cam": ["layer4"],
    "grad_cam": ["layer3", "layer4"],
    "attention": ["layer3", "layer4"],
    "control:random": [""],
    "control:centre": [""],
}
LABELS = np.repeat(np.arange(7), 2)  # 14 faces, two per class, neutral = 0
SIZE = 16


def make_run(root: Path, seeds: Sequence[int] = (0, 1)) -> Path:
    """Write the realistic run folder described in the module doc under ``root/run``."""
    run = root / "run"
    run.mkdir(parents=True)
    manifest = {"variants": VARIANTS, "metrics": METRICS, "layers": ["layer3", "layer4"]}
    write_manifest(run, {**manifest, "git_commit": "abc1234", "seeds": list(seeds)})
    results = []
    for variant, spec in VARIANTS.items():
        for seed in seeds:
            scores = _per_image(variant, spec, seed)
            write_per_image(per_image_file(run, MODEL, variant, seed, SPLIT), scores)
            results.append(aggregate(scores))
            if seed == seeds[0]:
                write_samples(sample_file(run, MODEL, variant, seed), _samples(spec))
    write_results(run, pd.concat(results, ignore_index=True))
    return run


def aggregate(scores: pd.DataFrame) -> pd.DataFrame:
    """Results rows of one cell's per-image scores: per class, macro (non-neutral), all; CI =
    value ± 0.02 (map metrics) or ± 2 (accuracy)."""
    scores = scores.copy()
    pred = scores["metric"] == "pred"
    scores.loc[pred, "value"] = 100.0 * (scores.loc[pred, "value"] == scores.loc[pred, "label"])
    scores.loc[pred, "metric"] = "accuracy"
    keys = ["model", "variant", "seed", "split", "method", "layer", "metric"]
    rows = []
    for key, group in scores.groupby(keys, sort=False):
        scored = group[group["value"].notna()]
        per_class = scored.groupby("label")["value"].mean()
        values = {str(c): v for c, v in per_class.items()}
        values["all"] = scored["value"].mean()
        if key[-1] != "accuracy":
            values["macro"] = per_class.drop(0, errors="ignore").mean()
        half = 2.0 if key[-1] == "accuracy" else 0.02
        for cls, value in values.items():
            row = dict(zip(keys, key, strict=True), suite=SUITE, value=value)
            row.update({"class": cls, "ci_low": value - half, "ci_high": value + half})
            row.update(n=len(scored), n_excluded=len(group) - len(scored))
            rows.append(row)
    return pd.DataFrame(rows)[RESULT_COLUMNS]


def _per_image(variant: str, spec: Mapping, seed: int) -> pd.DataFrame:
    """Per-image scores: guidance raises cosine/iou and lowers kl, more with λ (saturating)."""
    rng = np.random.default_rng([seed, list(VARIANTS).index(variant)])
    gain = 0.25 * min(spec["lam"], 4.0) / 4.0 + 0.05 * (len(spec["layers"]) - 1)
    rows = []
    ids = [f"img{i:02d}" for i in range(len(LABELS))]
    for m, (method, layers) in enumerate(METHODS.items()):
        control = method.startswith("control:")
        for k, layer in enumerate(layers):
            base = 0.2 + 0.1 * m if control else 0.35 + 0.05 * m + 0.05 * k
            for metric in [*METRICS, "au_energy:AU6", "au_energy:AU12"]:
                if metric == "au_energy":
                    continue
                noise = rng.normal(0.0, 0.03, len(LABELS))
                value = base + (0.0 if control else gain) + noise
                if metric == "kl":
                    value = 2.0 - 2.0 * value
                elif metric.startswith("au_energy"):
                    value = value / (2.0 if metric.endswith("12") else 1.5)
                value = np.where(LABELS == 0, np.nan, value)
                rows += [
                    (id_, label, method, layer, metric, v, "neutral" if label == 0 else "valid")
                    for id_, label, v in zip(ids, LABELS, value, strict=True)
                ]
    correct = 10 + round(4 * min(spec["lam"], 4.0) / 4.0) - (seed % 2)
    preds = np.where(np.arange(len(LABELS)) < correct, LABELS, (LABELS + 1) % 7)
    rows += [
        (id_, label, CLASSIFIER, "", "pred", float(p), "valid")
        for id_, label, p in zip(ids, LABELS, preds, strict=True)
    ]
    columns = ["id", "label", "method", "layer", "metric", "value", "reason"]
    table = pd.DataFrame(rows, columns=columns)
    table = table.assign(model=MODEL, variant=variant, seed=seed, split=SPLIT)
    return table[PER_IMAGE_COLUMNS]


def _samples(spec: Mapping) -> dict[str, np.ndarray]:
    """One face per class: a grey gradient face, a centred blob heatmap, and maps that sit on
    the blob more when guided."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    blob = np.exp(-((xx - 0.5) ** 2 + (yy - 0.6) ** 2) / 0.02)
    n = 7
    images = [np.stack([xx * 255, yy * 255, np.full_like(xx, 40.0 * c)], -1) for c in range(n)]
    arrays = {
        "images": np.stack(images).astype(np.uint8),
        "heatmaps": np.repeat(blob[None], n, 0).astype(np.float16),
        "labels": np.arange(n),
        "ids": np.array([f"img{2 * c:02d}" for c in range(n)]),
    }
    weight = 0.3 + 0.7 * min(spec["lam"], 4.0) / 4.0
    for method, layers in METHODS.items():
        if not method.startswith("control:"):
            corner = np.exp(-((xx - 0.1) ** 2 + (yy - 0.1) ** 2) / 0.05)
            shown = weight * blob + (1 - weight) * corner
            arrays[f"map|{method}|{layers[-1]}"] = np.repeat(shown[None], n, 0).astype(np.float16)
    return arrays


def make_tiny_run(
    root: Path,
    kl: Mapping[tuple[str, str], float],
    per_image: Mapping[str, Sequence[float]] | None = None,
    cosine: Mapping[tuple[str, str], float] | None = None,
) -> Path:
    """A 2 methods × 2 variants run from literal numbers.

    Args:
        root: parent folder (the run is ``root/tiny``).
        kl: (method, variant) → macro ``kl``; variants ``baseline`` and ``guided``.
        per_image: method → per-image ``kl`` differences (guided − baseline) of as many faces,
            written as per-image scores (baseline 1.0 + i, guided 1.0 + i + difference).
        cosine: (method, variant) → macro ``cosine``, when wanted.
    """
    run = root / "tiny"
    run.mkdir(parents=True)
    variants = {
        "baseline": {"guided": False, "lam": 0.0, "layers": [], "loss": "ce"},
        "guided": {"guided": True, "lam": 4.0, "layers": ["layer4"], "loss": "ce+cos"},
    }
    write_manifest(run, {"variants": variants, "metrics": METRICS})
    accuracy = {"baseline": 80.0, "guided": 85.5}
    rows = [("classifier", "", "accuracy", "all", v, x) for v, x in accuracy.items()]
    for name, table in (("kl", kl), ("cosine", cosine or {})):
        rows += [(m, "layer4", name, "macro", v, x) for (m, v), x in table.items()]
    frame = pd.DataFrame(rows, columns=["method", "layer", "metric", "class", "variant", "value"])
    frame = frame.assign(suite=SUITE, model=MODEL, seed=0, split=SPLIT, ci_low=np.nan)
    frame = frame.assign(ci_high=np.nan, n=10, n_excluded=0)
    write_results(run, frame[RESULT_COLUMNS])
    for variant in variants:
        scores = [
            (f"img{i}", 1, method, "layer4", "kl", 1.0 + i + (d if variant == "guided" else 0.0))
            for method, diffs in (per_image or {}).items()
            for i, d in enumerate(diffs)
        ]
        table = pd.DataFrame(scores, columns=["id", "label", "method", "layer", "metric", "value"])
        table = table.assign(model=MODEL, variant=variant, seed=0, split=SPLIT, reason="valid")
        if per_image:
            write_per_image(per_image_file(run, MODEL, variant, 0, SPLIT), table[PER_IMAGE_COLUMNS])
    return run
