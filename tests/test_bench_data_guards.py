"""aubench run on a folder dataset edited in place, and on one where no image can be scored:
the model cache and the finished cells follow the data's content, and an all-excluded run says
why instead of printing nan."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.faces.codebook import EXPRESSIONS
from tests.dataset_trees import snapshot

SUITE = """
name: tiny-folder
data: folder:{root}
train: {{size: 64, epochs: 1, batch_size: 16, deterministic: true}}
models: [resnet10t]
variants: [{{name: baseline}}]
explainers: [cam]
controls: [centre]
layers: [stage:5]
metrics: [cosine]
eval: {{split: test, max_images: 12, batch_size: 12, samples_per_class: 0}}
aggregation: {{bootstrap: 10}}
"""


def _folder(root: Path) -> Path:
    export_synthetic(SyntheticFaces(n=60, size=64, split="train", seed=3), root, progress=False)
    return root


def _suite(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(root=data))
    return path


def _run(suite: Path, runs: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "aubench", "run", "--suite", str(suite), "--quiet"]
    return subprocess.run(
        [*command, "--runs-root", str(runs), "--out", str(out)], capture_output=True, text=True
    )


def _results(run: Path) -> dict:
    """Every file of a run folder (size, mtime, hash) but its lock, which records the last pid."""
    return {name: entry for name, entry in snapshot(run).items() if not name.endswith(".lock")}


def _relabel(labels: Path) -> None:
    """Give every face another expression (the next non-neutral label), in place."""
    rows = list(csv.DictReader(labels.open()))
    for row in rows:
        label = int(row["label"]) % 6 + 1
        row.update(label=str(label), expression=EXPRESSIONS[label])
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_relabelled_data_retrains_into_a_new_model_and_refuses_the_old_results(tmp_path):
    data = _folder(tmp_path / "faces")
    suite, runs, out = _suite(tmp_path, data), tmp_path / "runs", tmp_path / "run"
    first = _run(suite, runs, out)
    assert first.returncode == 0, first.stderr
    models = sorted(p.name for p in (runs / "models").iterdir())
    assert len(models) == 1
    kept = _results(out)
    _relabel(data / "labels.csv")
    again = _run(suite, runs, out)  # the old run folder: its cells were scored on other data
    assert again.returncode == 2
    line = again.stderr.strip()
    assert line.startswith(f"aubench run: error: {out} holds results on other data: cell ")
    assert "labels, ids, landmarks or image files changed); choose another --out" in line
    assert _results(out) == kept  # nothing rewritten, no new fingerprint in the manifest
    fresh = _run(suite, runs, tmp_path / "run-2")
    assert fresh.returncode == 0, fresh.stderr
    retrained = sorted(p.name for p in (runs / "models").iterdir())
    assert len(retrained) == 2 and models[0] in retrained  # retrained, the old model is kept
    assert retrained[0].rsplit("-d", 1)[0] == retrained[1].rsplit("-d", 1)[0]  # same config


def test_train_refuses_to_resume_a_run_on_edited_data(tmp_path):
    data = _folder(tmp_path / "faces")
    command = [sys.executable, "-m", "aubench", "train", "--data", f"folder:{data}", "--quiet"]
    command += ["--size", "64", "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "m")]
    assert subprocess.run(command, capture_output=True).returncode == 0
    (data / "images" / next(iter(sorted(p.name for p in (data / "images").iterdir())))).touch()
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{tmp_path / 'm'} was trained on other data (content fingerprint " in done.stderr


def test_a_run_where_every_image_is_excluded_says_why(tmp_path):
    data = _folder(tmp_path / "faces")
    labels = data / "labels.csv"
    rows = list(csv.DictReader(labels.open()))
    for row in rows:  # the detector failed on every face: NaN landmarks
        row.update({k: "nan" for k in row if k[0] in "xy" and k[1:].isdigit()})
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    done = _run(_suite(tmp_path, data), tmp_path / "runs", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    tail = done.stdout.splitlines()
    line = next(x for x in tail if "no test image was scored" in x)
    assert "every one of the 12 was excluded (" in line
    reasons = dict(r.rsplit(" ", 1) for r in line.split("excluded (")[1].split(")")[0].split(", "))
    assert set(reasons) <= {"no-landmarks", "no-aus"} and "no-landmarks" in reasons
    assert sum(map(int, reasons.values())) == 12  # neutral faces count as no-aus first
    assert "compute them with `aubench landmarks`" in line
    cam = next(x for x in tail if x.startswith("cam "))
    assert np.isnan(float(cam.split()[-1]))  # the cosine cell itself stays undefined
