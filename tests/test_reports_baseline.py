"""The CI gate: the `quick` suite, trained and evaluated from scratch, stays within the tolerances
of the committed reports/baseline.json (what `aubench check` does, through the pytest fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aubench.bench.runner import run_suite
from aubench.bench.suite import load_suite

BASELINE = Path(__file__).resolve().parents[1] / "reports" / "baseline.json"


@pytest.mark.slow
def test_quick_suite_matches_the_committed_baseline(tmp_path, aubench_check):
    run = run_suite(
        load_suite("quick"), out=tmp_path / "quick", runs_root=tmp_path / "runs", progress=False
    )
    result = aubench_check(run, BASELINE)
    assert len(result.table) >= 40  # every headline cell of the baseline was compared
