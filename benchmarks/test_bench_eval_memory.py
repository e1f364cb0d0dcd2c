"""Suite evaluation memory must not grow with the number of images (issue #5).

One evaluation cell (resnet18 at 64 px, attention + CAM + GradCAM + the three controls at layer
5, cosine and pointing game) scores N synthetic test faces in a fresh interpreter, streaming its
per-image scores to Parquet, then aggregates them and writes the long per-image table. Goal:
peak RSS at 10 N within 10 % of that at N.
"""

import subprocess
import sys
import textwrap

import pytest

SMALL, LARGE, GOAL = 300, 3_000, 1.10

EVALUATE = textwrap.dedent(
    """
    import resource, sys, time
    from pathlib import Path
    import torch
    from aubench.bench.evaluate import (
        ScoreStore, aggregate_cell, evaluate_model, write_long_per_image)
    from aubench.models import create
    from aubench.train.config import TrainConfig

    torch.set_num_threads(1)
    n, out = int(sys.argv[1]), Path(sys.argv[2])
    config = TrainConfig(data=f"synthetic:n={4 * n}", size=64)
    model = create("resnet18", 7, large_maps=True).eval()
    imported_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    store = ScoreStore(out / "scores.parquet")
    evaluate_model(
        model, config, split="test", explainers=["attention", "cam", "gradcam"],
        controls=["random", "centre", "generic-face"], layers=["stage:5"],
        metrics=["cosine", "pointing_game"], batch_size=50, progress=False, store=store)
    cell = {"suite": "memory", "model": "resnet18", "variant": "baseline", "seed": 0,
            "split": "test"}
    write_long_per_image(store.path, cell, out / "per_image.parquet")
    rows = aggregate_cell(store.path, cell, n_boot=100, fill_undefined=None)
    assert int(rows.query("method == 'classifier' and `class` == 'all'").n.item()) == n
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(n, peak_kib, imported_kib, time.perf_counter() - start)
    """
)


def _peak(n: int, folder) -> tuple[int, int, float]:
    folder.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", EVALUATE, str(n), str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    images, peak, imported, seconds = out.stdout.split()
    assert int(images) == n
    return int(peak), int(imported), float(seconds)


@pytest.mark.benchmark(group="eval-memory")
def test_evaluation_memory_does_not_grow_with_the_dataset(benchmark, tmp_path):
    results = {}

    def measure():
        results["small"] = _peak(SMALL, tmp_path / "small")
        results["large"] = _peak(LARGE, tmp_path / "large")

    benchmark.pedantic(measure, rounds=1, iterations=1)
    (small, small_base, t_small), (large, large_base, t_large) = results["small"], results["large"]
    ratio = large / small
    benchmark.extra_info.update(
        {
            "peak_mib": {SMALL: round(small / 1024, 1), LARGE: round(large / 1024, 1)},
            "above_imports_mib": {
                SMALL: round((small - small_base) / 1024, 1),
                LARGE: round((large - large_base) / 1024, 1),
            },
            "seconds": {SMALL: round(t_small, 1), LARGE: round(t_large, 1)},
            "ratio": round(ratio, 3),
        }
    )
    print(f"\npeak RSS {small / 1024:.1f} MiB at {SMALL} images, {large / 1024:.1f} MiB at {LARGE}")
    print(f"ratio {ratio:.3f} (goal ≤ {GOAL})")
    assert ratio <= GOAL
