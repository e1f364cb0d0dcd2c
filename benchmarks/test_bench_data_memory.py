"""Dataset scale: evaluation memory must not grow with the number of images (issue #6).

A ``folder`` dataset of N images (one rendered synthetic face, hard-linked N times, with a
``labels.csv`` carrying 68 landmarks per row) is evaluated end to end in a fresh interpreter:
``open_dataset(..., "test")``, a DataLoader with :class:`~aubench.data.batch.HeatmapCollate`, and a
per-image score kept for every image. Goal: peak RSS at 20,000 images within 10 % of that at
2,000 (the table costs ~600 bytes per image: landmarks, label, id, path).
"""

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.faces.codebook import EXPRESSIONS
from aubench.faces.landmarks import NUM_LANDMARKS

SMALL, LARGE, SIZE, GOAL = 2_000, 20_000, 64, 1.10

EVALUATE = textwrap.dedent(
    """
    import resource, sys, time
    import numpy as np, torch
    from torch.utils.data import DataLoader
    from aubench.data.batch import HeatmapCollate
    from aubench.data.registry import open_dataset

    torch.set_num_threads(1)
    imported_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    data = open_dataset(f"folder:{sys.argv[1]}", "test", size=int(sys.argv[2]))
    scores = np.empty(len(data), dtype=np.float32)
    done = 0
    for batch in DataLoader(data, batch_size=128, collate_fn=HeatmapCollate()):
        scores[done : done + len(batch["label"])] = batch["heatmap"].flatten(1).mean(1).numpy()
        done += len(batch["label"])
    assert done == len(data), (done, len(data))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(len(data), peak_kib, imported_kib, time.perf_counter() - start)
    """
)


def make_large_folder(root: Path, n: int, template: Path) -> Path:
    """``n`` hard links to one exported face and a labels.csv listing them with landmarks."""
    root.mkdir(parents=True)
    (root / "images").mkdir()
    with open(template / "labels.csv") as handle:
        header, first = list(csv.reader(handle))[:2]
    image = template / first[0]
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for k in range(n):
            name = f"images/{k:06d}.png"
            os.link(image, root / name)
            writer.writerow([name, k % 7, EXPRESSIONS[k % 7], *first[3:]])
    assert len(header) == 3 + 2 * NUM_LANDMARKS
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale")
    template = export_synthetic(SyntheticFaces(1, SIZE, "test", 0), base / "one", progress=False)
    return {n: make_large_folder(base / f"n{n}", n, template) for n in (SMALL, LARGE)}


def evaluate(folder: Path) -> tuple[int, float, float, float]:
    """(images, peak RSS, RSS after the imports (MiB), seconds) of one evaluation in a fresh
    interpreter."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", EVALUATE, str(folder), str(SIZE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.split()
    return int(out[0]), int(out[1]) / 1024, int(out[2]) / 1024, float(out[3])


def test_evaluation_memory_does_not_grow_with_dataset_size(benchmark, folders, harness_info):
    benchmark.group = "data-memory"
    n_small, rss_small, base_small, _ = evaluate(folders[SMALL])
    runs = []
    benchmark.pedantic(lambda: runs.append(evaluate(folders[LARGE])), rounds=1, iterations=1)
    n_large, rss_large, base_large, seconds = runs[0]
    ratio = rss_large / rss_small
    harness_info.update(
        rss_mib={SMALL: round(rss_small, 1), LARGE: round(rss_large, 1)},
        above_imports_mib={
            SMALL: round(rss_small - base_small, 1),
            LARGE: round(rss_large - base_large, 1),
        },
        ratio=ratio,
        goal=GOAL,
        images_per_s=n_large / seconds,
    )
    print(
        f"\npeak RSS: {rss_small:.1f} MiB at {n_small} images, {rss_large:.1f} MiB at {n_large} "
        f"({ratio:.3f}×, goal ≤ {GOAL}); above the imports: {rss_small - base_small:.1f} → "
        f"{rss_large - base_large:.1f} MiB; {n_large / seconds:.0f} images/s"
    )
    assert (n_small, n_large) == (SMALL, LARGE)
    assert ratio <= GOAL, f"peak RSS grew {ratio:.3f}× from {SMALL} to {LARGE} images"
