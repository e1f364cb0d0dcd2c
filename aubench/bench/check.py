"""``aubench check``: compare a run's results with a committed baseline; a regression fails CI.

The baseline is a JSON file::

    {"suite": "quick",
     "tolerances": {"default": {"abs": 0.05}, "accuracy": {"abs": 3.0}, "cosine": {"ci": true}},
     "entries": [{"model": …, "variant": …, "seed": …, "split": …, "method": …, "layer": …,
                  "metric": …, "class": …, "value": …, "ci_low": …, "ci_high": …}, …]}

Each entry is one headline cell of the results table (class ``macro`` or ``all``). A metric's
tolerance is ``tolerances[metric]`` or else ``tolerances["default"]``: ``{"abs": t}`` flags a
change worse than ``t`` in the metric's bad direction; ``{"ci": true}`` flags a value worse than
the baseline's bootstrap 95% CI bound (and ``abs`` then also applies when both are given: the
larger allowance wins). Improvements never fail. A cell of the baseline that the run lacks is a
regression ("missing"). Directions come from the run's manifest (metric metadata).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aubench.bench.results import KEY_COLUMNS, read_manifest, read_results
from aubench.io import write_atomic

DEFAULT_TOLERANCES = {"default": {"abs": 0.05}, "accuracy": {"abs": 3.0}}
HEADLINE_CLASSES = ("macro", "all")


@dataclass(frozen=True)
class CheckResult:
    """The comparison table (one row per baseline entry) and whether any row regressed."""

    table: pd.DataFrame

    @property
    def regressions(self) -> pd.DataFrame:
        return self.table[self.table.status.isin(["regression", "missing"])]

    @property
    def ok(self) -> bool:
        return self.regressions.empty

    def describe(self) -> str:
        """A plain-text diff table (regressions first) and a one-line verdict."""
        shown = self.table.sort_values("status", key=lambda s: s.ne("regression") & s.ne("missing"))
        columns = ["status", "variant", "method", "layer", "metric", "class", "baseline", "run"]
        columns += ["delta", "allowed"]
        text = shown[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}")
        bad = len(self.regressions)
        verdict = f"{bad} regression(s)" if bad else "no regression"
        return f"{text}\n{verdict} in {len(self.table)} checked cells"


def load_baseline(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"baseline {path} does not exist; create it with `aubench check RUN --baseline {path} "
            "--update-baseline`"
        )
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    for key in ("entries", "tolerances"):
        if key not in baseline:
            raise ValueError(f"{path}: missing field {key!r}")
    return baseline


def check_run(run: str | os.PathLike, baseline_path: str | os.PathLike) -> CheckResult:
    """Compare run folder ``run`` with the baseline file (see the module doc)."""
    baseline = load_baseline(baseline_path)
    table = read_results(run)
    directions = {
        name: meta["higher_is_better"] for name, meta in read_manifest(run)["metrics"].items()
    }
    indexed = table.set_index(KEY_COLUMNS)
    rows = []
    for entry in baseline["entries"]:
        key = tuple(_key_value(entry, c) for c in KEY_COLUMNS)
        metric = entry["metric"]
        tolerance = baseline["tolerances"].get(metric, baseline["tolerances"]["default"])
        higher = directions.get(metric, True)
        allowed = _allowance(entry, tolerance, higher)
        row = {**{c: entry[c] for c in KEY_COLUMNS}, "baseline": entry["value"]}
        if key not in indexed.index:
            rows.append(
                {**row, "run": math.nan, "delta": math.nan, "allowed": allowed, "status": "missing"}
            )
            continue
        value = float(indexed.loc[key, "value"])
        if entry["value"] is None:  # undefined in the baseline: any value is no regression
            rows.append(
                {**row, "run": value, "delta": math.nan, "allowed": allowed, "status": "ok"}
            )
            continue
        delta = value - entry["value"]
        worse = -delta if higher else delta
        status = "regression" if worse > allowed or math.isnan(value) else "ok"
        rows.append({**row, "run": value, "delta": delta, "allowed": allowed, "status": status})
    return CheckResult(pd.DataFrame(rows))


def _key_value(entry: dict, column: str):
    return int(entry[column]) if column == "seed" else entry[column]


def _allowance(entry: dict, tolerance: dict, higher: bool) -> float:
    """How much worse than the baseline value a run may be for this entry."""
    allowed = float(tolerance.get("abs", 0.0))
    if tolerance.get("ci"):
        bound = entry["ci_low"] if higher else entry["ci_high"]
        if bound is not None and entry["value"] is not None:
            allowed = max(allowed, abs(entry["value"] - bound))
    return allowed


def update_baseline(
    run: str | os.PathLike, baseline_path: str | os.PathLike, tolerances: dict | None = None
) -> Path:
    """Rewrite the baseline from run ``run``'s headline cells (classes macro and all), keeping
    the existing file's tolerances unless ``tolerances`` is given."""
    path = Path(baseline_path)
    if tolerances is None:
        tolerances = load_baseline(path)["tolerances"] if path.is_file() else DEFAULT_TOLERANCES
    table = read_results(run)
    headline = table[table["class"].isin(HEADLINE_CLASSES)]
    entries = [
        {
            **{c: (int(r[c]) if c == "seed" else r[c]) for c in KEY_COLUMNS},
            "value": _finite(r["value"]),
            "ci_low": _finite(r["ci_low"]),
            "ci_high": _finite(r["ci_high"]),
        }
        for r in headline.to_dict("records")
    ]
    baseline = {
        "suite": read_manifest(run)["suite"]["name"],
        "tolerances": tolerances,
        "entries": entries,
    }
    write_atomic(path, (json.dumps(baseline, indent=1) + "\n").encode())
    return path


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
