"""``aubench run``: plan a suite, train what is missing, evaluate every cell, write the results.

A *training run* is one (model, variant, seed): its :class:`~aubench.train.config.TrainConfig`
hash names its folder ``<runs_root>/models/<model>-<baseline|guided>-<hash>``, so a model
trained once is reused by every suite that asks for the same config. An *evaluation cell* is one
training run scored on the suite's split; its aggregated rows (``cells/<cell>.parquet``), its
per-image scores (``per_image/<cell>.parquet``) and its sample faces are written atomically when
it finishes, so an interrupted run, restarted, skips finished cells and loses nothing.
``--shard i/n`` evaluates only cells ``i, i + n, …`` (all shards share the run folder); the
results table is assembled once every cell is present. Under ``torchrun`` the processes share
each cell instead: rank r scores images r, r + world, …, and rank 0 merges the per-image scores
before aggregating, so the table equals a single process's.

Models a suite evaluates as they are (:class:`~aubench.bench.suite.ExternalModel`: a model SPEC
with its checkpoints and card, or precomputed maps) are cells too, one per checkpoint, at the
suite's first seed, never trained: scored by the same loop (:mod:`aubench.bench.external`) or the
maps scorer (:mod:`aubench.bench.precomputed`), and written the same way. What each such cell
was scored with (the model's form and load report, the card, the crop and where the landmarks
came from, the maps' matching, post-processing and problems) is kept beside it
(``cells/<cell>.info.json``) and goes into the manifest's ``models``; the files it depends on
are fingerprinted (``cells/<cell>.source``), so a changed checkpoint is never reported under
old results.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from aubench.bench.evaluate import (
    ScoreStore,
    aggregate_cell,
    count_valid,
    dataset_rows,
    evaluate_model,
    load_trained,
    merge_stores,
    write_long_per_image,
)
from aubench.bench.external import (
    adapted,
    check_producers,
    entry_card,
    eval_config,
    evaluate_external,
    source_fingerprint,
)
from aubench.bench.precomputed import match_maps, score_given_maps
from aubench.bench.results import (
    RESULT_COLUMNS,
    per_image_file,
    sample_file,
    write_manifest,
    write_results,
    write_samples,
)
from aubench.bench.suite import ExternalModel, Suite, SuiteError
from aubench.explain import explain
from aubench.faces.landmarks import MEAN_FACE
from aubench.io import FolderLock, is_empty_folder, write_atomic
from aubench.metrics import describe_column
from aubench.models import resolve_layers
from aubench.train import distributed
from aubench.train.config import TrainConfig
from aubench.train.data import open_split, training_data_fingerprint
from aubench.train.loop import fit
from aubench.train.model import build_model


@dataclass(frozen=True)
class Cell:
    """One (model, variant, seed) trained by ``config`` and evaluated on ``split``; for a model
    evaluated as it is, ``entry`` with ``checkpoint``, and ``config`` its evaluation config."""

    model: str
    variant: str
    seed: int
    split: str
    config: TrainConfig
    entry: ExternalModel | None = None
    checkpoint: str | None = None

    @property
    def given(self) -> str:
        """What a cell given as it is scores: its maps, or its SPEC and checkpoint."""
        if self.entry is None:
            return ""
        return self.entry.maps or " ".join(filter(None, [self.entry.model, self.checkpoint]))

    @property
    def key(self) -> str:
        return f"{self.model}__{self.variant}__{self.seed}__{self.split}"

    def as_dict(self, suite: str) -> dict:
        return {
            "suite": suite,
            "model": self.model,
            "variant": self.variant,
            "seed": self.seed,
            "split": self.split,
        }


def plan(suite: Suite) -> list[Cell]:
    """Every evaluation cell of ``suite``, in a fixed order: trained models × variants × seeds,
    then each model evaluated as it is × its checkpoints (at the first seed)."""
    split, seed = suite.eval.split, suite.seeds[0]
    trained = [
        Cell(model, variant.name, seed, split, suite.train_config(model, variant, seed))
        for model in suite.trained_models
        for variant in suite.variants
        for seed in suite.seeds
    ]
    given = [
        Cell(entry.name, variant, seed, split, eval_config(suite, entry, seed), entry, checkpoint)
        for entry in suite.external_models
        for variant, checkpoint in entry.variants()
    ]
    return trained + given


def check_suite(suite: Suite) -> None:
    """Fail fast, before anything is trained, when a suite asks for what its models cannot do.

    Each trained model is built untrained on the CPU; every guided variant's aligned layers are
    resolved, and every explainer and control is run at its layers (:meth:`Suite.layers_of`) on
    one random image of the training size. Each model evaluated as it is is loaded with each of
    its checkpoints, its card applied, and run the same way at the card's size and layers; maps
    are matched to the split's images and checked to have a metric they can be scored with.
    Raises :class:`SuiteError` naming the model, the explainer and its layers, e.g. CAM asked
    for a layer that does not feed the global average pool.
    """
    for model_name in suite.trained_models:
        configs = [suite.train_config(model_name, v, suite.seeds[0]) for v in suite.variants]
        config = configs[0]
        model = build_model(config.replace(pretrained=None), 7).eval()
        for variant, guided in zip(suite.variants, configs, strict=True):
            if variant.guided:
                try:
                    resolve_layers(model, list(guided.layers))
                except (ValueError, KeyError) as err:
                    raise SuiteError(f"{model_name}, variant {variant.name!r}: {err}") from None
        _check_producers(suite, model_name, model, config.size, suite.layers)
    for entry in suite.external_models:
        card = entry_card(entry)
        if entry.maps is not None:
            config = eval_config(suite, entry, suite.seeds[0])
            match_maps(entry, config, _eval_settings(suite, suite.eval.split))
            continue
        classes = suite.train.get("num_classes") or 7
        for _, checkpoint in entry.variants():
            with adapted(entry, checkpoint, card, classes) as (model, net):
                check_producers(entry, model, [*suite.explainers, *suite.controls])
                layers = card.layers or suite.layers
                _check_producers(suite, entry.name, net.eval(), card.input_size[0], layers)


def _check_producers(
    suite: Suite, model_name: str, model: torch.nn.Module, size: int, layers: tuple[str, ...]
) -> None:
    """Run every explainer and control of ``suite`` at its layers (``explainer_layers``, else
    ``layers``) on one random image of side ``size``; :class:`SuiteError` names the failure."""
    image = torch.randn(1, 3, size, size)
    face = torch.as_tensor(MEAN_FACE, dtype=torch.float32)[None] * size
    for name in (*suite.explainers, *suite.controls):
        specs = list(suite.explainer_layers.get(name, layers))
        try:
            explain(model, image, [0], specs, [name], landmarks=face)
        except (ValueError, KeyError, RuntimeError) as err:
            hint = ""
            if name not in suite.explainer_layers and len(layers) > 1:
                hint = f" (give it its own layers: explainer_layers: {{{name}: [...]}})"
            raise SuiteError(f"{model_name}: {name} at {specs}: {err}{hint}") from None


def suite_hash(suite: Suite) -> str:
    """12 hex digits identifying the resolved suite (the default run folder's suffix)."""
    text = json.dumps(suite.dump(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe_plan(suite: Suite, runs_root: Path) -> str:
    """The dry-run text: models to train (cached or not), cells to evaluate, estimated work."""
    cells = plan(suite)
    lines = [f"suite {suite.name} ({suite_hash(suite)}): {len(cells)} cells"]
    to_train = 0
    for cell in cells:
        if cell.entry is not None:
            lines.append(f"  {cell.key:<48} {'evaluate as given':<18} {cell.given}")
            continue
        folder = model_dir(runs_root, cell.config)
        cached = (folder / "best.pt").is_file()
        to_train += not cached
        state = "cached" if cached else f"train {cell.config.epochs} epochs"
        lines.append(f"  {cell.key:<48} {state:<18} {folder}")
    producers = (*suite.explainers, *suite.controls)
    maps = sum(len(suite.layers_of(name)) for name in producers)
    images = suite.eval.max_images or "all"
    lines.append(
        f"work: {to_train} model(s) to train; per cell {len(producers)} map producers at "
        f"{maps} (producer, layer) pairs × {len(suite.metrics)} metric(s) = "
        f"{maps * len(suite.metrics)} scores per image on {images} {suite.eval.split} images"
    )
    return "\n".join(lines)


def run_folder(suite: Suite, out: str | Path | None, runs_root: str | Path) -> Path:
    """``out``, or the default run folder ``<runs_root>/<suite>-<suite hash>``."""
    return Path(out) if out is not None else Path(runs_root) / f"{suite.name}-{suite_hash(suite)}"


def cell_file(run: Path, cell: Cell) -> Path:
    """The aggregated rows of a finished cell; its presence marks the cell finished."""
    return run / "cells" / f"{cell.key}.parquet"


def is_trained(folder: Path) -> bool:
    """Whether the training run in ``folder`` finished (best checkpoint and summary written)."""
    return (folder / "best.pt").is_file() and (folder / "summary.json").is_file()


def model_dir(runs_root: Path, config: TrainConfig) -> Path:
    """The cached training run of ``config`` on its data as it is now:
    ``<model>-<variant>-<config hash>-d<data>``, ``<data>`` the splits' content fingerprint
    (:func:`~aubench.train.data.training_data_fingerprint`). Editing the data in place
    (relabelling, adding or replacing images) gives another folder, so the model is retrained on
    the new data and the old one is kept."""
    data = training_data_fingerprint(config)
    return Path(runs_root) / "models" / f"{config.run_name()}-d{data}"


def run_suite(
    suite: Suite,
    *,
    out: str | Path | None = None,
    runs_root: str | Path = "runs",
    device: str | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> Path:
    """Run ``suite`` (see the module doc) and return the run folder.

    Under ``torchrun`` every process trains the missing models together (DDP) and scores its
    share of each cell's images; rank 0 merges the per-image scores, aggregates and writes.
    """
    runs_root = Path(runs_root)
    run = run_folder(suite, out, runs_root)
    check_suite(suite)
    joined = distributed.active()
    name = device or suite.device
    info, target = distributed.setup(None if name == "auto" else name)
    # one lock a shard: separate shards of a run may run at once, the same one twice may not
    lock_name = FolderLock.NAME if shard == (0, 1) else f".aubench-shard-{shard[0]}-{shard[1]}.lock"
    lock = FolderLock(run, "run folder", lock_name) if info.main else nullcontext()
    try:
        with lock:
            _run_cells(suite, run, runs_root, target, info, shard, progress)
    finally:
        if not joined:
            distributed.teardown()
    return run


def _run_cells(
    suite: Suite,
    run: Path,
    runs_root: Path,
    target: torch.device,
    info: distributed.DistInfo,
    shard: tuple[int, int],
    progress: bool,
) -> None:
    """Evaluate this shard's unfinished cells of ``suite`` into ``run`` (its lock held by rank 0);
    rank 0 assembles the results once every cell is done."""
    if info.main:
        prepare_run_folder(run, suite)
    distributed.barrier()
    cells = plan(suite)
    check_cells_data(run, cells)
    check_cells_sources(run, cells)
    started = time.perf_counter()
    index, count = shard
    for cell in cells[index::count]:
        if cell_file(run, cell).is_file():
            continue
        t0 = time.perf_counter()
        _evaluate_cell(suite, cell, run, runs_root, target, info, progress)
        if info.main:  # beside the cell, so a resumed or sharded run still reports it
            seconds = round(time.perf_counter() - t0, 2)
            write_atomic(cell_file(run, cell).with_suffix(".json"), json.dumps(seconds).encode())
    finished = [c for c in cells if cell_file(run, c).is_file()]
    if info.main and len(finished) == len(cells):
        table = pd.concat(
            [pd.read_parquet(cell_file(run, c)) for c in cells],
            ignore_index=True,
        )[RESULT_COLUMNS]
        write_results(run, table)
        manifest = _manifest(suite, cells, run, runs_root, started, table.metric.unique())
        write_manifest(run, manifest)
    distributed.barrier()


def _evaluate_cell(
    suite: Suite,
    cell: Cell,
    run: Path,
    runs_root: Path,
    device: torch.device,
    info: distributed.DistInfo,
    progress: bool,
) -> None:
    """Train the cell's model if missing (or load the model or maps given as they are), score this
    process's share of its images, and (rank 0) merge, aggregate and write the cell's files;
    ``cells/<key>.parquet`` is written last."""
    meta = cell.as_dict(suite.name)
    part = ScoreStore(run / "cells" / f".{cell.key}.scores.rank{info.rank}.parquet")
    settings = _eval_settings(suite, cell.split)
    shown = progress and info.main
    common = {"device": device, "store": part, "shard": (info.rank, info.world), "progress": shown}
    details = None
    if cell.entry is None:
        folder = model_dir(runs_root, cell.config)
        if not is_trained(folder):
            fit(cell.config, out=folder, device=str(device), progress=shown)
        model, config, _ = load_trained(folder, device)
        samples, dataset = evaluate_model(model, config, **settings, **common)
    elif cell.entry.maps is not None:
        samples, dataset, details = score_given_maps(
            cell.entry, cell.config, settings=settings, **common
        )
    else:
        samples, dataset, details = evaluate_external(
            cell.entry, cell.checkpoint, cell.config, settings=settings, **common
        )
    distributed.barrier()
    if info.main:
        parts = [
            part.path.with_name(f".{cell.key}.scores.rank{r}.parquet") for r in range(info.world)
        ]
        wide = merge_stores(parts, run / "cells" / f".{cell.key}.scores.parquet")
        write_long_per_image(
            wide, meta, per_image_file(run, cell.model, cell.variant, cell.seed, cell.split)
        )
        if samples:
            write_samples(sample_file(run, cell.model, cell.variant, cell.seed), samples)
        rows = aggregate_cell(
            wide, meta, suite.aggregation.bootstrap, suite.aggregation.fill_undefined
        )
        rows = pd.concat([rows, dataset_rows(dataset, meta, count_valid(wide))], ignore_index=True)
        write_atomic(cell_data_file(run, cell), _eval_fingerprint(cell).encode())
        if cell.entry is not None:
            fingerprint = source_fingerprint(cell.entry, cell.checkpoint)
            write_atomic(cell_source_file(run, cell), fingerprint.encode())
            write_atomic(cell_info_file(run, cell), json.dumps(details, default=str).encode())
        _write_parquet(cell_file(run, cell), rows)  # last: marks it finished
        for path in [*parts, wide]:
            path.unlink()
    distributed.barrier()


def _eval_settings(suite: Suite, split: str) -> dict[str, Any]:
    """The suite's evaluation settings, as :func:`~aubench.bench.evaluate.evaluate_model`'s
    keyword arguments (every kind of cell is scored with them)."""
    return {
        "split": split,
        "explainers": suite.explainers,
        "controls": suite.controls,
        "layers": suite.layers,
        "metrics": suite.metrics,
        "explainer_layers": suite.explainer_layers,
        "batch_size": suite.eval.batch_size,
        "target": suite.eval.target,
        "max_images": suite.eval.max_images,
        "samples_per_class": suite.eval.samples_per_class,
    }


def prepare_run_folder(run: Path, suite: Suite) -> None:
    """Write ``suite.yaml`` to a new run folder, or check an existing one holds this suite."""
    import yaml

    stored = run / "suite.json"
    text = json.dumps(suite.dump(), sort_keys=True, indent=2)
    if stored.is_file():
        if stored.read_text() != text:
            raise FileExistsError(
                f"{run} holds a run of another suite (see {stored}); choose another --out"
            )
        return
    if run.is_dir() and not is_empty_folder(run):
        raise FileExistsError(f"{run} is not empty and holds no aubench suite run")
    write_atomic(stored, text.encode())
    write_atomic(run / "suite.yaml", yaml.safe_dump(suite.dump()).encode())


def _write_parquet(path: Path, table: pd.DataFrame) -> None:
    import io

    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    write_atomic(path, buffer.getvalue())


def _metric_metadata(names) -> dict:
    """Direction, range and category of accuracy and every metric in the table (per-AU and
    per-depth columns included, :func:`aubench.metrics.describe_column`), for reports and
    checks."""
    shown = dict.fromkeys(["accuracy", *(name for name in names if name != "pred")])
    return {name: describe_column(name).metadata() for name in shown}


def _manifest(
    suite: Suite, cells: list[Cell], run: Path, runs_root: Path, started: float, metric_names
) -> dict:
    timings = {
        c.key: json.loads(cell_file(run, c).with_suffix(".json").read_text())
        for c in cells
        if cell_file(run, c).with_suffix(".json").is_file()
    }
    packages = {}
    for name in (
        "aubench",
        "torch",
        "torchvision",
        "timm",
        "grad-cam",
        "captum",
        "numpy",
        "pandas",
    ):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    details = {c.key: _cell_details(run, c) for c in cells if c.entry is not None}
    given = [name for info in details.values() for name in info.get("layers", ())]
    return {
        "suite": suite.dump(),
        "suite_hash": suite_hash(suite),
        "seeds": list(suite.seeds),
        "layers": list(dict.fromkeys([*_resolved_layers(suite), *given])),
        "variants": _variants(suite),
        "models": {
            c.key: details[c.key] if c.entry is not None else str(model_dir(runs_root, c.config))
            for c in cells
        },
        "metrics": _metric_metadata(metric_names),
        "versions": packages | {"python": platform.python_version()},
        "git_commit": _git_commit(),
        "data": {"spec": suite.data, "fingerprint": _eval_fingerprint(cells[0])},
        "timings_s": timings | {"this_invocation": round(time.perf_counter() - started, 2)},
    }


def _variants(suite: Suite) -> dict[str, dict[str, Any]]:
    """The manifest's variants: the trained ones (when the suite trains a model), then each
    checkpoint of the models evaluated as they are. A model's first checkpoint is its reference
    (``guided`` false, so the report tests the others against it, like guided variants against
    the baseline); the others are ``guided`` true and name it as ``compared_to``."""
    variants = {}
    if suite.trained_models:
        for v in suite.variants:
            config = suite.train_config(suite.trained_models[0], v, 0)
            variants[v.name] = {
                "guided": v.guided,
                "lam": v.lam if v.guided else 0.0,
                "layers": list(v.layers or config.layers),
                "loss": v.loss,
            }
    for entry in suite.external_models:
        names = [name for name, _ in entry.variants()]
        for k, name in enumerate(names):
            variants.setdefault(
                name,
                {
                    "guided": k > 0,
                    "lam": 0.0,
                    "layers": [],
                    "loss": "",
                    "evaluated_as_given": True,
                    "compared_to": names[0] if k else None,
                },
            )
    return variants


def _cell_details(run: Path, cell: Cell) -> dict[str, Any]:
    """What a cell of a model evaluated as it is was scored with (``cells/<cell>.info.json``)."""
    path = cell_info_file(run, cell)
    return json.loads(path.read_text()) if path.is_file() else {}


def _resolved_layers(suite: Suite) -> list[str]:
    """The module names the suite's layer specs denote (its ``layers``, then any explainer's
    own), over every trained model, in suite order."""
    specs = dict.fromkeys([*suite.layers, *(s for v in suite.explainer_layers.values() for s in v)])
    names: dict[str, None] = {}
    for cell in plan(suite):
        if cell.entry is not None:
            continue
        model = build_model(cell.config.replace(pretrained=None), 7)
        names.update(dict.fromkeys(resolve_layers(model, list(specs))))
    return list(names)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _eval_fingerprint(cell: Cell) -> str:
    """The content fingerprint of the cell's evaluated split (see ``content_fingerprint``)."""
    return open_split(cell.config, cell.split).content_fingerprint


def cell_data_file(run: Path, cell: Cell) -> Path:
    """The content fingerprint of the data a finished cell was evaluated on."""
    return run / "cells" / f"{cell.key}.data"


def cell_source_file(run: Path, cell: Cell) -> Path:
    """The fingerprint of the files a finished cell of a model given as it is depended on."""
    return run / "cells" / f"{cell.key}.source"


def cell_info_file(run: Path, cell: Cell) -> Path:
    """What a finished cell of a model given as it is was scored with (JSON)."""
    return run / "cells" / f"{cell.key}.info.json"


def check_cells_sources(run: Path, cells: list[Cell]) -> None:
    """Refuse a run folder whose finished cells of models given as they are were scored with
    files (model file, checkpoint, card, maps) that have changed since."""
    for cell in cells:
        stored = cell_source_file(run, cell)
        if cell.entry is None or not stored.is_file():
            continue
        now = source_fingerprint(cell.entry, cell.checkpoint)
        if stored.read_text() != now:
            raise FileExistsError(
                f"{run} holds results of other files: cell {cell.key} was scored with {cell.given} "
                f"(and its card) of fingerprint {stored.read_text()}, which is now {now} (a file "
                "was replaced or edited); choose another --out"
            )


def check_cells_data(run: Path, cells: list[Cell]) -> None:
    """Refuse a run folder whose finished cells were evaluated on data that has changed since:
    keeping them would report old results under the new data's fingerprint, and adding new
    cells would mix two datasets in one table. (Cells of run folders written before aubench
    recorded this have no ``.data`` file and are not checked.)"""
    current = {}
    for cell in cells:
        stored = cell_data_file(run, cell)
        if not stored.is_file():
            continue
        if cell.split not in current:
            current[cell.split] = _eval_fingerprint(cell)
        if stored.read_text() != current[cell.split]:
            raise FileExistsError(
                f"{run} holds results on other data: cell {cell.key} was evaluated on "
                f"{cell.split} data of fingerprint {stored.read_text()}, which is now "
                f"{current[cell.split]} (its labels, ids, landmarks or image files changed); "
                "choose another --out"
            )
