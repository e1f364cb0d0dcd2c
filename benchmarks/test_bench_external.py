"""Scoring a user's model costs what ``aubench run``'s evaluation costs (issue #13): goal, the
ratio of wall times ≤ 1.1 on the same data, one run.

The same ResNet-10-T (large maps, an aubench checkpoint at 64 px, random weights) is scored twice
on the same folder dataset with the ``quick`` suite's explainers, controls and metrics:

- anchor: ``aubench run`` of a one-model suite whose training run is already finished (the
  checkpoint planted in its model folder), so the run only checks the suite, evaluates the cell
  and writes the results, per-image scores, samples and manifest;
- measured: ``aubench evaluate --model timm:resnet10t --checkpoint best.pt --input-size 64
  --crop as-is``, the same work through the model card's adapter and the external-model path.

Both run in this process after one warm-up of each on 8 images, alternating for
``AUBENCH_BENCH_ROUNDS`` rounds (default 1, "one run"); the ratio uses the medians and is
printed and recorded in ``extra_info`` (nothing about timing is asserted). The two results
tables must be equal up to 1e-4 (the adapter's de- and re-normalisation of the images rounds).
``AUBENCH_BENCH_FACES`` sets the exported faces (default 640: 128 test images, the folder's
fixed 20 % test split).
"""

from __future__ import annotations

import os
import statistics
import time
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aubench.bench.api import evaluate
from aubench.bench.results import read_results
from aubench.bench.runner import run_suite
from aubench.bench.suite import load_suite
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from tests.test_evaluate_cli import plant_trained_model

GOAL = 1.10
ROUNDS = int(os.environ.get("AUBENCH_BENCH_ROUNDS", "1"))
FACES = int(os.environ.get("AUBENCH_BENCH_FACES", "640"))
NUMBERS = ["method", "layer", "metric", "class", "value", "ci_low", "ci_high", "n"]


def quick_suite() -> dict:
    """The built-in ``quick`` suite's producers and metrics."""
    text = (resources.files("aubench.bench") / "suites" / "quick.yaml").read_text()
    suite = yaml.safe_load(text)
    return {key: suite[key] for key in ("explainers", "layers", "metrics", "aggregation")}


@pytest.mark.benchmark(group="external")
def test_evaluating_a_given_model_costs_what_run_costs(benchmark, harness_info, tmp_path):
    export_synthetic(SyntheticFaces(FACES, 64, "train", 0), tmp_path / "faces", progress=False)
    data = f"folder:{tmp_path / 'faces'}"
    shared = quick_suite()
    suite_file = tmp_path / "anchor.yaml"
    suite_file.write_text(
        yaml.safe_dump(
            {
                "name": "anchor",
                "data": data,
                "train": {"size": 64},
                "models": ["resnet10t"],
                "variants": [{"name": "baseline"}],
                **shared,
            }
        )
    )
    checkpoint = plant_trained_model(suite_file, tmp_path / "runs")
    suite = load_suite(str(suite_file))
    options = {
        "checkpoint": checkpoint,
        "card": {"input_size": 64, "crop": "as-is"},
        "explainers": shared["explainers"],
        "metrics": shared["metrics"],
        "bootstrap": shared["aggregation"]["bootstrap"],
    }
    counter = iter(range(1000))

    def anchor(**eval_settings) -> Path:
        out = tmp_path / f"run-{next(counter)}"
        timed = suite.model_copy(update={"eval": suite.eval.model_copy(update=eval_settings)})
        return run_suite(timed, out=out, runs_root=tmp_path / "runs", progress=False)

    def measured(**eval_settings) -> Path:
        out = tmp_path / f"evaluate-{next(counter)}"
        return evaluate("timm:resnet10t", data, out=out, **options, **eval_settings)[1]

    anchor(max_images=8)
    measured(max_images=8)
    times: dict[str, list[float]] = {"run": [], "evaluate": []}
    folders: dict[str, Path] = {}

    def round_pair() -> None:
        for name, fn in (("run", anchor), ("evaluate", measured)):
            start = time.perf_counter()
            folders[name] = fn()
            times[name].append(time.perf_counter() - start)

    benchmark.pedantic(round_pair, rounds=ROUNDS, warmup_rounds=0)

    ran, evaluated = (read_results(folders[n])[NUMBERS] for n in ("run", "evaluate"))
    pd.testing.assert_frame_equal(ran, evaluated, atol=1e-4, rtol=0)  # the card's round trip
    run_s, evaluate_s = (statistics.median(times[n]) for n in ("run", "evaluate"))
    ratio = evaluate_s / run_s
    images = int(ran.query("metric == 'accuracy' and `class` == 'all'").n.item())
    harness_info.update(
        images=images, rounds=ROUNDS, run_s=times["run"], evaluate_s=times["evaluate"],
        ratio=round(ratio, 3), goal=GOAL,
    )  # fmt: skip
    print(
        f"\n{images} test images, {ROUNDS} round(s): aubench run {run_s:.2f} s, "
        f"aubench evaluate {evaluate_s:.2f} s, ratio {ratio:.3f} (goal ≤ {GOAL}); rounds: run "
        f"{', '.join(f'{t:.2f}' for t in times['run'])} s, evaluate "
        f"{', '.join(f'{t:.2f}' for t in times['evaluate'])} s"
    )
