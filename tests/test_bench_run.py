"""aubench run end to end on a tiny suite: results store, manifest, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aubench.bench.results import (
    PER_IMAGE_COLUMNS,
    RESULT_COLUMNS,
    read_manifest,
    read_per_image,
    read_results,
    read_samples,
    sample_file,
)

TINY = """
name: tiny
data: synthetic:n=160
train: {size: 64, epochs: 1, batch_size: 32, deterministic: true}
models: [resnet18]
variants:
  - {name: baseline}
  - {name: guided, guided: true, lam: 4}
explainers: [attention, cam, gradcam]
layers: [stage:5]
metrics: [cosine, pointing_game]
eval: {split: test, max_images: 24, batch_size: 12, samples_per_class: 1}
aggregation: {bootstrap: 20}
"""


def _run(suite: Path, runs: Path, out: Path, wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-m", "aubench", "run", "--suite", str(suite), "--quiet"]
    command += ["--runs-root", str(runs), "--out", str(out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if wait:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr.decode()
        process.stdout_text = stdout.decode()
    return process


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    suite = root / "tiny.yaml"
    suite.write_text(TINY)
    process = _run(suite, root / "runs", root / "run-a")
    return root, suite, root / "run-a", process.stdout_text


def test_results_table_has_accuracy_methods_controls_and_cis(finished):
    _, _, run, stdout = finished
    table = read_results(run)
    assert list(table.columns) == RESULT_COLUMNS
    assert set(table.variant) == {"baseline", "guided"}
    methods = set(table.method)
    assert methods == {"classifier", "attention", "cam", "gradcam"} | {
        "control:random",
        "control:centre",
        "control:generic",
    }
    assert set(table.layer) == {"", "layer4"}
    accuracy = table[(table.metric == "accuracy") & (table["class"] == "all")]
    assert len(accuracy) == 2 and accuracy.n.eq(24).all()
    macro = table[(table["class"] == "macro") & (table.metric == "cosine")]
    assert len(macro) == 2 * 6
    assert (macro.ci_low <= macro.value).all() and (macro.value <= macro.ci_high).all()
    # neutral faces are never scored: 24 test images hold each of the 7 classes 3–4 times
    neutral = table[(table["class"] == "neutral") & (table.method != "classifier")]
    assert neutral.empty
    assert (macro.n_excluded >= 3).all()
    assert "accuracy (%): baseline" in stdout and "control:generic" in stdout


def test_per_image_scores_samples_and_manifest(finished):
    _, _, run, _ = finished
    per_image = read_per_image(run)
    assert list(per_image.columns) == PER_IMAGE_COLUMNS
    preds = per_image[per_image.metric == "pred"]
    assert len(preds) == 2 * 24
    cosine = per_image[(per_image.metric == "cosine") & (per_image.method == "gradcam")]
    assert set(cosine[cosine.label == 0].reason) == {"no-aus"}
    assert cosine[cosine.reason == "valid"].value.notna().all()
    # the table's macro is the mean over classes of the per-image means
    table = read_results(run)
    for variant in ("baseline", "guided"):
        rows = cosine[(cosine.variant == variant) & (cosine.reason == "valid")]
        expected = rows.groupby("label").value.mean().mean()
        got = table.query(
            "variant == @variant and method == 'gradcam' and metric == 'cosine' and "
            "`class` == 'macro'"
        ).value.item()
        assert got == pytest.approx(expected, rel=1e-6)
    samples = read_samples(sample_file(run, "resnet18", "guided", 0))
    assert samples["images"].shape[1:] == (64, 64, 3) and samples["images"].dtype == np.uint8
    assert len(samples["labels"]) == 7 and sorted(samples["labels"].tolist()) == list(range(7))
    assert samples["map|gradcam|layer4"].shape == (7, 64, 64)
    manifest = read_manifest(run)
    assert manifest["variants"]["guided"] == {
        "guided": True,
        "lam": 4.0,
        "layers": ["layer4"],
        "loss": "cosine",
    }
    assert manifest["metrics"]["cosine"]["higher_is_better"] is True
    assert manifest["versions"]["torch"].startswith("2.14.1")
    assert len(manifest["data"]["fingerprint"]) == 16  # the evaluated split's content_fingerprint


def test_a_killed_run_resumes_and_gives_the_identical_table(finished):
    root, suite, run, _ = finished
    out = root / "run-b"
    process = _run(suite, root / "runs", out, wait=False)  # models are cached: evaluation only
    first = out / "cells" / "resnet18__baseline__0__test.parquet"
    deadline = time.time() + 300
    while not first.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.is_file() and not (out / "results.parquet").is_file()
    stamp = first.stat().st_mtime_ns
    _run(suite, root / "runs", out)
    assert first.stat().st_mtime_ns == stamp  # the finished cell was not recomputed
    pd.testing.assert_frame_equal(read_results(out), read_results(run))


def test_a_run_folder_of_another_suite_is_refused(finished, tmp_path):
    run = finished[2]
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("max_images: 24", "max_images: 12"))
    command = [sys.executable, "-m", "aubench", "run", "--suite", str(other), "--out", str(run)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"{run} holds a run of another suite" in done.stderr


def test_torchrun_shares_each_cell_between_two_processes(finished):
    root, suite, run, _ = finished
    out = root / "run-ddp"
    command = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "aubench", "run"]
    command += ["--suite", str(suite), "--quiet", "--runs-root", str(root / "runs")]
    command += ["--out", str(out), "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("accuracy (%)") == 1  # rank 0 alone reports
    # the random control draws its maps batch by batch, so it depends on how images are split
    single, shared = (read_results(r).query("method != 'control:random'") for r in (run, out))
    assert len(single) == 2 * (1 + 7) + 2 * 5 * 2 * 8  # accuracy; 5 methods × 2 metrics × 8
    pd.testing.assert_frame_equal(shared, single, check_exact=False, rtol=1e-5, atol=1e-6)
    per_image = read_per_image(out)
    assert sorted(per_image[per_image.metric == "pred"].id) == sorted(
        read_per_image(run).query("metric == 'pred'").id
    )
    assert not list((out / "cells").glob(".*"))  # the per-rank score files are removed


def test_dataset_model_and_sanity_metrics_reach_the_table(finished):
    from aubench.bench.runner import run_suite
    from aubench.bench.suite import load_suite
    from aubench.metrics.sanity import randomisable_layers
    from aubench.models import create

    root, suite, _, _ = finished
    metrics = "[cosine, pxap, au_occlusion, deletion_auc, cascading_randomisation]"
    overrides = ["explainers=[gradcam]", "controls=[centre]", f"metrics={metrics}"]
    overrides += ["eval.max_images=12", "variants=[{name: baseline}]"]
    run = run_suite(
        load_suite(str(suite), overrides),
        out=root / "run-more",
        runs_root=root / "runs",
        progress=False,
    )
    table = read_results(run)
    pxap = table[table.metric == "pxap"]
    assert set(pxap.method) == {"gradcam", "control:centre"} and set(pxap["class"]) == {"all"}
    assert pxap.value.between(0, 1).all() and pxap.ci_low.isna().all()
    occlusion = table[table.metric == "au_occlusion"]
    assert set(occlusion.method) == {"classifier"} and "macro" in set(occlusion["class"])
    assert set(table[table.metric == "deletion_auc"].method) == {"gradcam", "control:centre"}
    sanity = table[table.metric.str.startswith("sanity_spearman:")]
    depths = randomisable_layers(create("resnet18", 7))
    assert set(sanity.method) == {"gradcam"}  # controls do not depend on the model
    assert set(sanity.metric) == {f"sanity_spearman:{name}" for name in depths}


HOLD_LOCK = """
import sys, time
from aubench.io import FolderLock
with FolderLock(sys.argv[1], "run folder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_run_folder_in_use_a_missing_device_and_an_unwritable_out_are_one_line(tmp_path, capsys):
    from aubench.cli import main

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    runs = ["--runs-root", str(tmp_path / "runs"), "--quiet"]
    try:
        assert holder.stdout.readline().strip() == "held"
        command = [sys.executable, "-m", "aubench", "run", "--suite", str(suite)]
        done = subprocess.run(
            [*command, "--out", str(out), *runs],
            capture_output=True,
            text=True,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"aubench run: error: run folder {out} is in use by pid {holder.pid} ")
    assert sorted(p.name for p in out.iterdir()) == [".aubench.lock"]
    assert not (tmp_path / "runs").exists()  # nothing trained
    for flags, message in [
        (["--device", "cpu:7"], "aubench run: error: device 'cpu:7': there is one CPU device"),
        (["--device", "tpu"], "aubench run: error: device 'tpu' is not a device"),
        (["--out", "/sys/aubench-run"], "cannot write to run folder /sys/aubench-run"),
    ]:
        argv = ["run", "--suite", str(suite), "--out", str(tmp_path / "other"), *runs, *flags]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "other").exists()
