"""Evaluation against per-image AU evidence (#17), end to end: ``aubench run --evidence facs`` on
the synthetic faces (whose rendered AUs are the exact evidence) and on a miniature CK+ (its FACS
files), ``aubench evaluate --evidence detector:CSV`` with an OpenFace CSV keyed by the faces' ids.
The same maps are scored against the codebook's and the evidence's heatmaps in one pass: the
``<metric>@evidence`` scores equal a per-image recomputation from the rendered (or coded) AUs, the
codebook's rows are those of a run without evidence, bit for bit, and each cell tells what did not
match, the AUs without a region, the invalid evidence maps and each class's agreement with its
prototype. A planted, untrained tiny ResNet (timm's ``test_resnet``) is scored; nothing trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from aubench.bench.evaluate import load_trained
from aubench.bench.results import read_manifest, read_per_image, read_results, read_samples
from aubench.bench.runner import cell_evidence_file, model_dir, plan, sample_file
from aubench.bench.suite import load_suite
from aubench.cli import main
from aubench.data.au_evidence import NO_IMAGE
from aubench.data.synthetic import SyntheticFaces
from aubench.data.transforms import EvalTransform, TransformedDataset
from aubench.explain import explain, get_explainer
from aubench.explain.postprocess import default_postprocess
from aubench.faces.codebook import ALL_AUS, EXPRESSIONS, get_codebook
from aubench.faces.evidence import AUEvidence, evidence_heatmaps
from aubench.faces.heatmaps import au_heatmaps
from aubench.faces.synth_difficulty import DEFAULT_DIFFICULTY  # the faces of a data spec
from aubench.train.data import open_split
from tests.dataset_trees import face_points, make_ckplus
from tests.test_evaluate_cli import plant_trained_model
from tests.test_evidence_training import openface_csv

SIZE = 64
SYNTHETIC = "synthetic:n=48"  # 12 test faces
CELL = "test_resnet__baseline__0__test"
FAST = ["--quiet", "--device", "cpu"]


def write_suite(path: Path, data: str, **train) -> Path:
    values = {
        "name": "tiny",
        "data": data,
        "train": {"size": SIZE, "large_maps": False, **train},
        "models": ["test_resnet"],
        "variants": [{"name": "baseline"}],
        "explainers": ["attention"],
        "controls": ["centre"],
        "layers": ["stage:5"],
        "metrics": ["cosine", "pxap"],
        "aggregation": {"bootstrap": 20},
        "eval": {"batch_size": 8, "samples_per_class": 1},
    }
    path.write_text(yaml.safe_dump(values))
    return path


def run(suite: Path, runs: Path, out: Path, *flags: str) -> Path:
    command = ["run", "--suite", suite, "--runs-root", runs, "--out", out, *flags, *FAST]
    assert main([str(part) for part in command]) == 0
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The planted model; its runs with and without ``--evidence facs``; ``aubench evaluate``
    with an OpenFace CSV of the test faces' rendered AUs, one face left out, one stray key and
    one face showing AU45 (no region)."""
    root = tmp_path_factory.mktemp("evidence")
    suite = write_suite(root / "tiny.yaml", SYNTHETIC)
    runs = root / "runs"
    best = plant_trained_model(suite, runs)
    faces = SyntheticFaces(12, SIZE, "test", difficulty=DEFAULT_DIFFICULTY)
    keys = [faces.sample_id(i) for i in range(12)]
    keys[5] = "synthetic-test-000099"  # face 5 has no row; this row fits no face
    openface_csv(root / "openface.csv", faces, keys)
    table = pd.read_csv(root / "openface.csv")
    table["AU45_r"], table["AU45_c"] = 0.0, 0
    table.loc[1, ["AU45_r", "AU45_c"]] = [2.0, 1]  # face 1 blinks
    table.to_csv(root / "openface.csv", index=False)
    evaluated = ["evaluate", "--model", "timm:test_resnet", "--checkpoint", best,
                 "--data", SYNTHETIC, "--input-size", SIZE, "--crop", "as-is",
                 "--explainers", "attention", "--controls", "centre", "--metrics", "cosine,pxap",
                 "--bootstrap", "20", "--evidence", f"detector:{root / 'openface.csv'}",
                 "--out", root / "evaluated"]  # fmt: skip
    assert main([str(part) for part in evaluated] + FAST) == 0
    return {
        "root": root,
        "suite": suite,
        "config": plan(load_suite(str(suite)))[0].config,
        "runs": runs,
        "codebook": run(suite, runs, root / "codebook"),
        "facs": run(suite, runs, root / "facs", "--evidence", "facs"),
        "detector": root / "evaluated",
    }


def recomputed(config, runs: Path, evidence_of) -> pd.DataFrame:
    """Per test face, straightforwardly: the planted model's (under ``runs``) attention map at
    layer4 (post-processed: ReLU where defined, bilinear resize, min-max), and its cosine with
    the codebook's heatmap and with the heatmap of ``evidence_of(face)`` (an :class:`AUEvidence`
    of one image)."""
    model, _, _ = load_trained(model_dir(runs, config), torch.device("cpu"))
    faces = TransformedDataset(open_split(config, "test"), EvalTransform(SIZE), config.seed)
    steps = default_postprocess(get_explainer("attention"), SIZE)
    rows = []
    for index in range(len(faces)):
        face = faces[index]
        image, label, points = face["image"][None], int(face["label"]), face["landmarks"][None]
        raw = explain(model, image, [label], ["layer4"], ["attention"])["attention"]["layer4"]
        mapped = steps(raw.float())[0].double()
        codebook, valid = au_heatmaps(points, [label], SIZE)
        found = evidence_heatmaps(points, evidence_of(face), SIZE)
        rows.append(
            {
                "id": face["id"],
                "cosine": _cosine(mapped, codebook[0]) if valid[0] else np.nan,
                "cosine@evidence": _cosine(mapped, found.heatmaps[0]) if found.valid[0] else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("id")


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


def scored(run_dir: Path, metric: str) -> pd.Series:
    """The attention map's per-image ``metric`` of a run (NaN where not scored), by id."""
    table = read_per_image(run_dir)
    rows = table[(table.method == "attention") & (table.metric == metric)]
    return rows.set_index("id").value


def rendered(face: dict) -> AUEvidence:
    return AUEvidence(ALL_AUS, face["au_intensity"][None])


def test_evidence_scores_equal_a_recomputation_from_the_rendered_aus(world):
    expected = recomputed(world["config"], world["runs"], rendered)
    for metric in ("cosine", "cosine@evidence"):
        got = scored(world["facs"], metric).reindex(expected.index)
        np.testing.assert_allclose(got, expected[metric], atol=1e-5, rtol=0)
    # the rendered intensities (0.6–1) make the evidence maps differ from the codebook's
    assert (expected["cosine"] - expected["cosine@evidence"]).abs().max() > 1e-3


def test_the_codebook_rows_are_those_of_a_run_without_evidence(world):
    plain, both = read_results(world["codebook"]), read_results(world["facs"])
    evidence = both.metric.str.endswith("@evidence")
    pd.testing.assert_frame_equal(both[~evidence].reset_index(drop=True), plain)
    assert set(both[evidence].metric) == {"cosine@evidence", "pxap@evidence"}
    assert set(both[evidence].method) == {"attention", "control:centre"}
    macro = both[(both.metric == "cosine@evidence") & (both["class"] == "macro")]
    assert macro.value.between(0, 1).all() and (macro.n > 0).all()
    per_image = read_per_image(world["facs"])
    assert set(per_image.metric) == {"pred", "cosine", "cosine@evidence"}  # pxap: dataset-level
    plain_images = read_per_image(world["codebook"])
    kept = per_image[per_image.metric != "cosine@evidence"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, plain_images)


def test_invalid_evidence_maps_agreement_and_metadata_are_recorded(world):
    run_dir = world["facs"]
    labels = np.asarray(SyntheticFaces(12, SIZE, "test", difficulty=DEFAULT_DIFFICULTY).labels)
    neutral = int((labels == 0).sum())
    assert neutral > 0
    found = json.loads(
        cell_evidence_file(run_dir, plan(load_suite(str(world["suite"])))[0]).read_text()
    )
    counts = {key: found[key] for key in ("evidence", "source", "images", "no_evidence")}
    assert counts == {"evidence": "facs", "source": "synthetic", "images": 12, "no_evidence": 0}
    assert found["invalid"] == {"no_present_aus": neutral}
    assert found["unmatched"] == {} and found["unregioned_aus"] == {}
    book = get_codebook(found["codebook"])
    # the rendered AUs are the prototype: every face agrees exactly, each AU of it on every face
    for name, agreement in found["agreement"].items():
        assert agreement["prototype"] == list(book.aus_of(EXPRESSIONS.index(name)))
        assert agreement["exact"] == agreement["n"] and agreement["jaccard"] == 1.0, name
        assert set(agreement["au_frequency"].values()) <= {1.0}, name
        assert [int(au) for au in agreement["au_frequency"]] == agreement["prototype"]
    assert sum(a["n"] for a in found["agreement"].values()) == 12
    manifest = read_manifest(run_dir)
    assert manifest["evidence"]["evidence"] == "facs"
    assert manifest["evidence"]["cells"][CELL]["invalid"] == {"no_present_aus": neutral}
    assert "agreement" not in manifest["evidence"]["cells"][CELL]
    assert manifest["metrics"]["cosine@evidence"] == manifest["metrics"]["cosine"]
    assert "evidence" not in read_manifest(world["codebook"])
    reasons = read_per_image(run_dir).query("metric == 'cosine@evidence'").reason
    assert (reasons == "no-present-aus").sum() == 2 * neutral  # attention and the control
    samples = read_samples(sample_file(run_dir, "test_resnet", "baseline", 0))
    assert samples["evidence_heatmaps"].shape == samples["heatmaps"].shape


def test_a_detectors_csv_is_matched_by_id_and_what_did_not_match_is_counted(world):
    run_dir = world["detector"]
    cell = "test_resnet__evaluated__0__test"
    found = read_manifest(run_dir)["evidence"]["cells"][cell]
    assert found["source"] == "openface" and found["images"] == 12
    assert found["no_evidence"] == 1  # face 5
    assert found["unmatched"] == {NO_IMAGE: 1}
    assert found["unmatched_examples"][NO_IMAGE] == [f"{world['root'] / 'openface.csv'}:7"]
    assert found["unregioned_aus"] == {"AU45": 1}  # face 1: drawn without it
    faces = SyntheticFaces(12, SIZE, "test", difficulty=DEFAULT_DIFFICULTY)
    labels = np.asarray(faces.labels)
    missing = int(labels[5] != 0)  # face 5 shows no AU: invalid like a neutral face
    assert found["invalid"] == {"no_present_aus": int((labels == 0).sum()) + missing}
    # the detector's intensities are the rendered ones (× 5, / 5): the facs run's scores
    ids = [
        SyntheticFaces(12, SIZE, "test", difficulty=DEFAULT_DIFFICULTY).sample_id(i)
        for i in range(12)
    ]
    detected = scored(run_dir, "cosine@evidence").reindex(ids)
    truth = scored(world["facs"], "cosine@evidence").reindex(ids)
    assert np.isnan(detected.iloc[5])  # no evidence: not scored
    keep = [i for i in range(12) if i != 5]
    np.testing.assert_allclose(detected.iloc[keep], truth.iloc[keep], atol=1e-5, rtol=0)


def test_bad_evidence_settings_are_one_line(world, capsys):
    suite = world["root"] / "tiny.yaml"
    assert main(["run", "--suite", str(suite), "--evidence", "facts", "--dry-run"]) == 2
    assert "unknown evidence 'facts'; did you mean facs?" in capsys.readouterr().err
    maps = ["evaluate", "--maps", str(world["root"]), "--data", SYNTHETIC, "--evidence", "facs"]
    assert main(maps) == 2
    assert "precomputed maps (" in capsys.readouterr().err


# --- CK+ -----------------------------------------------------------------------------------------

#: (FACS file, its rows) rewritten in the miniature CK+: the happy peak also blinks (AU45, no
#: region); the surprise peak codes nothing but AU45.
CK_FACS = {
    "S010/002/S010_002_00000004_facs.txt": [(6, 3), (12, 4), (25, 0), (45, 2)],
    "S026/004/S026_004_00000003_facs.txt": [(45, 1)],
}
#: The test split of ``frames=2,folds=2,fold=1``: subjects S010 (happy) and S026 (surprise),
#: their last two frames each; only the peaks are FACS coded.
HAPPY_PEAK = "S010_002_00000004"


def test_ckplus_facs_evidence_from_its_facs_files(tmp_path):
    root = make_ckplus(tmp_path / "ck")
    for name, rows in CK_FACS.items():
        text = "".join(f"   {au:.7e}   {level:.7e}\n" for au, level in rows)
        (root / "FACS" / name).write_text(text)
    # the happy peak's face inside its 160 × 120 image
    points = "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in face_points(30, 10, 100))
    (root / "Landmarks" / "S010/002" / f"{HAPPY_PEAK}_landmarks.txt").write_text(points)
    data = f"ckplus:{root}?frames=2,folds=2,fold=1"
    suite = write_suite(tmp_path / "ck.yaml", data, num_classes=7)
    runs = tmp_path / "runs"
    plant_trained_model(suite, runs)
    run_dir = run(suite, runs, tmp_path / "out", "--evidence", "facs")
    found = json.loads((run_dir / "cells" / f"{CELL}.evidence.json").read_text())
    assert found["source"] == "ckplus" and found["images"] == 4
    assert found["no_evidence"] == 2  # the frames before the peaks
    # the FACS files of the other subjects' sequences fit no image of the test split
    assert found["unmatched"] == {NO_IMAGE: 4}
    assert found["unregioned_aus"] == {"AU45": 2}
    assert found["invalid"] == {"no_present_aus": 2, "no_region_aus": 1}
    happy, surprise = found["agreement"]["happiness"], found["agreement"]["surprise"]
    assert happy == {
        "n": 2,
        "prototype": [6, 12, 25],
        "exact": 0,
        "jaccard": (3 / 4 + 0) / 2,
        "au_frequency": {"6": 0.5, "12": 0.5, "25": 0.5, "45": 0.5},
    }
    assert (surprise["exact"], surprise["jaccard"], surprise["au_frequency"]["45"]) == (0, 0, 0.5)
    # the happy peak's map: AU6 at 3/5, AU12 at 4/5, AU25 coded without intensity (1), from
    # the transformed landmarks; the frames with no evidence are not scored
    config = plan(load_suite(str(suite)))[0].config
    coded = {HAPPY_PEAK: AUEvidence((6, 12, 25, 45), torch.tensor([[0.6, 0.8, 1.0, 0.4]]))}
    nothing = AUEvidence((6,), torch.tensor([[0.0]]))
    expected = recomputed(config, runs, lambda face: coded.get(face["id"], nothing))
    got = scored(run_dir, "cosine@evidence").reindex(expected.index)
    np.testing.assert_allclose(got, expected["cosine@evidence"], atol=1e-5, rtol=0)
    assert got.notna().tolist() == [i == HAPPY_PEAK for i in expected.index]
