"""``protocol: belharbi2024`` end to end: ``aubench run --protocol``, ``aubench evaluate
--protocol`` (a model and precomputed maps) and ``aubench.evaluate(protocol=...)`` on a tiny folder
of synthetic faces at 112² (one face with non-finite landmarks, one whose AU regions vanish in the
28×28 sampling, no fear face in the test split), scored by a planted, untrained tiny ResNet (timm's
``test_resnet``). Every per-image cosine equals the straightforward per-image transcription of the
reference code in tests/references.py (raw maps read off the model with a forward hook: ATT-COS from
layer4's channel mean, CAM-COS from the classifier's row) to 1e-6, and so do the class means and the
macro with the empty class at −1; the heatmaps agree to MAE ≤ 1e-4 per map and 1e-3 per pixel; the
kept fixes are counted in the manifest and the report; captions and the manifest name the protocol.
The default protocol's run is aubench's pipeline, unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import aubench
from aubench.bench.api import evaluation_suite
from aubench.bench.evaluate import add_protocol_heatmaps, load_trained
from aubench.bench.results import read_manifest, read_per_image, read_results, read_samples
from aubench.bench.runner import model_dir, plan, suite_hash
from aubench.bench.suite import Protocol, SuiteError, load_suite, suite_from_dict
from aubench.cli import main
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.data.transforms import EvalTransform, TransformedDataset
from aubench.explain import get_explainer
from aubench.explain.postprocess import PROTOCOLS, default_postprocess
from aubench.faces.codebook import EXPRESSIONS, Expression, get_codebook
from aubench.faces.heatmaps import au_heatmaps
from aubench.metrics import cosine
from aubench.train.data import open_split
from tests.references import paper_attention, paper_cam, paper_cosine, paper_heatmap
from tests.test_evaluate_cli import plant_trained_model

SIZE = 112
COMMITTED = Path(__file__).resolve().parents[1] / "reports"
FEAR = int(Expression.FEAR)
HAPPINESS = int(Expression.HAPPINESS)
FAST = ["--quiet", "--bootstrap", "20"]


def tiny_suite(path: Path, data: str) -> Path:
    values = {
        "name": "tiny",
        "data": data,
        "train": {"size": SIZE},
        "models": ["test_resnet"],
        "variants": [{"name": "baseline"}],
        "explainers": ["attention", "cam"],
        "controls": [],
        "layers": ["stage:5"],
        "metrics": ["cosine"],
        "aggregation": {"bootstrap": 20},
        "eval": {"batch_size": 8, "samples_per_class": 1},
        "device": "cpu",  # the transcription's device: no TF32 convolutions
    }
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The faces, the planted model, and the runs: the paper's protocol with the empty class at
    −1 (``aubench run``), the default protocol on the same model, and ``aubench evaluate``."""
    root = tmp_path_factory.mktemp("protocol")
    faces = root / "faces"
    export_synthetic(SyntheticFaces(28, SIZE, "train", 0), faces, progress=False)
    table = pd.read_csv(faces / "labels.csv", dtype=str, keep_default_na=False)
    labels = table.label.astype(int)
    table["split"] = np.where(labels == FEAR, "train", "test")
    nan_face, vanished_face = np.flatnonzero((labels != FEAR) & (labels != 0))[:2]
    xs, ys = [f"x{k}" for k in range(68)], [f"y{k}" for k in range(68)]
    table.loc[nan_face, xs + ys] = ""  # a failed detection: the reference raises on it
    # happiness (AU6, AU12): the lower mouth-corner ellipse (radius 20 around y = int(-20.3))
    # paints row 0 only, which the 28×28 resize of a 112-row image never reads; the other
    # corner and the cheeks lie higher still
    table.loc[vanished_face, ["label", "expression"]] = [str(HAPPINESS), "happiness"]
    rows = table.loc[vanished_face, ys].astype(float)
    table.loc[vanished_face, ys] = (rows - 20.3 - rows[["y48", "y54"]].max()).map(str)
    table.to_csv(faces / "labels.csv", index=False)
    data = f"folder:{faces}"
    suite = tiny_suite(root / "tiny.yaml", data)
    runs = root / "runs"
    best = plant_trained_model(suite, runs)
    common = ["--suite", suite, "--runs-root", runs]
    paper = ["run", *common, "--out", root / "paper", "--protocol", "belharbi2024"]
    assert main([*map(str, paper), "--set", "aggregation.empty_class=-1", "--quiet"]) == 0
    assert main([*map(str, ["run", *common, "--out", root / "default"]), "--quiet"]) == 0
    evaluated = ["evaluate", "--model", "timm:test_resnet", "--checkpoint", best, "--data", data,
                 "--input-size", SIZE, "--crop", "as-is", "--explainers", "attention,cam",
                 "--controls", "none", "--metrics", "cosine", "--protocol", "belharbi2024",
                 "--out", root / "evaluated", "--device", "cpu"]  # fmt: skip
    assert main([*map(str, evaluated), *FAST]) == 0
    config = plan(load_suite(str(suite)))[0].config
    ids = [str(i) for i in table.image]
    return {
        "root": root,
        "data": data,
        "config": config,
        "model_dir": model_dir(runs, config),
        "nan_id": ids[nan_face],
        "vanished_id": ids[vanished_face],
    }


@pytest.fixture(scope="module")
def reference(world) -> pd.DataFrame:
    """:func:`per_image_transcription` of the planted model on the test faces."""
    return per_image_transcription(world)


def per_image_transcription(world: dict) -> pd.DataFrame:
    """The reference code's scores, image by image: raw maps read off the model (layer4's
    activations A by a forward hook: attention = channel mean of A, CAM = Σ_k W[label, k] A_k),
    post-processed, heatmap and cosine by the per-image transcriptions of tests/references.py."""
    model, config, _ = load_trained(world["model_dir"], torch.device("cpu"))
    faces = TransformedDataset(open_split(config, "test"), EvalTransform(SIZE), config.seed)
    book = get_codebook("belharbi2024")
    captured = {}
    model.layer4.register_forward_hook(lambda _m, _i, out: captured.update(A=out))
    rows = []
    for index in range(len(faces)):
        face = faces[index]
        label = int(face["label"])
        with torch.no_grad():
            model(face["image"][None])
        activations = captured["A"][0].detach().double()
        row = model.fc.weight[label].detach().double()
        raw = {
            "attention": activations.mean(0).numpy(),
            "cam": torch.einsum("k,khw->hw", row, activations).numpy(),
        }
        maps = {
            "attention": paper_attention(raw["attention"], SIZE, SIZE),
            "cam": paper_cam(raw["cam"], SIZE, SIZE, relu=False),
        }
        heatmap, ok = paper_heatmap(face["landmarks"].double().numpy(), label, book, SIZE, SIZE)
        for method, shown in maps.items():
            score = paper_cosine(shown, heatmap) if ok else np.nan
            rows.append((face["id"], label, method, score, ok, raw[method], heatmap))
    columns = ["id", "label", "method", "value", "reference_valid", "raw", "heatmap"]
    return pd.DataFrame(rows, columns=columns)


def test_every_cosine_and_the_macro_match_the_per_image_reference(world, reference):
    per_image = read_per_image(world["root"] / "paper")
    scored = per_image[per_image.metric == "cosine"].set_index(["id", "method"])
    merged = reference.merge(
        scored[["value", "reason"]], on=["id", "method"], suffixes=("", "_aubench")
    )

    valid = merged.reason == "valid"
    assert valid.sum() >= 2 * 12
    errors = (merged.value_aubench[valid] - merged.value[valid]).abs()
    assert errors.max() <= 1e-6, f"worst per-image cosine error {errors.max():.2e}"
    # the fixes: invalid here, not in the reference (which raises on the first and scores an
    # all-zero map 0 for the second)
    by_id = merged.drop_duplicates("id").set_index("id")
    assert by_id.reason[world["nan_id"]] == "no-landmarks"
    assert by_id.reason[world["vanished_id"]] == "outside"
    assert by_id.reference_valid[world["vanished_id"]]
    assert not by_id.heatmap[world["vanished_id"]].any()
    moved = by_id[by_id.reference_valid & (by_id.reason != "valid")].index.tolist()
    assert moved == [world["vanished_id"]]

    results = read_results(world["root"] / "paper")
    for method in ("attention", "cam"):
        mine = merged[valid & (merged.method == method)]
        means = mine.groupby("label").value.mean()
        rows = results[(results.method == method) & (results.metric == "cosine")]
        rows = rows.set_index("class")
        for label, mean in means.items():
            assert abs(rows.value[EXPRESSIONS[label]] - mean) <= 1e-6
        # fear has no test face: −1, n = 0, averaged into the macro (the reference's convention)
        assert rows.value["fear"] == -1 and rows.n["fear"] == 0
        expected = (means.drop(0, errors="ignore").sum() - 1) / 6
        assert abs(rows.value["macro"] - expected) <= 1e-6
        assert rows.n["macro"] == len(mine)


def test_heatmaps_match_the_reference_transcription(world, reference):
    config = world["config"]
    reference = reference.drop_duplicates("id").set_index("id")
    faces = TransformedDataset(open_split(config, "test"), EvalTransform(SIZE), config.seed)
    batch = torch.utils.data.default_collate([faces[i] for i in range(len(faces))])
    built = add_protocol_heatmaps(batch, config, "belharbi2024")
    expected = np.stack([reference.heatmap[i] for i in batch["id"]])

    errors = np.abs(built["heatmap"].double().numpy() - expected)
    assert errors.mean(axis=(1, 2)).max() <= 1e-4 and errors.max() <= 1e-3
    vanished = [batch["id"][i] for i in built["vanished"].nonzero().flatten().tolist()]
    assert vanished == [world["vanished_id"]]
    # the faces kept for the figures: their heatmaps as stored (float16)
    samples = read_samples(next((world["root"] / "paper" / "samples").glob("*.npz")))
    stored = samples["heatmaps"].astype(np.float64)
    kept = np.stack([reference.heatmap[i] for i in samples["ids"]])
    assert np.abs(stored - kept).mean(axis=(1, 2)).max() <= 1e-4
    assert np.abs(stored - kept).max() <= 1e-3


def test_run_and_evaluate_record_the_protocol_its_fixes_and_captions(world):
    paper, evaluated = world["root"] / "paper", world["root"] / "evaluated"
    manifest = read_manifest(paper)
    (cell,) = manifest["fixes"]
    assert manifest["protocol"] == "belharbi2024"
    assert manifest["fixes"][cell] == {"images": 24, "no_landmarks": 1, "vanished": 1}
    assert manifest["suite"]["protocol"] == "belharbi2024"
    assert manifest["suite"]["aggregation"] == {
        "bootstrap": 20,
        "fill_undefined": 0.0,  # the protocol's default: undefined scores count 0
        "empty_class": -1.0,
    }
    main_tex = (paper / "report" / "tables" / "main.tex").read_text()
    assert r"\caption{Accuracy and alignment with the AU heatmaps, without and with AU " in main_tex
    assert "guidance. Evaluation protocol: belharbi2024.}" in main_tex
    page = (paper / "report" / "report.md").read_text()
    assert "- evaluation protocol: belharbi2024" in page
    assert "guidance. Evaluation protocol: belharbi2024.**" in page
    assert f"{cell}: 1 and 1 of 24" in page  # the fixes, counted
    assert "Classes with no scored image count -1 in the macro averages" in page
    assert "test_resnet baseline seed 0: fear" in page

    other = read_manifest(evaluated)
    assert other["protocol"] == "belharbi2024" and other["suite"]["protocol"] == "belharbi2024"
    (cell,) = other["fixes"]
    assert other["fixes"][cell]["vanished"] == 1
    assert "postprocess" not in other["models"][cell]  # a model: its explainers' own steps
    assert main(["report", str(evaluated)]) == 0
    assert (
        "Evaluation protocol: belharbi2024.}"
        in (evaluated / "report" / "tables" / "main.tex").read_text()
    )
    # the same model on the same faces: the same scores where both score the face
    keys = ["id", "method", "metric"]
    ours = read_per_image(paper)[[*keys, "value", "reason"]]
    theirs = read_per_image(evaluated)[[*keys, "value", "reason"]]
    both = ours.merge(theirs, on=keys, suffixes=("", "_evaluated"))
    both = both[(both.reason == "valid") & (both.reason_evaluated == "valid")]
    assert len(both) >= 2 * 17
    assert (both.value - both.value_evaluated).abs().max() <= 1e-6


def test_precomputed_maps_are_post_processed_as_the_reference_treats_a_cam(
    world, reference, tmp_path
):
    cams = reference[reference.method == "cam"]
    folder = tmp_path / "maps"
    for image_id, raw in zip(cams.id, cams.raw, strict=True):
        path = folder / Path(image_id).with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, raw)
    results, run = aubench.evaluate(
        maps=folder,
        data=world["data"],
        card={"input_size": SIZE},
        out=tmp_path / "run",
        protocol="belharbi2024",
        bootstrap=0,
        device="cpu",
    )
    scored = read_per_image(run)[["id", "value", "reason"]]
    merged = cams.merge(scored, on="id", suffixes=("", "_aubench"))
    valid = merged.reason == "valid"
    assert valid.sum() >= 17
    assert (merged.value_aubench[valid] - merged.value[valid]).abs().max() <= 1e-6
    manifest = read_manifest(run)
    (info,) = manifest["models"].values()
    assert info["postprocess"] == (
        "minmax > resize(112x112, bilinear, align_corners=False) > clamp(low=0.0, high=1.0)"
    )
    assert manifest["protocol"] == "belharbi2024" and set(results.method) == {"maps"}


def test_the_default_protocol_scores_aubench_s_pipeline_and_names_nothing(world):
    default = world["root"] / "default"
    manifest = read_manifest(default)
    assert manifest["protocol"] == "aubench" and "fixes" not in manifest
    assert "protocol" not in manifest["suite"]
    assert "empty_class" not in manifest["suite"]["aggregation"]
    assert "protocol" not in json.loads((default / "suite.json").read_text())
    assert "protocol" not in (default / "report" / "tables" / "main.tex").read_text()
    assert "protocol" not in (default / "report" / "report.md").read_text()
    results = read_results(default)
    assert (results.n[~results["class"].isin(["macro", "all"])] > 0).all()  # no −1 rows
    # aubench's pipeline, recomputed: its region model, ReLU/resize/min-max, NaN excluded
    model, config, _ = load_trained(world["model_dir"], torch.device("cpu"))
    faces = TransformedDataset(open_split(config, "test"), EvalTransform(SIZE), config.seed)
    batch = torch.utils.data.default_collate([faces[i] for i in range(len(faces))])
    heatmaps, valid = au_heatmaps(batch["landmarks"], batch["label"], SIZE)
    captured = {}
    model.layer4.register_forward_hook(lambda _m, _i, out: captured.update(A=out))
    with torch.no_grad():
        model(batch["image"])
    activations = captured["A"]
    raw = {
        "attention": activations.mean(1),
        "cam": torch.einsum("bk,bkhw->bhw", model.fc.weight[batch["label"]], activations),
    }
    scored = read_per_image(default).set_index(["id", "method"])
    for method, maps in raw.items():
        steps = default_postprocess(get_explainer(method), SIZE)
        expected = cosine(steps(maps.detach()), heatmaps, valid)
        got = torch.tensor([scored.value[(i, method)] for i in batch["id"]])
        torch.testing.assert_close(got, expected.double(), atol=1e-6, rtol=0, equal_nan=True)


def test_the_protocol_field_keeps_every_committed_suite_hash_and_names_bad_values(capsys):
    manifests = sorted(COMMITTED.glob("*/manifest.json"))
    assert len(manifests) >= 6
    for path in manifests:
        manifest = json.loads(path.read_text())
        suite = suite_from_dict(manifest["suite"])
        protocol = "belharbi2024" if path.parent.name.endswith("-belharbi2024") else "aubench"
        assert suite.protocol == protocol and suite.aggregation.empty_class is None
        assert suite_hash(suite) == manifest["suite_hash"], path
    assert get_args(Protocol) == PROTOCOLS
    plain = evaluation_suite("synthetic:n=10", model="timm:test_resnet")
    assert "protocol" not in plain.dump() and "empty_class" not in plain.dump()["aggregation"]
    paper = load_suite("quick", ["protocol=belharbi2024"])
    assert paper.aggregation.fill_undefined == 0.0 and suite_hash(paper) != suite_hash(plain)
    kept = load_suite("quick", ["protocol=belharbi2024", "aggregation.fill_undefined=null"])
    assert kept.aggregation.fill_undefined is None  # a suite that sets it keeps its value
    assert suite_from_dict(kept.dump()) == kept  # and round-trips
    with pytest.raises(SuiteError, match=r"protocol: Input should be 'aubench' or 'belharbi2024'"):
        load_suite("quick", ["protocol=paper"])
    assert main(["run", "--suite", "quick", "--protocol", "paper", "--dry-run"]) == 2
    assert "protocol: Input should be 'aubench' or 'belharbi2024'" in capsys.readouterr().err
