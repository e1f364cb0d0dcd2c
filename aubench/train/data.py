"""The data of a training run: the splits of ``config.data``, their transforms and loaders.

Validation (``config.validation``): ``holdout`` selects on a split held out of training
(``val_fraction`` of it) and also scores the test split each epoch; ``test`` is the paper's
protocol — train on the whole training split and select on the test split (its accuracies are
optimistic). The training split gets :class:`~aubench.data.transforms.TrainTransform` when
``config.augment`` (else the eval transform); evaluated splits get
:class:`~aubench.data.transforms.EvalTransform`. Images come out (3, size, size), normalised.

With per-image ``config.evidence`` (not ``codebook``) every split's samples also carry their AU
evidence (:class:`~aubench.data.au_evidence.EvidenceFaces`); what did not match the split's
images, and the AUs shown that aubench has no region for, are told in an
:class:`EvidenceWarning` (the maps' invalid reasons are counted by each epoch's evaluation).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from aubench.data.table import EmptySplitError
from aubench.data.transforms import EvalTransform, TrainTransform, TransformedDataset
from aubench.train.config import TrainConfig
from aubench.train.distributed import ShardSampler


class EvidenceWarning(UserWarning):
    """Per-image AU evidence that did not match a split's images, or shows AUs without a
    region (counted, never dropped silently)."""


def open_split(config: TrainConfig, split: str) -> Dataset:
    """Split ``split`` of ``config.data`` with images in [0, 1] (the transforms normalise)."""
    from aubench.data.registry import open_dataset  # every loader: imported only to train

    return open_dataset(
        config.data,
        split,
        size=config.size,
        seed=config.seed,
        val_fraction=config.val_fraction,
        num_classes=config.num_classes,
        normalize=False,
    )


@dataclass
class TrainingData:
    """The training set and the evaluated splits of a run, transforms applied."""

    train: TransformedDataset
    evals: dict[str, TransformedDataset]
    num_classes: int
    select: str  # the split whose accuracy selects the best checkpoint


def load_data(config: TrainConfig) -> TrainingData:
    """Open the training split and the evaluated splits (``validation`` in the module doc), each
    with its per-image evidence when ``config.evidence`` asks for it (:func:`with_evidence`).

    Under ``validation: test`` the model trains on the whole training split: where the dataset
    carves its validation split out of train, the carved part is added back.
    """
    train = open_split(config, "train")
    num_classes = int(getattr(train, "num_classes", config.num_classes or 7))
    carved = config.validation == "test" and _carves_validation(train)
    splits = {"train": train, "val": open_split(config, "val")} if carved else {"train": train}
    if not sum(map(len, splits.values())):
        raise ValueError(f"dataset {config.data!r} has an empty training split")
    select = "val" if config.validation == "holdout" else "test"
    for name in _evaluated_splits(config):
        try:
            splits[name] = open_split(config, name)
        except EmptySplitError:
            if name == select:
                raise
            # an empty test split is not scored during training
    splits = with_evidence(config, splits)
    train = splits.pop("train")
    if carved:
        train = ConcatDataset([train, splits.pop("val")])
    evals = {
        name: TransformedDataset(data, EvalTransform(config.size), config.seed)
        for name, data in splits.items()
    }
    transform = TrainTransform(config.size) if config.augment else EvalTransform(config.size)
    return TrainingData(
        TransformedDataset(train, transform, config.seed), evals, num_classes, select
    )


def with_evidence(config: TrainConfig, splits: dict[str, Dataset]) -> dict[str, Dataset]:
    """The opened ``splits`` (name → split of ``config.data``), each as
    :class:`~aubench.data.au_evidence.EvidenceFaces` under per-image ``config.evidence`` (its
    file read once), else as they are. One :class:`EvidenceWarning` tells, when there is any,
    each split's images without evidence and keys fitting several of its images or repeated, the
    evidence's keys fitting no image of any split, the rows its reader skipped and the AUs shown
    that aubench has no region for (per AU: the images showing it)."""
    from aubench.data.au_evidence import (
        AMBIGUOUS,
        NO_EVIDENCE,
        REPEATED,
        EvidenceFaces,
        read_evidence,
        split_evidence,
    )

    if config.evidence == "codebook":
        return splits
    table = read_evidence(next(iter(splits.values())), config.evidence)
    found = {name: split_evidence(data, config.evidence, table) for name, data in splits.items()}
    problems = []
    for name, evidence in found.items():
        counts = evidence.unmatched.counts
        told = [reason for reason in (NO_EVIDENCE, AMBIGUOUS, REPEATED) if counts[reason]]
        problems += [f"{name}: {reason}: {counts[reason]}" for reason in told]
        unregioned = evidence.unregioned(range(len(evidence)))
        if unregioned:
            shown = ", ".join(f"AU{au} in {n}" for au, n in sorted(unregioned.items()))
            problems.append(f"{name}: AUs without a region (not drawn): {shown}")
    if table is not None:
        used = np.zeros(len(table), dtype=bool)
        for evidence in found.values():
            used[evidence.rows[evidence.rows >= 0]] = True
        if not used.all():
            examples = ", ".join(table.locations.to_numpy(zero_copy_only=False)[~used][:3])
            lost = int((~used).sum())
            problems.append(f"keys fitting no image of any split: {lost} (e.g. {examples})")
        if table.skipped:
            problems.append(f"rows skipped reading it: {table.skipped.summary()}")
    if problems:
        source = next(iter(found.values())).source
        warnings.warn(
            f"{config.evidence} evidence ({source}) of {config.data}: {'; '.join(problems)}",
            EvidenceWarning,
            stacklevel=3,
        )
    return {name: EvidenceFaces(splits[name], evidence) for name, evidence in found.items()}


def _evaluated_splits(config: TrainConfig) -> tuple[str, ...]:
    return ("val", "test") if config.validation == "holdout" else ("test",)


def training_data_fingerprint(config: TrainConfig) -> str:
    """12 hex digits identifying the content of the splits a training run of ``config`` reads
    (train, val and test: each is trained on, selected on or scored every epoch): their
    ``content_fingerprint`` (ids, labels, landmarks, image files' sizes and mtimes), and with a
    detector's evidence its files' names, sizes and mtimes, so that a model trained once is
    reused only on the same data. Empty splits count as empty."""
    digest = hashlib.sha256(config.data.encode())
    if config.evidence != "codebook":  # a detector's output: its files' names, sizes, mtimes
        from aubench.data.au_evidence import evidence_fingerprint

        digest.update(f"evidence={evidence_fingerprint(config.evidence)};".encode())
    for name in ("train", "val", "test"):
        try:
            digest.update(f"{name}={open_split(config, name).content_fingerprint};".encode())
        except EmptySplitError:
            digest.update(f"{name}=empty;".encode())
    return digest.hexdigest()[:12]


def _carves_validation(dataset: Dataset) -> bool:
    """Whether ``dataset``'s ``val`` split is a part of its training split (no shipped val)."""
    table = getattr(dataset, "table", None)
    return table is not None and not getattr(table, "has_val", True)


def make_loader(
    dataset: Dataset, sampler: ShardSampler, batch_size: int, workers: int, train: bool, pin: bool
) -> DataLoader:
    """A DataLoader over this rank's shard; training loaders drop the last partial batch."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=train,
        pin_memory=pin,
    )
