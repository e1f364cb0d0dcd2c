"""Precomputed maps scored against the AU heatmaps: ``aubench evaluate --maps PATH`` and a suite's
``models: [{name, maps: PATH}]`` entries.

Where the maps are (the wsolevaluation contract: one map per image id):

- a folder of ``.npy`` or ``.png`` files: ``DIR/<image id without its extension>.npy`` (the
  folder dataset's ``images/00012.png`` → ``DIR/images/00012.npy``), or ``DIR/<image id>.npy``
  (``DIR/images/00012.png.npy``), or a flat ``DIR/<stem>.npy`` where the stems are unique;
- one file of ids → maps: ``.npz`` (one array per id), ``.pt``/``.pth`` (a dict id → tensor,
  read with ``weights_only``) or ``.parquet`` (columns ``id`` and ``map``, each map a list of
  rows).

A key (a file's path below ``DIR`` without its suffix, or a file's id) matches an image id
exactly, or without the id's extension, or by file stem where stems are unique among the keys
and among the ids. Maps may have any resolution: each is resized to the heatmap side (bilinear,
``align_corners=False``) and min-max normalised (under protocol ``belharbi2024``: min-maxed at
its own resolution, resized, clamped to [0, 1], as the reference treats a CAM), the steps
recorded in the manifest. Heatmaps and landmarks follow the card's ``input_size`` and ``crop``
(:mod:`aubench.bench.crops`); the heatmaps are the protocol's
(:func:`aubench.bench.evaluate.add_protocol_heatmaps`). Results name the method ``maps`` at the
layer ``input``.

Map metrics (kinds ``map``, ``per_au``, ``dataset``) are scored; metrics that need a model
(faithfulness, AU occlusion, sanity checks) and accuracy are not, and the manifest says so and
why. Problems are counted by reason, never dropped silently: ``missing`` (a scored image without
a map), ``extra`` (a map matching no image of the split: counted only, as maps often cover every
split), ``wrong-rank`` (not a 2-D (H, W) array; a colour PNG) and ``non-finite`` (NaN or inf
values). A missing or unusable map is an error naming the image, the file and the value, with
the counts by reason; with ``skip_bad_maps`` (``--skip-bad-maps``) those images count for
nothing but are excluded from every map metric as ``undefined`` and counted in the manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from aubench.bench.crops import describe_faces, faces_for
from aubench.bench.evaluate import (
    NO_PREDICTION,
    ScoreStore,
    _SampleKeeper,
    add_protocol_heatmaps,
    heatmap_regions,
)
from aubench.bench.external import entry_card
from aubench.bench.suite import ExternalModel
from aubench.data.transforms import EvalTransform, TransformedDataset
from aubench.explain import INPUT
from aubench.explain.postprocess import Postprocess, protocol_postprocess
from aubench.faces.codebook import EXPRESSIONS
from aubench.faces.heatmaps import per_au_heatmaps
from aubench.metrics import BatchContext, LayerMaps, get_metric, scorers
from aubench.train.config import TrainConfig
from aubench.train.data import open_split

#: The method and layer precomputed maps are filed under in results.
METHOD = "maps"
#: Metric kinds scored from maps alone; the others need the model.
MAP_KINDS = ("map", "per_au", "dataset")
#: Map file suffixes in a maps folder.
FILE_SUFFIXES = (".npy", ".png")
#: Problems a map can have, by code (0: none) and name.
PROBLEMS = ("ok", "missing", "wrong-rank", "non-finite")
OK, MISSING, WRONG_RANK, NON_FINITE = range(len(PROBLEMS))
_EXAMPLES = 3  # examples named per problem


class MapsError(ValueError):
    """Maps that cannot be used: unreadable, of an unknown format, missing for some images."""


class MapSource:
    """The maps at ``path`` (module doc): ``keys`` and ``read(key)`` → the raw array."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"maps {self.path} do not exist")
        self._loaded: Mapping[str, Any] | None = None
        if self.path.is_dir():
            self.format = "folder"
            files = [p for p in self.path.rglob("*") if p.suffix.lower() in FILE_SUFFIXES]
            self._files: dict[str, Path] = {}
            for file in sorted(files):
                key = PurePosixPath(file.relative_to(self.path).as_posix()).with_suffix("")
                if key.as_posix() in self._files:
                    raise MapsError(
                        f"maps {self.path}: two maps for {key.as_posix()!r}: "
                        f"{self._files[key.as_posix()]} and {file}; keep one"
                    )
                self._files[key.as_posix()] = file
            self.keys = list(self._files)
        else:
            self.format = self.path.suffix.lower().lstrip(".")
            try:
                self._loaded = _read_container(self.path)
            except MapsError:
                raise
            except Exception as err:  # a corrupt or foreign file: zip, pickle, Arrow errors
                raise MapsError(
                    f"maps {self.path}: cannot read it ({type(err).__name__}: {err})"
                ) from None
            self.keys = [str(key) for key in self._loaded]
        if not self.keys:
            raise MapsError(
                f"maps {self.path} hold no map: expected .npy or .png files named after the "
                "image ids (DIR/<id without extension>.npy), or one .npz, .pt or .parquet file"
            )

    def where(self, key: str) -> str:
        """Where map ``key`` is, for messages."""
        return str(self._files[key]) if self._loaded is None else f"{self.path}[{key!r}]"

    def read(self, key: str) -> np.ndarray:
        """Map ``key`` as a float64 array of whatever shape it has."""
        if self._loaded is not None:
            value = self._loaded[key]
            return np.asarray(value.numpy() if torch.is_tensor(value) else value, dtype=np.float64)
        path = self._files[key]
        try:
            if path.suffix.lower() == ".npy":
                return np.load(path, allow_pickle=False).astype(np.float64)
            import PIL.Image

            with PIL.Image.open(path) as image:
                return np.asarray(image, dtype=np.float64)
        except (OSError, ValueError, TypeError) as err:
            raise MapsError(f"cannot read map {path} ({type(err).__name__}: {err})") from None

    def match(self, ids: Sequence[str]) -> tuple[list[str | None], dict[str, int], list[str]]:
        """For each image id its key (None: missing), how many matched each way, and the keys
        matching no id (extra)."""
        keys = set(self.keys)
        key_stems = _unique_stems(self.keys)
        id_stems = _unique_stems(ids)
        found: list[str | None] = []
        ways: Counter[str] = Counter()
        for image_id in ids:
            bare = PurePosixPath(image_id).with_suffix("").as_posix()
            stem = PurePosixPath(image_id).stem
            if image_id in keys:
                found.append(image_id)
                ways["id"] += 1
            elif bare in keys:
                found.append(bare)
                ways["id without extension"] += 1
            elif stem in key_stems and stem in id_stems:
                found.append(key_stems[stem])
                ways["file stem"] += 1
            else:
                found.append(None)
        used = set(found)
        return found, dict(ways), [key for key in self.keys if key not in used]


def _unique_stems(names: Sequence[str]) -> dict[str, str]:
    """Stem → name for the stems that only one of ``names`` has."""
    stems = Counter(PurePosixPath(name).stem for name in names)
    return {PurePosixPath(n).stem: n for n in names if stems[PurePosixPath(n).stem] == 1}


def _read_container(path: Path) -> Mapping[str, Any]:
    """ids → maps of one ``.npz``, ``.pt``/``.pth`` or ``.parquet`` file."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return np.load(path, allow_pickle=False)
    if suffix in (".pt", ".pth"):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(loaded, Mapping):
            raise MapsError(f"maps {path}: expected a dict of image id → map, got {type(loaded)}")
        return loaded
    if suffix == ".parquet":
        table = pq.read_table(path)
        if not {"id", "map"} <= set(table.column_names):
            raise MapsError(
                f"maps {path}: expected columns id and map (a list of rows per map), got "
                f"{table.column_names}"
            )
        ids = table.column("id").to_pylist()
        maps = table.column("map").to_pylist()
        return {str(i): np.array(m, dtype=np.float64) for i, m in zip(ids, maps, strict=True)}
    raise MapsError(
        f"maps {path}: unknown format {suffix or '(no suffix)'}; expected a folder of .npy/.png "
        "files, or one .npz, .pt or .parquet file"
    )


def problem_of(array: np.ndarray) -> tuple[int, str]:
    """``(code, detail)`` of what is wrong with a raw map (:data:`PROBLEMS`; ``(OK, "")``)."""
    if array.ndim != 2 or 0 in array.shape:
        colour = " (a colour image: save maps as grey)" if array.ndim == 3 else ""
        return WRONG_RANK, f"shape {tuple(array.shape)}, expected (H, W){colour}"
    finite = np.isfinite(array)
    if not finite.all():
        nan = int(np.isnan(array).sum())
        return NON_FINITE, f"{nan} NaN and {int((~finite).sum()) - nan} infinite values"
    return OK, ""


class MapFaces(Dataset):
    """``faces`` (eval-transformed Samples) with each image's map added: ``map`` (size, size)
    post-processed by ``steps`` (NaN where the map is missing or unusable) and ``map_problem``
    (a :data:`PROBLEMS` code); ``problems`` counts them and keeps a few examples."""

    def __init__(
        self, faces: Dataset, keys: Sequence[str | None], source: MapSource, steps: Postprocess
    ) -> None:
        self.faces = faces
        self.keys = keys
        self.source = source
        self.steps = steps
        self.problems: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.faces[index]
        size = tuple(sample["image"].shape[-2:])
        key = self.keys[index]
        raw = None if key is None else self.source.read(key)
        code, detail = (MISSING, "no map") if raw is None else problem_of(raw)
        if code == OK:
            maps = self.steps(torch.from_numpy(raw).float()[None])[0]
        else:
            where = sample["id"] if key is None else self.source.where(key)
            self.problems[PROBLEMS[code]] += 1
            self.examples.setdefault(PROBLEMS[code], [])
            if len(self.examples[PROBLEMS[code]]) < _EXAMPLES:
                self.examples[PROBLEMS[code]].append(f"{where}: {detail}")
            maps = torch.full(size, float("nan"))
        return {**sample, "map": maps, "map_problem": code}


def split_ids(split: Dataset) -> list[str]:
    """Every image id of an opened split, without reading an image."""
    ids = getattr(split, "ids", None)
    if ids is not None:
        return [str(i) for i in ids.to_pylist()]
    return [split.sample_id(i) for i in range(len(split))]


def map_metrics(metrics: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The metrics scored from maps alone, and the others with why they are skipped."""
    scored, skipped = [], {}
    for name in metrics:
        metric = get_metric(name)
        if metric.kind in MAP_KINDS:
            scored.append(name)
        else:
            why = "perturbs the model's input" if metric.kind == "model" else "re-runs the model"
            skipped[name] = f"needs the model ({metric.kind} metric: {why}); maps have none"
    return scored, skipped


def match_maps(
    entry: ExternalModel, config: TrainConfig, settings: Mapping[str, Any]
) -> tuple[Dataset, MapSource, list[str | None], dict[str, int], list[str]]:
    """Open the split and the maps and match them (:meth:`MapSource.match`): ``(split, source,
    key of each scored image, matches by kind, extra keys)``. Raises :class:`MapsError` when no
    metric of ``settings`` can be scored from maps, and (unless ``entry.skip_bad_maps``) when
    images have no map; run before anything is scored (:func:`aubench.bench.runner.check_suite`)
    and again when scoring."""
    assert entry.maps is not None
    metrics, skipped = map_metrics(settings["metrics"])
    if not metrics:
        raise MapsError(
            f"maps {entry.maps}: none of the metrics {', '.join(settings['metrics'])} can be "
            f"scored from maps ({'; '.join(f'{m}: {why}' for m, why in skipped.items())})"
        )
    split = open_split(config, settings["split"])
    limit = settings["max_images"]
    count = len(split) if limit is None else min(limit, len(split))
    source = MapSource(entry.maps)
    ids = split_ids(split)[:count]
    keys, ways, extra = source.match(ids)
    missing = [image_id for image_id, key in zip(ids, keys, strict=True) if key is None]
    if missing and not entry.skip_bad_maps:
        raise MapsError(
            f"maps {entry.maps}: no map for {len(missing)} of the {count} {settings['split']} "
            f"images, e.g. {', '.join(repr(i) for i in missing[:_EXAMPLES])} (looked for "
            f"<id>, <id without extension> and unique file stems among {len(source.keys)} "
            f"maps such as {', '.join(repr(k) for k in source.keys[:_EXAMPLES])}); add them, "
            "or pass --skip-bad-maps to score the rest (counted)"
        )
    return split, source, keys, ways, extra


def score_given_maps(
    entry: ExternalModel,
    config: TrainConfig,
    *,
    settings: Mapping[str, Any],
    device: Any,
    store: ScoreStore,
    shard: tuple[int, int],
    progress: bool,
) -> tuple[dict, dict, dict[str, Any]]:
    """Score ``entry.maps`` on the suite's split into ``store`` (``settings``: the suite-level
    evaluation settings: ``split``, ``metrics``, ``batch_size``, ``max_images``,
    ``samples_per_class``, ``protocol``). Returns the sample arrays, the dataset-level metrics and
    what the manifest records of the cell. Raises :class:`MapsError` naming the problems (module
    doc) unless ``entry.skip_bad_maps``, and when no metric can be scored without a model."""
    split, source, keys, ways, extra = match_maps(entry, config, settings)
    count = len(keys)
    metrics, skipped = map_metrics(settings["metrics"])
    card = entry_card(entry)
    faces = faces_for(split, card.crop, config.size)
    steps = protocol_postprocess(None, config.size, settings["protocol"])
    eval_faces = TransformedDataset(faces, EvalTransform(config.size), config.seed)
    with_maps = MapFaces(eval_faces, keys, source, steps)
    samples, dataset = _score(with_maps, config, metrics, settings, device, store, shard, progress)
    problems = {name: n for name, n in with_maps.problems.items() if n}
    if problems and not entry.skip_bad_maps:
        store.path.unlink(missing_ok=True)
        raise MapsError(
            f"maps {entry.maps}: {sum(problems.values())} of the {count} maps cannot be scored: "
            + "; ".join(
                f"{name} {n} (e.g. {'; '.join(with_maps.examples[name])})"
                for name, n in problems.items()
            )
            + "; fix them, or pass --skip-bad-maps to score the rest (counted)"
        )
    details = {
        "kind": "maps",
        "maps": entry.maps,
        "format": source.format,
        "card": card.model_dump(mode="json"),
        "postprocess": steps.describe(),
        "postprocess_steps": steps.to_dict(),
        "matched": ways,
        "extra": len(extra),
        "extra_examples": extra[:_EXAMPLES],
        "problems": problems,
        "problem_examples": {name: with_maps.examples[name] for name in problems},
        "skipped_metrics": skipped,
        "layers": [INPUT],
        "faces": describe_faces(faces, card.crop, config.size),
    }
    return samples, dataset, details


def _score(
    data: MapFaces,
    config: TrainConfig,
    metrics: Sequence[str],
    settings: Mapping[str, Any],
    device: Any,
    store: ScoreStore,
    shard: tuple[int, int],
    progress: bool,
) -> tuple[dict, dict]:
    """The scoring pass over ``data``, as :func:`~aubench.bench.evaluate.evaluate_model`'s but
    with the given maps in place of a model's (no prediction, no accuracy)."""
    device = torch.device(device)
    rank, world = shard
    batch_size = settings["batch_size"]
    positions = range(rank, len(data.keys), world)
    loader = DataLoader(Subset(data, positions), batch_size=batch_size, shuffle=False)
    per_map = scorers(metrics, "map", device)
    protocol = settings["protocol"]
    regions = heatmap_regions(config, protocol)
    samples = _SampleKeeper(settings["samples_per_class"], len(EXPRESSIONS))
    bar = tqdm(loader, desc=f"score maps {settings['split']}", unit="batch", disable=not progress)
    for number, batch in enumerate(bar):
        moved = {key: batch[key].to(device) for key in ("image", "label", "landmarks", "map")}
        batch = add_protocol_heatmaps({**batch, **moved}, config, protocol)
        images, labels, landmarks, maps = (batch[k] for k in ("image", "label", "landmarks", "map"))
        index = positions[number * batch_size : number * batch_size + len(labels)]
        none = torch.full_like(labels, NO_PREDICTION)
        reasons, vanished = batch["invalid_reason"], batch.get("vanished")
        store.begin(index, batch["id"], labels, reasons, none, vanished)
        kept = samples.select(labels)
        if kept.numel():
            samples.add_faces(images[kept], batch["heatmap"][kept], labels[kept], batch["id"], kept)
            samples.add_map(METHOD, INPUT, maps[kept].nan_to_num(0.0))
        per_au = partial(
            per_au_heatmaps, landmarks, labels, codebook=config.codebook, regions=regions
        )
        valid = batch["valid"] & (batch["map_problem"].to(device) == OK)
        context = BatchContext(None, images, labels, batch["heatmap"], valid, per_au)
        produced = LayerMaps(maps, _no_model)
        for scorer in per_map:
            for column, values in scorer.update(context, produced).items():
                store.add((METHOD, INPUT, column), values)
        store.flush()
    store.close()
    dataset = {
        (METHOD, INPUT, column): value
        for scorer in per_map
        for column, value in scorer.compute().items()
    }
    return samples.arrays(), dataset


def _no_model(*_: Any) -> torch.Tensor:
    """The recompute function of given maps: there is no model to recompute them with."""
    raise ValueError("precomputed maps have no model to recompute them with")
