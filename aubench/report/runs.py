"""A run folder as the report reads it: headline rows averaged over seeds, metric metadata,
variants, layer order, and the per-image scores and paired tests behind the significance marks.

Conventions on top of :mod:`aubench.bench.results`:

- the *headline* value of a map metric is its ``class == "macro"`` row (the paper's macro over
  non-neutral classes); of ``accuracy`` the ``class == "all"`` row of method ``classifier``;
- ``manifest["variants"]`` = ``{name: {"guided", "lam", "layers", "loss"}}``: "w/o AU" are the
  variants with ``guided`` false, "w/ AU" those with ``guided`` true; the first unguided variant
  is *the baseline* every guided variant is tested against;
- ``manifest["metrics"]`` = ``{name: {"higher_is_better", "range", "category"}}``; a column
  derived from a metric (``au_energy:AU<k>``, ``sanity_spearman:<module>``, see
  :func:`aubench.metrics.derived_column`) falls back on the entry of its family
  (``au_energy``), then of its metric (``per_au_energy``), then on the metric's definition;
  ``accuracy`` (in %, higher is better) needs no entry;
- methods named ``control:<name>`` are controls; ``classifier`` carries the accuracy rows;
- layers follow ``manifest["layers"]`` (a list, or a mapping whose lists are concatenated) and
  then their order of first appearance in the results; a method's *main layer* (the one the
  method tables show) is the last of its layers in that order, for each model;
- ``manifest["methods"]`` (suites that train more than CAM) = ``{model: {"method", "model",
  "block", "explainer", "layer", "class_agnostic", "aligned"}}``: how each model of the results
  was trained
  (:class:`TrainedMethod`); the method tables then show one row per method in the paper's order;
- ``manifest["evidence"]`` (runs scored against per-image AU evidence too) = ``{"evidence",
  "cells": {cell: counts}}``; a metric scored against the evidence heatmaps is named
  ``<metric>@evidence`` (:data:`EVIDENCE_SUFFIX`), and each cell's
  ``cells/<model>__<variant>__<seed>__<split>.evidence.json`` adds its classes' agreement with
  their prototypes (:attr:`RunData.evidence_cells`, :attr:`RunData.agreements`); a variant's
  ``train.evidence`` in the manifest's suite says what its guided training aligned with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aubench.bench.results import (
    CLASSIFIER,
    KEY_COLUMNS,
    read_manifest,
    read_per_image,
    read_results,
)
from aubench.faces.codebook import EXPRESSIONS
from aubench.metrics import ACCURACY as ACCURACY_COLUMN
from aubench.metrics import derived_column
from aubench.report.stats import paired_tests, seed_summary

ACCURACY = ACCURACY_COLUMN.name
CONTROL_PREFIX = "control:"
#: What identifies a headline row once the seeds are averaged (and the split is chosen).
CELL_KEY = ["model", "variant", "method", "layer", "metric"]
#: The numbers a headline cell carries.
CELL_NUMBERS = ("value", "ci_low", "ci_high", "spread")
#: The suffix of a metric scored against per-image AU evidence (``cosine@evidence``), as
#: :data:`aubench.bench.evaluate.EVIDENCE_SUFFIX` names it.
EVIDENCE_SUFFIX = "@evidence"
#: The ``evidence`` setting of heatmaps drawn from the codebook alone (no per-image evidence).
CODEBOOK = "codebook"


@dataclass(frozen=True)
class MetricInfo:
    """A metric's metadata as tables and figures use it."""

    name: str
    higher_is_better: bool
    range: tuple[float, float]
    category: str

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, else ``↓``."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def label(self) -> str:
        """Header text without the arrow (``accuracy (%)`` for accuracy, else the name)."""
        return "accuracy (%)" if self.name == ACCURACY else self.name

    @property
    def digits(self) -> int:
        """Decimals shown: 2 for metrics spanning ≥ 10 units (accuracy in %, unbounded), else 3."""
        low, high = self.range
        return 2 if high - low >= 10 else 3


@dataclass(frozen=True)
class TrainedMethod:
    """How one model of the results was trained (``manifest["methods"][model]``): its training
    ``method`` (``cam``, ``wildcat``, …) on timm ``model``, the ``block`` of the method tables
    it is compared in (a suite model), the ``explainer`` and ``layer`` of the method's own map,
    whether that map is ``class_agnostic`` (one map for every class: no CAM-COS), and the
    layers its guided variants align (``aligned``, instead of the variants' own)."""

    label: str
    method: str
    model: str
    block: str
    explainer: str
    layer: str
    class_agnostic: bool
    aligned: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """One trained variant of a suite (``manifest["variants"][name]``); ``evidence``: the AUs
    its heatmaps were drawn from in training (the suite's ``train.evidence``, or the variant's
    own ``train.evidence``)."""

    name: str
    guided: bool
    lam: float
    layers: tuple[str, ...]
    loss: str
    evidence: str = CODEBOOK

    @property
    def group(self) -> str:
        """The paper's column group: ``w/ AU`` for guided variants, else ``w/o AU``."""
        return "w/ AU" if self.guided else "w/o AU"


@dataclass(frozen=True)
class ClassAgreement:
    """How the AUs one class's images show agree with the class's prototype
    (:func:`aubench.faces.evidence.prototype_agreement`): of its ``n`` images, ``exact`` show
    exactly the ``prototype`` AUs, ``jaccard`` is the mean Jaccard index of an image's AUs
    with the prototype, ``frequency`` maps each AU shown or in the prototype to the share of
    the images showing it."""

    name: str
    n: int
    prototype: tuple[int, ...]
    exact: int
    jaccard: float
    frequency: dict[int, float]

    @property
    def exact_share(self) -> float:
        """``exact / n``: the share of the class's images showing exactly its prototype."""
        return self.exact / self.n


@dataclass(frozen=True)
class Agreement:
    """The codebook–evidence agreement of one or more cells that found the same (the same
    images, evidence and ``codebook``; usually every cell of a run): their ``cells`` keys and
    each class's :class:`ClassAgreement`, in the canonical class order."""

    cells: tuple[str, ...]
    codebook: str
    classes: tuple[ClassAgreement, ...]

    @property
    def aus(self) -> list[int]:
        """Every AU some class shows or has in its prototype, by number."""
        return sorted({au for c in self.classes for au in c.frequency})


def is_control(method: str) -> bool:
    """Whether ``method`` is a control map (``control:random`` …)."""
    return method.startswith(CONTROL_PREFIX)


def headline_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results table that tables show: ``macro`` for map metrics, ``all`` for
    accuracy."""
    want = table["metric"].map(lambda m: "all" if m == ACCURACY else "macro")
    return table[table["class"] == want]


def metric_info(metrics: Mapping[str, Any], name: str, where: str = "the manifest") -> MetricInfo:
    """The metadata of metric ``name`` from a ``manifest["metrics"]`` mapping.

    A derived column (``au_energy:AU6``) falls back on its family (``au_energy``), then its
    metric (``per_au_energy``); derived columns and ``accuracy``, which the bench itself adds,
    then fall back on their definition in :mod:`aubench.metrics`. Raises ``ValueError`` naming
    the metric and ``where`` when there is none.
    """
    column = ACCURACY_COLUMN if name == ACCURACY else derived_column(name)
    names = [name] if column is None else list(dict.fromkeys([name, column.family, column.metric]))
    entry = next((metrics[n] for n in names if n in metrics), None)
    if entry is None and column is not None:
        entry = column.metadata()
    if entry is None:
        known = ", ".join(sorted(metrics)) or "none"
        raise ValueError(f"{where} has no metadata for metric {name!r} (it describes: {known})")
    try:
        low, high = entry["range"]
        return MetricInfo(name, bool(entry["higher_is_better"]), (low, high), entry["category"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{where}: metadata of metric {name!r} needs higher_is_better, range [lo, hi] and "
            f"category, got {entry!r} ({err})"
        ) from None


def control_flags(table: pd.DataFrame, metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Flag the scores a control map matches: "cannot tell this method from a control".

    For every row of a real method (not a control, not the classifier) the best control of the
    same (suite, model, variant, seed, split, metric) — whichever of those columns ``table``
    has; a control's layer is not matched — is compared with the method's value: the row is
    flagged when that control is better than or equal to the value (by the metric's direction),
    or lies within the value's CI ``[ci_low, ci_high]``. A results table is first reduced to its
    headline rows (``macro``; ``all`` for accuracy).

    Args:
        table: results rows (:data:`aubench.bench.results.RESULT_COLUMNS`, or the seed-averaged
            :attr:`RunData.summary`).
        metrics: ``manifest["metrics"]`` (directions; ``ValueError`` names a metric without).

    Returns:
        The real methods' rows: the group columns, ``method``, ``layer``, ``metric``, ``value``,
        ``ci_low``, ``ci_high``, ``control`` (the best control, NaN when none),
        ``control_value`` and ``flagged`` (bool).
    """
    rows = headline_rows(table) if "class" in table.columns else table
    rows = rows[(rows["method"] != CLASSIFIER) & rows["value"].notna()]
    group = [c for c in ("suite", "model", "variant", "seed", "split") if c in rows.columns]
    higher = {m: metric_info(metrics, m).higher_is_better for m in set(rows["metric"])}
    controlled = rows["method"].map(is_control).astype(bool)
    controls = rows[controlled]
    sign = np.where(controls["metric"].map(higher).astype(bool), 1.0, -1.0)
    controls = controls.assign(score=controls["value"].to_numpy(np.float64) * sign)
    best = controls.sort_values("score", ascending=False, kind="stable")
    best = best.drop_duplicates([*group, "metric"])[[*group, "metric", "method", "value"]]
    best = best.rename(columns={"method": "control", "value": "control_value"})
    out = rows[~controlled].merge(best, on=[*group, "metric"], how="left")
    up = out["metric"].map(higher).astype(bool)
    gap = out["control_value"] - out["value"]
    better = (up & (gap >= 0)) | (~up & (gap <= 0))
    within = (out["ci_low"] <= out["control_value"]) & (out["control_value"] <= out["ci_high"])
    out["flagged"] = better | within
    keep = [*group, "method", "layer", "metric", "value", "ci_low", "ci_high"]
    return out[[*keep, "control", "control_value", "flagged"]].reset_index(drop=True)


class RunData:
    """The results of one run folder restricted to one split and a choice of variants.

    Attributes:
        path: the run folder.
        manifest: its ``manifest.json``.
        split: the split shown.
        variants: the variants shown, in the order given, else of first appearance in the
            results (``manifest.json`` is written with sorted keys, so its order is not the
            suite's).
        results: the results rows of that split and those variants (``layer`` "" when empty).
        layers: every layer in display order.
    """

    def __init__(
        self,
        run: str | os.PathLike,
        split: str | None = None,
        variants: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(run)
        if not self.path.is_dir():
            raise FileNotFoundError(f"run folder {self.path} does not exist")
        self.manifest = read_manifest(self.path)
        table = read_results(self.path)
        table["layer"] = table["layer"].fillna("").astype(str)
        self.split = _choose_split(table, split, self.path)
        self.variants = _variants(self.manifest, table, variants, self.path)
        keep = (table["split"] == self.split) & table["variant"].isin(list(self.variants))
        self.results = table[keep].reset_index(drop=True)
        self.layers = _layer_order(self.manifest.get("layers"), self.results["layer"])
        self._where = f"{self.path / 'manifest.json'} ('metrics')"
        for metric in dict.fromkeys(self.results["metric"]):
            self.info(metric)  # every metric shown needs its direction: fail early, naming it

    def info(self, metric: str) -> MetricInfo:
        """Metadata of ``metric`` (``ValueError`` naming it and the manifest when unknown)."""
        return metric_info(self.manifest.get("metrics") or {}, metric, self._where)

    @property
    def baseline(self) -> str | None:
        """The first unguided variant shown, None when every variant is guided."""
        return next((v.name for v in self.variants.values() if not v.guided), None)

    @cached_property
    def labels(self) -> dict[str, str]:
        """Variant → its column label: ``w/o AU`` / ``w/ AU``, plus ``(name)`` when several
        variants share a group."""
        groups = [v.group for v in self.variants.values()]
        return {
            v.name: v.group if groups.count(v.group) == 1 else f"{v.group} ({v.name})"
            for v in self.variants.values()
        }

    @property
    def models(self) -> list[str]:
        """Models in order of first appearance."""
        return list(dict.fromkeys(self.results["model"]))

    @property
    def methods(self) -> list[str]:
        """Explainer methods (no controls, no classifier) in order of first appearance."""
        return [m for m in self._all_methods if not is_control(m)]

    @property
    def controls(self) -> list[str]:
        """Control methods in order of first appearance."""
        return [m for m in self._all_methods if is_control(m)]

    @cached_property
    def _all_methods(self) -> list[str]:
        return [m for m in dict.fromkeys(self.results["method"]) if m != CLASSIFIER]

    @property
    def seeds(self) -> list[int]:
        """Seeds present, sorted."""
        return sorted(set(self.results["seed"].tolist()))

    def map_metrics(self) -> list[str]:
        """Map metrics present (not accuracy, not per-AU, not per randomised depth), in order
        of first appearance."""
        present = dict.fromkeys(self.results["metric"])
        return [m for m in present if m != ACCURACY and derived_column(m) is None]

    def sanity_metrics(self) -> list[str]:
        """The per-depth columns of sanity metrics present (``sanity_spearman:<module>``), in
        cascade order: randomised down to the top layer first, to the stem last (every weight
        randomised)."""
        return self._derived("sanity")

    def per_au_metrics(self) -> list[str]:
        """The per-AU columns present (``au_energy:AU<k>``), by AU number."""
        return sorted(self._derived("per_au"), key=lambda m: (derived_column(m).order, m))

    def _derived(self, kind: str) -> list[str]:
        """The columns derived from metrics of ``kind`` present, in order of appearance."""
        present = dict.fromkeys(self.results["metric"])
        return [m for m in present if (c := derived_column(m)) is not None and c.kind == kind]

    def layers_of(self, method: str, model: str | None = None) -> list[str]:
        """The layers ``method`` has rows for (of ``model``; default: of any model), in display
        order."""
        return list(self._layers.get((model, method), ()))

    @cached_property
    def _layers(self) -> dict[tuple[str | None, str], list[str]]:
        """(model, method) → its layers in display order, and (None, method) → its layers over
        every model (every lookup of a table reads them)."""
        pairs = self.results[["model", "method", "layer"]].drop_duplicates()
        have: dict[tuple[str | None, str], set[str]] = {}
        for model, method, layer in pairs.itertuples(index=False, name=None):
            have.setdefault((model, method), set()).add(layer)
            have.setdefault((None, method), set()).add(layer)
        return {
            key: [layer for layer in self.layers if layer in found] for key, found in have.items()
        }

    def main_layer(self, method: str, model: str | None = None) -> str:
        """The layer method tables show for ``method`` (of ``model``; default: over every
        model): the last of its layers."""
        layers = self.layers_of(method, model)
        return layers[-1] if layers else ""

    @cached_property
    def trained(self) -> dict[str, TrainedMethod]:
        """Model → how it was trained (``manifest["methods"]``), in the order of :attr:`models`;
        empty for a run of CAM models only (no ``methods`` in its manifest)."""
        declared = self.manifest.get("methods") or {}
        out = {}
        for label in [m for m in self.models if m in declared]:
            entry = declared[label]
            try:
                fields = {key: entry[key] for key in ("method", "model", "block", "explainer")}
                out[label] = TrainedMethod(
                    label,
                    **fields,
                    layer=entry["layer"],
                    class_agnostic=bool(entry["class_agnostic"]),
                    aligned=tuple(entry["aligned"]),
                )
            except (KeyError, TypeError) as err:
                raise ValueError(
                    f"{self.path / 'manifest.json'}: methods entry {label!r} is malformed ({err!r})"
                ) from None
        return out

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Headline rows averaged over seeds: :data:`CELL_KEY` + ``class``, ``value``,
        ``ci_low``, ``ci_high`` (seed means), ``spread`` (the seeds' standard deviation, NaN with
        one seed), ``n_seeds``."""
        keys = [c for c in KEY_COLUMNS if c not in ("suite", "seed")]
        return seed_summary(headline_rows(self.results), keys)

    @cached_property
    def cells(self) -> dict[tuple[str, str, str, str, str], np.ndarray]:
        """:data:`CELL_KEY` tuple → float (value, ci_low, ci_high, spread, n_seeds) of
        :attr:`summary`."""
        numbers = self.summary[[*CELL_NUMBERS, "n_seeds"]].to_numpy(np.float64)
        keys = self.summary[CELL_KEY].itertuples(index=False, name=None)
        return dict(zip(keys, numbers, strict=True))

    def cell(self, model: str, variant: str, method: str, metric: str) -> np.ndarray:
        """(value, ci_low, ci_high, spread, n_seeds) of ``method`` at its main layer on
        ``model``; NaNs when the run has no such row."""
        key = (model, variant, method, self.main_layer(method, model), metric)
        return self.cells.get(key, np.full(len(CELL_NUMBERS) + 1, np.nan))

    @cached_property
    def per_image(self) -> pd.DataFrame | None:
        """Per-image scores of the split and variants shown; None when the run has none."""
        try:
            table = read_per_image(self.path)
        except FileNotFoundError:
            return None
        table["layer"] = table["layer"].fillna("").astype(str)
        keep = (table["split"] == self.split) & table["variant"].isin(list(self.variants))
        return table[keep].reset_index(drop=True)

    @cached_property
    def tests(self) -> pd.DataFrame:
        """Paired tests of every guided variant against :attr:`baseline` (see
        :func:`aubench.report.stats.paired_tests`); empty without a baseline or per-image
        scores."""
        guided = [v.name for v in self.variants.values() if v.guided]
        if self.per_image is None or self.baseline is None or not guided:
            return pd.DataFrame(columns=[*CELL_KEY, "n", "mean_diff", "p"])
        return paired_tests(self.per_image, self.baseline, guided)

    @cached_property
    def flags(self) -> pd.DataFrame:
        """:func:`control_flags` of the seed-averaged :attr:`summary`."""
        return control_flags(self.summary, self.manifest.get("metrics") or {})

    @property
    def evidence(self) -> str:
        """The per-image AU evidence the maps were also scored against (the manifest's
        ``evidence``: ``facs``, ``detector:PATH``, …); :data:`CODEBOOK` when none."""
        return str((self.manifest.get("evidence") or {}).get("evidence", CODEBOOK))

    @cached_property
    def evidence_cells(self) -> dict[str, dict[str, Any]]:
        """Cell key → what its per-image AU evidence was, for each (model, variant, seed) shown
        on :attr:`split`: ``cells/<cell>.evidence.json`` (counts, ``codebook`` and
        ``agreement``; :func:`aubench.bench.evaluate.evidence_summary`), or the manifest's
        counts alone where that file is absent; empty without evidence."""
        if self.evidence == CODEBOOK:
            return {}
        counts = self.manifest["evidence"].get("cells") or {}
        out = {}
        shown = self.results[["model", "variant", "seed"]].drop_duplicates()
        for model, variant, seed in shown.itertuples(index=False, name=None):
            key = f"{model}__{variant}__{seed}__{self.split}"
            path = self.path / "cells" / f"{key}.evidence.json"
            if path.is_file():
                try:
                    out[key] = json.loads(path.read_text())
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: not valid JSON ({err})") from None
            elif key in counts:
                out[key] = dict(counts[key])
        return out

    @cached_property
    def agreements(self) -> list[Agreement]:
        """The codebook–evidence agreement of the cells of :attr:`evidence_cells` that have one,
        cells that found the same grouped, in order of first appearance; empty without
        evidence."""
        groups: dict[str, list[str]] = {}
        for key, found in self.evidence_cells.items():
            if "agreement" in found:
                same = json.dumps([found.get("codebook"), found["agreement"]], sort_keys=True)
                groups.setdefault(same, []).append(key)
        return [
            _agreement(self.path, keys, self.evidence_cells[keys[0]]) for keys in groups.values()
        ]

    def sweeps(self) -> dict[str, list[str]]:
        """Guided variants forming a sweep: ``"lambda"`` → variants differing only in λ (sorted
        by λ), ``"layers"`` → variants differing only in their aligned layers (shown order);
        the largest such family of each kind with at least two variants."""
        guided = [v for v in self.variants.values() if v.guided]
        found = {}
        for kind, fixed, varying in (
            ("lambda", lambda v: (v.layers, v.loss), lambda v: v.lam),
            ("layers", lambda v: (v.lam, v.loss), lambda v: v.layers),
        ):
            families: dict[Any, list[Variant]] = {}
            for variant in guided:
                families.setdefault(fixed(variant), []).append(variant)
            best = max(families.values(), key=lambda f: len({varying(v) for v in f}), default=[])
            if len({varying(v) for v in best}) >= 2:
                if kind == "lambda":
                    best = sorted(best, key=lambda v: v.lam)
                found[kind] = [v.name for v in best]
        return found


def _agreement(run: Path, cells: list[str], found: Mapping[str, Any]) -> Agreement:
    """The :class:`Agreement` of ``cells`` from the evidence summary ``found`` of the first
    (``ValueError`` naming its file when malformed)."""
    try:
        classes = [
            ClassAgreement(
                name,
                int(entry["n"]),
                tuple(int(au) for au in entry["prototype"]),
                int(entry["exact"]),
                float(entry["jaccard"]),
                {int(au): float(share) for au, share in entry["au_frequency"].items()},
            )
            for name, entry in found["agreement"].items()
        ]
        codebook = str(found["codebook"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        path = run / "cells" / f"{cells[0]}.evidence.json"
        raise ValueError(f"{path}: agreement is malformed ({err!r})") from None
    order = {name: k for k, name in enumerate(EXPRESSIONS)}
    classes.sort(key=lambda c: order.get(c.name, len(order)))
    return Agreement(tuple(cells), codebook, tuple(classes))


def _choose_split(table: pd.DataFrame, split: str | None, run: Path) -> str:
    splits = list(dict.fromkeys(table["split"]))
    if split is None:
        if "test" in splits or len(splits) == 1:
            return "test" if "test" in splits else splits[0]
        raise ValueError(f"{run} holds splits {splits}; choose one (split=...)")
    if split not in splits:
        raise ValueError(f"{run} has no split {split!r} (it holds {splits})")
    return split


def _variants(
    manifest: Mapping[str, Any], table: pd.DataFrame, chosen: Sequence[str] | None, run: Path
) -> dict[str, Variant]:
    declared = manifest.get("variants")
    if not isinstance(declared, Mapping) or not declared:
        raise ValueError(f"{run / 'manifest.json'} declares no 'variants' mapping")
    present = set(table["variant"])
    undeclared = sorted(present - set(declared))
    if undeclared:
        raise ValueError(f"{run}: variants {undeclared} are in the results but not the manifest")
    names = list(dict.fromkeys(table["variant"])) if chosen is None else list(chosen)
    unknown = [n for n in names if n not in present]
    if unknown or not names:
        raise ValueError(
            f"{run} has no results for variants {unknown or names} (it has {sorted(present)})"
        )
    suite = manifest.get("suite") or {}
    trained = suite.get("train") or {}
    own = {v.get("name"): v.get("train") or {} for v in suite.get("variants") or ()}
    variants = {}
    for name in names:
        entry = declared[name]
        try:
            layers = tuple(entry.get("layers") or ())
            guided, lam = bool(entry["guided"]), float(entry.get("lam", 0.0))
            settings = {**trained, **own.get(name, {})}
            evidence = str(settings.get("evidence", CODEBOOK))
            loss = str(entry.get("loss") or "")
            variants[name] = Variant(name, guided, lam, layers, loss, evidence)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(
                f"{run / 'manifest.json'}: variant {name!r} is malformed ({err!r})"
            ) from None
    return variants


def _layer_order(declared: Any, present: pd.Series) -> list[str]:
    if isinstance(declared, Mapping):
        declared = [layer for layers in declared.values() for layer in layers]
    order = [str(layer) for layer in declared or ()]
    return list(dict.fromkeys([*order, *present]))
