"""The shortcut suite's table and figure: every score against the shortcut ρ the models trained
at, without and with AU guidance.

A run is a *shortcut sweep* when its variants train on synthetic faces of at least two shortcut
probabilities ρ (each variant's ``train.data`` in the manifest's suite, else the suite's
``data``: ``synthetic:…,shortcut=ρ``, ρ = 0 when absent) while every cell is scored on the same
evaluated data (the ``shortcut`` suite: test faces whose patch has a random class's colour).
For each ρ the unguided variant is *its* baseline (w/o AU) and the guided one its w/ AU column.

- :func:`shortcut_table` (``shortcut``): rows ρ × method (controls last), columns accuracy, the
  headline map metrics and ``cue_energy_share`` × {w/o AU, w/ AU}; the significance marks test
  each ρ's guided variant against the baseline of the same ρ (paired sign-flip test of the
  per-image scores, Holm-corrected over the table).
- :func:`shortcut_figure` (``figures/shortcut``): one panel per score (accuracy, then every map
  metric), x = ρ, one colour per method, dashed w/o AU and solid w/ AU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aubench.bench.results import CLASSIFIER
from aubench.report.figures import _grid, _label, _legend
from aubench.report.runs import ACCURACY, CELL_KEY, RunData, is_control
from aubench.report.stats import holm, paired_tests
from aubench.report.tables import Table, _assemble, _header, _key, _levels, _prefix, _Spec

__all__ = ["CUE_METRIC", "shortcut_figure", "shortcut_rho", "shortcut_sweep", "shortcut_table"]

#: The per-image share of a map's energy on the shortcut cue (:mod:`aubench.metrics.causal`).
CUE_METRIC = "cue_energy_share"
#: Column labels of the two variants of one ρ.
UNGUIDED, GUIDED = "w/o AU", "w/ AU"
#: The figure's panels per row, and the control drawn as each panel's chance level.
PANELS_PER_ROW = 3
RANDOM = "control:random"
_SHORTCUT = re.compile(r"(?:^|[:,?])\s*shortcut\s*=\s*([^,\s]+)")


def shortcut_rho(spec: str) -> float | None:
    """The shortcut probability ρ of a synthetic data spec (``synthetic:n=1500,shortcut=0.9`` →
    0.9; ``synthetic:n=1500`` → 0.0); None for any other dataset."""
    if spec.partition(":")[0].strip() != "synthetic":
        return None
    found = _SHORTCUT.search(spec)
    return float(found[1]) if found else 0.0


def shortcut_sweep(run: RunData) -> dict[float, dict[str, str]]:
    """ρ (ascending) → ``{"w/o AU": variant, "w/ AU": variant}`` of the variants shown that
    train at that ρ (the first of each kind); empty unless the variants train at two or more
    values of ρ."""
    suite: Mapping[str, Any] = run.manifest.get("suite") or {}
    shared = (suite.get("train") or {}).get("data", suite.get("data", ""))
    own = {v.get("name"): (v.get("train") or {}) for v in suite.get("variants") or ()}
    sweep: dict[float, dict[str, str]] = {}
    for name, variant in run.variants.items():
        rho = shortcut_rho(str(own.get(name, {}).get("data", shared)))
        if rho is not None:
            sweep.setdefault(rho, {}).setdefault(GUIDED if variant.guided else UNGUIDED, name)
    return dict(sorted(sweep.items())) if len(sweep) >= 2 else {}


def shortcut_table(run: RunData, metrics: Sequence[str]) -> Table | None:
    """ρ × method × {accuracy, ``metrics``, ``cue_energy_share``} × {w/o AU, w/ AU}, each
    method at its main layer, then the controls once (ρ "–": they ignore the model, and every
    cell scores the same faces); None unless the run is a shortcut sweep
    (:func:`shortcut_sweep`). Accuracy repeats in each method's row (the model's), empty for
    the controls; stars test w/ AU against w/o AU of the same ρ."""
    sweep = shortcut_sweep(run)
    if not sweep:
        return None
    present = set(run.results["metric"])
    shown = [ACCURACY, *dict.fromkeys(m for m in [*metrics, CUE_METRIC] if m in present)]
    first = next(iter(sweep.values()))  # the controls ignore the model: shown once, last
    blocks = [(f"{rho:g}", variants, run.methods) for rho, variants in sweep.items()]
    blocks.append(("–", first, run.controls))
    specs = []
    for model in run.models:
        for label, variants, methods in blocks:
            for method in methods:
                control = is_control(method)
                row = (*_prefix(run, model), label, method)
                for metric in shown:
                    info = run.info(metric)
                    for group in (UNGUIDED, GUIDED):
                        variant = variants.get(group)
                        scored = CLASSIFIER if metric == ACCURACY else method
                        empty = variant is None or (metric == ACCURACY and control)
                        key = None if empty else _key(run, model, variant, scored, metric)
                        specs.append(_Spec(row, (_header(info), group), info, key, control))
    title = (
        "Models trained at shortcut probability ρ (a background patch of the label's colour), "
        "scored on test faces whose patch has a random class's colour: accuracy, alignment "
        "with the AU heatmaps and the share of map energy on the patch, without and with AU "
        "guidance."
    )
    levels = _levels(run) + 1
    table = _assemble(run, "shortcut", title, ("ρ", "Method"), specs, group_levels=levels)
    return replace(
        table,
        p=_same_rho_tests(run, sweep, specs, table),
        baseline=f"{UNGUIDED} of the same ρ",
        ranked=False,
        remarks=(
            f"{CUE_METRIC} ↓: share of the map's positive energy on the shortcut patch (its "
            "box at the map's resolution); images without a patch are left out.",
        ),
    )


def _same_rho_tests(
    run: RunData, sweep: dict[float, dict[str, str]], specs: list[_Spec], table: Table
) -> pd.DataFrame:
    """Holm-adjusted p-values (over the table) of each ρ's guided variant against the
    unguided variant of the same ρ, laid out as ``table``; NaN where untested."""
    p = pd.DataFrame(np.nan, index=table.value.index, columns=table.value.columns)
    if run.per_image is None:
        return p
    found = [
        paired_tests(run.per_image, pair[UNGUIDED], [pair[GUIDED]])
        for pair in sweep.values()
        if UNGUIDED in pair and GUIDED in pair
    ]
    if not found:
        return p
    tests = pd.concat(found, ignore_index=True)
    raw = dict(zip(tests[CELL_KEY].itertuples(index=False, name=None), tests["p"], strict=True))
    tested = [
        s for s in specs if s.key in raw and not s.control and s.column[1] == GUIDED
    ]  # a guided cell carries its pair's test
    adjusted = holm([raw[s.key] for s in tested])
    for spec, value in zip(tested, adjusted, strict=True):
        p.loc[spec.row, spec.column] = value
    return p


def shortcut_figure(run: RunData) -> Figure | None:
    """Accuracy and every map metric (columns) per model (rows) against the shortcut ρ the
    models trained at: one colour per method, dashed w/o AU, solid w/ AU; None unless the run
    is a shortcut sweep."""
    sweep = shortcut_sweep(run)
    if not sweep:
        return None
    shown = [ACCURACY, *run.map_metrics()]
    rhos = list(sweep)
    lines = -(-len(shown) // PANELS_PER_ROW)  # panel rows per model
    columns = min(len(shown), PANELS_PER_ROW)
    figure, axes = _grid(len(run.models) * lines, columns, 2.6, 2.3)
    for ax in axes.flat[len(shown) :] if len(run.models) == 1 else ():
        ax.set_visible(False)
    for r, model in enumerate(run.models):
        for c, metric in enumerate(shown):
            ax = axes[r * lines + c // columns, c % columns]
            methods = [CLASSIFIER] if metric == ACCURACY else run.methods
            for colour, method in enumerate(methods):
                for group, style in ((UNGUIDED, "--"), (GUIDED, "-")):
                    values = [
                        run.cell(model, sweep[rho][group], method, metric)[0]
                        if group in sweep[rho]
                        else np.nan
                        for rho in rhos
                    ]
                    name = "model" if method == CLASSIFIER else method
                    ax.plot(
                        rhos,
                        values,
                        style,
                        marker="o",
                        ms=3,
                        lw=1,
                        color="black" if method == CLASSIFIER else f"C{colour}",
                        label=f"{name}, {group}",
                    )
            if metric != ACCURACY and RANDOM in run.controls:  # chance: the random map
                level = run.cell(model, sweep[rhos[0]].get(UNGUIDED, ""), RANDOM, metric)[0]
                ax.axhline(level, ls=":", lw=0.8, color="grey", label="random control")
            _label(ax, run, metric, model if len(run.models) > 1 else run.info(metric).label)
            ax.set_xlabel("shortcut ρ in training", fontsize=7)
            ax.set_xticks(rhos, [f"{rho:g}" for rho in rhos])
    _legend(figure, axes[0, -1])
    return figure
