"""pytest plugin (entry point ``pytest11``): the ``aubench_check`` fixture gates a test on a run.

Example, on a suite's run or on a model evaluated as it is (README, "CI for your model")::

    def test_maps_still_look_at_the_aus(aubench_check, tmp_path):
        table, run = aubench.evaluate("my_fer/net.py:build", "folder:tests/data/faces",
                                      checkpoint="net.pth", card="net.yaml", out=tmp_path / "run")
        aubench_check(run, "tests/aubench-baseline.json")   # fails with the diff table
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from aubench.bench.check import CheckResult, check_run


@pytest.fixture
def aubench_check() -> Callable[[str | os.PathLike, str | os.PathLike], CheckResult]:
    """``check(run, baseline)``: compare like ``aubench check``; a regression fails the test
    with the diff table, otherwise the :class:`~aubench.bench.check.CheckResult` is returned."""

    def check(run: str | os.PathLike, baseline: str | os.PathLike) -> CheckResult:
        result = check_run(run, baseline)
        if not result.ok:
            pytest.fail(result.describe(), pytrace=False)
        return result

    return check
