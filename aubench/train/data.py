"""The data of a training run: the splits of ``config.data``, their transforms and loaders.

Validation (``config.validation``): ``holdout`` selects on a split held out of training
(``val_fraction`` of it) and also scores the test split each epoch; ``test`` is the paper's
protocol — train on the whole training split and select on the test split (its accuracies are
optimistic). The training split gets :class:`~aubench.data.transforms.TrainTransform` when
``config.augment`` (else the eval transform); evaluated splits get
:class:`~aubench.data.transforms.EvalTransform`. Images come out (3, size, size), normalised.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from torch.utils.data import ConcatDataset, DataLoader, Dataset

from aubench.data.table import EmptySplitError
from aubench.data.transforms import EvalTransform, TrainTransform, TransformedDataset
from aubench.train.config import TrainConfig
from aubench.train.distributed import ShardSampler


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
    """Open the training split and the evaluated splits (``validation`` in the module doc).

    Under ``validation: test`` the model trains on the whole training split: where the dataset
    carves its validation split out of train, the carved part is added back.
    """
    train = open_split(config, "train")
    num_classes = int(getattr(train, "num_classes", config.num_classes or 7))
    if config.validation == "test" and _carves_validation(train):
        train = ConcatDataset([train, open_split(config, "val")])
    if not len(train):
        raise ValueError(f"dataset {config.data!r} has an empty training split")
    select = "val" if config.validation == "holdout" else "test"
    evals = {}
    for name in _evaluated_splits(config):
        try:
            data = open_split(config, name)
        except EmptySplitError:
            if name == select:
                raise
            continue  # an empty test split is not scored during training
        evals[name] = TransformedDataset(data, EvalTransform(config.size), config.seed)
    transform = TrainTransform(config.size) if config.augment else EvalTransform(config.size)
    return TrainingData(
        TransformedDataset(train, transform, config.seed), evals, num_classes, select
    )


def _evaluated_splits(config: TrainConfig) -> tuple[str, ...]:
    return ("val", "test") if config.validation == "holdout" else ("test",)


def training_data_fingerprint(config: TrainConfig) -> str:
    """12 hex digits identifying the content of the splits a training run of ``config`` reads
    (train, val and test: each is trained on, selected on or scored every epoch): their
    ``content_fingerprint`` (ids, labels, landmarks, image files' sizes and mtimes), so that a
    model trained once is reused only on the same data. Empty splits count as empty."""
    digest = hashlib.sha256(config.data.encode())
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
