"""Training with per-image AU evidence (#17): ``evidence: facs`` on the synthetic faces aligns with
the maps of the AUs the renderer drew (``hybrid``: the codebook's AUs weighted by them), each
epoch's evaluation scores ATT-COS against the codebook's and the evidence's maps, a detector's
output is lined up with the splits (what fits no image is told), and the setting leaves every
earlier config's hash alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from aubench.cli import main
from aubench.data.au_evidence import EVIDENCE_KEY
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.faces.codebook import ALL_AUS
from aubench.faces.evidence import AUEvidence, evidence_heatmaps, hybrid_evidence
from aubench.faces.evidence_spec import EvidenceSpec, parse_evidence
from aubench.faces.heatmaps import au_heatmaps
from aubench.faces.synth_difficulty import DEFAULT_DIFFICULTY  # the faces of a data spec
from aubench.train.config import ConfigError, TrainConfig
from aubench.train.data import EvidenceWarning, load_data
from aubench.train.evaluation import EvalAccumulator
from aubench.train.loop import fit
from aubench.train.step import Trainer

SIZE = 64
#: 32 training faces (8 val, 8 test) at 64 px, timm's tiny ResNet (4×4 maps at layer4), one
#: epoch of 4 steps.
TINY = {
    "data": "synthetic:n=32",
    "size": SIZE,
    "model": "test_resnet",
    "epochs": 1,
    "batch_size": 8,
    "eval_batch_size": 16,
    "large_maps": False,
    "guided": True,
    "evidence": "facs",
}


def first_batch(config: TrainConfig) -> tuple[Trainer, dict]:
    data = load_data(config)
    return Trainer(config, data.num_classes), next(iter(DataLoader(data.train, batch_size=8)))


def test_the_setting_parses_and_leaves_earlier_configs_hashes_alone():
    assert parse_evidence(" Detector:out/openface.csv") == EvidenceSpec(
        "detector", "out/openface.csv"
    )
    assert parse_evidence("hybrid") == EvidenceSpec("hybrid", None)
    assert str(parse_evidence("hybrid:au.parquet")) == "hybrid:au.parquet"
    assert TrainConfig(evidence="codebook").hash() == TrainConfig().hash() == "df438199fd51"
    assert TrainConfig(evidence="facs").hash() != TrainConfig().hash()
    assert "evidence" not in TrainConfig().canonical()
    for bad, message in [
        ("facts", "unknown evidence 'facts'; did you mean facs?"),
        ("detector", "give the detector's output, detector:PATH"),
        ("facs:x.csv", "facs takes no path"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict({"evidence": bad})


def test_train_flag_sets_it_and_a_bad_value_is_one_line(capsys):
    assert main(["train", "--evidence", "detector:of.csv", "--dump-config"]) == 0
    assert "evidence: detector:of.csv" in capsys.readouterr().out
    assert main(["train", "--evidence", "facts", "--dump-config"]) == 2
    assert "did you mean facs?" in capsys.readouterr().err


def test_facs_training_aligns_with_the_maps_of_the_rendered_aus():
    trainer, batch = first_batch(TrainConfig(**TINY))
    seen = []
    loss = trainer.alignment

    def recorded(features, heatmaps, valid):  # the real loss, its inputs kept
        seen.append((heatmaps, valid))
        return loss(features, heatmaps, valid)

    trainer.alignment = recorded
    trainer.train_step(batch)
    # the renderer's own record of the AUs it drew (the sample's au_intensity), not the
    # evidence vector the data layer derived from the faces' parameters
    rendered = AUEvidence(ALL_AUS, batch["au_intensity"])
    expected = evidence_heatmaps(batch["landmarks"], rendered, SIZE)
    (heatmaps, valid), *_ = seen
    assert torch.equal(heatmaps, expected.heatmaps) and torch.equal(valid, expected.valid)
    neutral = batch["label"] == 0
    assert neutral.any() and not valid[neutral].any() and valid[~neutral].all()
    codebook, _ = au_heatmaps(batch["landmarks"], batch["label"], SIZE)
    assert (heatmaps[valid] - codebook[valid]).abs().amax() > 0.1  # intensities 0.6–1, not 1
    # the evidence travels as a 99-vector over AU numbers, AU k in column k − 1
    vectors = batch[EVIDENCE_KEY]
    assert vectors.shape == (8, 99) and not vectors.isnan().any()
    assert torch.equal(vectors[:, [au - 1 for au in ALL_AUS]], batch["au_intensity"])


def test_hybrid_weights_the_codebook_aus_by_the_rendered_intensities():
    # the paper's codebook differs from the one the faces show (disgust: AU5 instead of AU10)
    config = TrainConfig(**{**TINY, "evidence": "hybrid", "codebook": "belharbi2024"})
    trainer, batch = first_batch(config)
    target = trainer.with_targets(batch)
    weighted = hybrid_evidence(
        AUEvidence(ALL_AUS, batch["au_intensity"]), batch["label"], "belharbi2024"
    )
    expected = evidence_heatmaps(batch["landmarks"], weighted, SIZE)
    assert torch.equal(target["heatmap"], expected.heatmaps)
    assert torch.equal(target["invalid_reason"], expected.reasons)


def test_each_epoch_scores_att_cos_against_both_maps(tmp_path):
    summary = fit(TrainConfig(**TINY), out=tmp_path / "run", progress=False, tensorboard=False)
    row = summary["last"]
    neutral = sum(label == 0 for label in SyntheticFaces(8, SIZE, "val").labels)
    assert neutral > 0
    assert row["val_invalid/no_aus"] == row["val_invalid@evidence/no_present_aus"] == neutral
    assert row["val_n_valid"] == row["val_n_valid@evidence"] == 8 - neutral
    assert row["val_invalid@evidence/no_region_aus"] == 0
    assert 0 < row["val_att_cos@evidence"] < 1 and 0 < row["val_att_cos"] < 1
    assert row["val_att_cos@evidence"] != row["val_att_cos"]
    columns = pd.read_csv(tmp_path / "run" / "metrics.csv").columns
    assert {"test_att_cos@evidence/layer4", "test_invalid@evidence/outside"} <= set(columns)


def test_att_cos_against_the_evidence_maps_averages_over_their_valid_images():
    attention = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]).expand(3, 2, 2)
    codebook = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]).expand(3, 2, 2)
    found = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0] * 2] * 2])
    labels = torch.tensor([1, 1, 2])
    meter = EvalAccumulator(7, ["layer4"], torch.device("cpu"), evidence=True)
    meter.update(
        torch.eye(7)[labels],
        labels,
        {"layer4": attention},
        codebook,
        torch.tensor([True, True, True]),
        torch.zeros(3, dtype=torch.long),
        (found, torch.tensor([True, True, False]), torch.tensor([0, 0, 4])),
    )
    scores = meter.compute()
    # codebook: cos = 0.5 everywhere; evidence: class 1 has cos 1 and 1/√2, class 2 none valid
    assert scores["att_cos"] == pytest.approx(0.5)
    assert scores["att_cos@evidence"] == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    assert (scores["n_valid"], scores["n_valid@evidence"]) == (3, 2)
    assert scores["invalid@evidence/no_present_aus"] == 1 and "invalid/no_present_aus" not in scores


def openface_csv(path, faces: SyntheticFaces, keys: list[str]) -> None:
    """An OpenFace 2.x CSV (``image, face_id, success, AUxx_r, AUxx_c``) of the AUs ``faces``
    were drawn with (intensity × 5), one row per key (the faces' ids, in order)."""
    frame = pd.DataFrame({"image": keys, "face_id": 0, "success": 1})
    drawn = np.stack([faces.au_intensity(i) for i in range(len(keys))])
    for k, au in enumerate(ALL_AUS):
        frame[f"AU{au:02d}_r"] = drawn[:, k] * 5.0
        frame[f"AU{au:02d}_c"] = (drawn[:, k] > 0).astype(int)
    frame.to_csv(path, index=False)


def test_a_detectors_output_is_lined_up_with_every_split_and_strays_are_told(tmp_path):
    faces = SyntheticFaces(32, SIZE, "train", difficulty=DEFAULT_DIFFICULTY)
    keys = [faces.sample_id(i) for i in range(32)]
    keys[3] = "synthetic-train-999999"  # no such face: train image 3 has no evidence
    openface_csv(tmp_path / "openface.csv", faces, keys)
    config = TrainConfig(**{**TINY, "evidence": f"detector:{tmp_path / 'openface.csv'}"})
    with pytest.warns(EvidenceWarning) as told:
        data = load_data(config)
    (warning,) = told
    text = str(warning.message)
    assert "train: image without evidence: 1" in text  # image 3
    assert "val: image without evidence: 8" in text and "test: image without evidence: 8" in text
    assert "keys fitting no image of any split: 1" in text and "openface.csv:5" in text
    item = data.train[0]
    assert torch.allclose(item[EVIDENCE_KEY][[au - 1 for au in ALL_AUS]], item["au_intensity"])
    assert data.train[3][EVIDENCE_KEY].isnan().all()


def test_facs_of_a_dataset_without_an_au_reader_is_refused(tmp_path):
    export_synthetic(SyntheticFaces(16, SIZE, "train"), tmp_path / "faces", progress=False)
    config = TrainConfig(**{**TINY, "data": f"folder:{tmp_path / 'faces'}"})
    with pytest.raises(
        ValueError, match=r"aubench reads no AU coding of dataset 'folder'.*detector"
    ):
        load_data(config)
