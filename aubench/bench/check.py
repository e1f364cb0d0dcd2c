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
regression ("missing"); a headline cell of the run that the baseline lacks is listed as
"unchecked" (it cannot fail, but the report says so). Directions come from the run's manifest
(metric metadata). A malformed baseline (a negative tolerance, a non-integer seed, a missing
field) is refused with the file and the field named.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aubench.bench.results import KEY_COLUMNS, MANIFEST, read_manifest, read_results
from aubench.io import write_atomic

DEFAULT_TOLERANCES = {"default": {"abs": 0.05}, "accuracy": {"abs": 3.0}}
HEADLINE_CLASSES = ("macro", "all")


@dataclass(frozen=True)
class CheckResult:
    """The comparison table (one row per baseline entry) and whether any row regressed."""

    table: pd.DataFrame
    #: headline cells of the run that the baseline has no entry for (not checked)
    unchecked: pd.DataFrame = field(default_factory=pd.DataFrame)

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
        lines = [text, f"{verdict} in {len(self.table)} checked cells"]
        if len(self.unchecked):
            lines.append(
                f"{len(self.unchecked)} cell(s) of the run have no baseline entry and were not "
                "checked (add them with --update-baseline):"
            )
            columns = ["variant", "method", "layer", "metric", "class"]
            lines.append(self.unchecked[columns].to_string(index=False))
        return "\n".join(lines)


def load_baseline(path: str | os.PathLike) -> dict:
    """Read and validate a baseline file; ``ValueError`` naming the file and the field (entry
    number, key, value) that is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"baseline {path} does not exist; create it with `aubench check RUN --baseline {path} "
            "--update-baseline`"
        )
    try:
        baseline = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(baseline, dict):
        raise ValueError(f"{path}: expected a JSON object with 'tolerances' and 'entries'")
    for key in ("entries", "tolerances"):
        if key not in baseline:
            raise ValueError(f"{path}: missing field {key!r}")
    _check_tolerances(path, baseline["tolerances"])
    if not isinstance(baseline["entries"], list):
        raise ValueError(f"{path}: 'entries' must be a list")
    for number, entry in enumerate(baseline["entries"]):
        _check_entry(path, number, entry)
    return baseline


def _check_tolerances(path: Path, tolerances: object) -> None:
    if not isinstance(tolerances, dict) or "default" not in tolerances:
        raise ValueError(f"{path}: 'tolerances' must be an object with a 'default' entry")
    for metric, tolerance in tolerances.items():
        where = f"{path}: tolerances.{metric}"
        if not isinstance(tolerance, dict) or not set(tolerance) <= {"abs", "ci"}:
            raise ValueError(f'{where} must look like {{"abs": 0.05}} or {{"ci": true}}')
        value = tolerance.get("abs", 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{where}.abs = {value!r}: a tolerance must be a number ≥ 0")
        if not isinstance(tolerance.get("ci", False), bool):
            raise ValueError(f"{where}.ci = {tolerance['ci']!r}: expected true or false")


def _check_entry(path: Path, number: int, entry: object) -> None:
    where = f"{path}: entries[{number}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    missing = [c for c in (*KEY_COLUMNS, "value") if c not in entry]
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    seed = entry["seed"]
    if isinstance(seed, bool) or not (
        isinstance(seed, int) or (isinstance(seed, float) and seed.is_integer())
    ):
        raise ValueError(f"{where}.seed = {seed!r}: a seed must be an integer")
    for key in ("value", "ci_low", "ci_high"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{where}.{key} = {value!r}: expected a number or null")


def check_run(run: str | os.PathLike, baseline_path: str | os.PathLike) -> CheckResult:
    """Compare run folder ``run`` with the baseline file (see the module doc). The run folder is
    read first, so a mistyped run is named before anything is said about the baseline."""
    table = read_results(run)
    directions = _directions(run)
    baseline = load_baseline(baseline_path)
    duplicated = table[table.duplicated(KEY_COLUMNS, keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        raise ValueError(
            f"{Path(run) / 'results.parquet'}: {len(duplicated)} rows share their cell, e.g. "
            + ", ".join(f"{c}={first[c]!r}" for c in KEY_COLUMNS)
            + " (was one evaluation counted twice?)"
        )
    indexed = table.set_index(KEY_COLUMNS)
    rows = []
    checked = set()
    for entry in baseline["entries"]:
        key = tuple(_key_value(entry, c) for c in KEY_COLUMNS)
        checked.add(key)
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
    headline = table[table["class"].isin(HEADLINE_CLASSES)]
    keys = list(headline[KEY_COLUMNS].itertuples(index=False, name=None))
    unchecked = headline[[key not in checked for key in keys]]
    return CheckResult(
        pd.DataFrame(rows), unchecked[[*KEY_COLUMNS, "value"]].reset_index(drop=True)
    )


def _directions(run: str | os.PathLike) -> dict[str, bool]:
    """metric → higher is better, from the run's manifest (``ValueError`` naming the field)."""
    metrics = read_manifest(run).get("metrics")
    where = Path(run) / MANIFEST
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: missing field 'metrics' (metric metadata); re-run the suite")
    for name, meta in metrics.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("higher_is_better"), bool):
            raise ValueError(f"{where}: metrics.{name} lacks a true/false 'higher_is_better'")
    return {name: meta["higher_is_better"] for name, meta in metrics.items()}


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
