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

Every cell is scored under the suite's evaluation ``protocol`` (recorded in the manifest); under
``belharbi2024`` each cell also counts the faces aubench's validity fixes moved
(``cells/<cell>.fixes.json``, :func:`~aubench.bench.evaluate.fix_counts`), gathered in the
manifest's ``fixes``. With per-image AU ``evidence`` each cell also tells its evidence
(``cells/<cell>.evidence.json``, :func:`~aubench.bench.evaluate.evidence_summary`: what did not
match, AUs without a region, invalid evidence maps, and each class's agreement with its
prototype), its counts gathered in the manifest's ``evidence``.
"""

from __future__ import annotations

import functools
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

from aubench.bench.causal_scores import require_synthetic
from aubench.bench.evaluate import (
    EVIDENCE_REASON,
    EVIDENCE_SUFFIX,
    ScoreStore,
    aggregate_cell,
    count_valid,
    dataset_rows,
    evaluate_model,
    evidence_summary,
    fix_counts,
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
from aubench.bench.suite import ExternalModel, Suite, SuiteError, Training, Variant
from aubench.explain import explain, get_explainer
from aubench.faces.landmarks import MEAN_FACE
from aubench.io import FolderLock, is_empty_folder, write_atomic
from aubench.metrics import describe_column
from aubench.models import resolve_layers
from aubench.train import distributed
from aubench.train.config import TrainConfig
from aubench.train.data import open_split, training_data_fingerprint
from aubench.train.loop import fit
from aubench.train.model import build_model, get_method


@dataclass(frozen=True)
class Cell:
    """One (model, variant, seed) trained by ``config`` and evaluated on ``split``; for a model
    evaluated as it is, ``entry`` with ``checkpoint``, and ``config`` its evaluation config.
    ``data``: the data spec the cell is evaluated on when its model trained on other data (a
    variant's ``train: {data: …}``), else None (``config.data``)."""

    model: str
    variant: str
    seed: int
    split: str
    config: TrainConfig
    entry: ExternalModel | None = None
    checkpoint: str | None = None
    data: str | None = None

    @property
    def eval_config(self) -> TrainConfig:
        """``config`` on the data the cell is evaluated on (:attr:`data`, else its own)."""
        return self.config if self.data is None else self.config.replace(data=self.data)

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
    """Every evaluation cell of ``suite``, in a fixed order: trained models (each method on each
    of its models, :attr:`Suite.trainings`; a cell's ``model`` is the training's label, e.g.
    ``resnet10t-wildcat``) × variants × seeds, then each model evaluated as it is × its
    checkpoints (at the first seed)."""
    split, seed = suite.eval.split, suite.seeds[0]
    trained = [
        _trained_cell(suite, training, variant, seed)
        for training in suite.trainings
        for variant in suite.variants
        for seed in suite.seeds
    ]
    given = [
        Cell(entry.name, variant, seed, split, eval_config(suite, entry, seed), entry, checkpoint)
        for entry in suite.external_models
        for variant, checkpoint in entry.variants()
    ]
    return trained + given


def _trained_cell(suite: Suite, training: Training, variant: Variant, seed: int) -> Cell:
    """The cell of ``training`` as ``variant`` at ``seed``: evaluated on the suite's data, also
    when the variant trains on other data (its ``train: {data: …}``)."""
    config = suite.train_config(training.model, variant, seed, training.entry)
    shared = suite.train.get("data", suite.data)  # what the variants train on by default
    data = shared if variant.train.get("data", shared) != shared else None
    return Cell(training.label, variant.name, seed, suite.eval.split, config, data=data)


#: Metric kinds that only the synthetic faces can score: kind → (what they score, the data
#: option they need).
SYNTHETIC_KINDS: dict[str, tuple[str, str]] = {
    "cue": ("the shortcut cue's pixels", "shortcut="),
    "lateral": ("faces whose AUs lie on a known side", "one_sided=true"),
}


def check_suite(suite: Suite) -> None:
    """Fail fast, before anything is trained, when a suite asks for what its models cannot do.

    Each trained model is built on the CPU, untrained (with its weights when it is given any,
    so a missing or unfitting weights file fails here); every guided variant's aligned layers
    are resolved, and every producer it is scored with (:func:`producer_settings`: the suite's
    explainers for CAM models, a method's own map otherwise) and every control is run at its
    layers on one random image of the training size. Each model evaluated as it is is loaded
    with each of its checkpoints, its card applied, and run the same way at the card's size and
    layers; maps are matched to the split's images and checked to have a metric they can be
    scored with.
    Raises :class:`SuiteError` naming the model, the explainer and its layers, e.g. CAM asked
    for a layer that does not feed the global average pool, or the method entry of a method on
    a model it cannot use (``methods.6 (tscam on resnet10t): … needs a ViT/DeiT``). A metric
    of the shortcut cue (kind ``cue``) or of one-sided AUs (``lateral``) needs the synthetic faces
    with that option as the evaluated data (:data:`SYNTHETIC_KINDS`).
    """
    synthetic = suite.data.partition(":")[0].strip() == "synthetic"
    for kind, (what, spec) in SYNTHETIC_KINDS.items():
        asked = [name for name in suite.metrics if describe_column(name).kind == kind]
        if asked and not (synthetic and spec in suite.data.replace(" ", "")):
            raise SuiteError(
                f"metrics: {', '.join(asked)} scores {what}, which only the built-in synthetic "
                f"faces know; data is {suite.data!r} (use synthetic:…,{spec}…)"
            )
    try:  # AU counterfactuals (kinds causal, dose): the synthetic faces only
        require_synthetic(suite.metrics, suite.data)
    except ValueError as err:
        raise SuiteError(f"metrics: {err}") from None
    for training in suite.trainings:
        seed = suite.seeds[0]
        configs = [
            suite.train_config(training.model, v, seed, training.entry) for v in suite.variants
        ]
        config = configs[0]
        weighted = config.pretrained is not None or config.apvit_vit_pretrained is not None
        try:
            model = build_model(config, 7).eval() if weighted else _blank_model(config)
        except (ValueError, FileNotFoundError) as err:
            where = training.label if training.where == "train/variants" else training.where
            hint = ""
            if "cannot use model" in str(err) and training.entry.model is None:
                hint = f" (give the entry a model of its own: {{name: {config.method}, model: …}})"
            raise SuiteError(f"{where}: {err}{hint}") from None
        for variant, guided in zip(suite.variants, configs, strict=True):
            if variant.guided:
                try:
                    resolve_layers(model, list(guided.layers))
                except (ValueError, KeyError) as err:
                    raise SuiteError(f"{training.label}, variant {variant.name!r}: {err}") from None
        settings = producer_settings(suite, config, model)
        _check_producers(suite, training.label, model, config.size, settings)
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
                settings = {**_suite_producers(suite), "layers": layers}
                _check_producers(suite, entry.name, net.eval(), card.input_size[0], settings)


def _suite_producers(suite: Suite) -> dict[str, Any]:
    """The suite's own ``explainers``, ``layers`` and ``explainer_layers``."""
    return {
        "explainers": suite.explainers,
        "layers": suite.layers,
        "explainer_layers": suite.explainer_layers,
    }


def producer_settings(
    suite: Suite, config: TrainConfig, model: torch.nn.Module | None = None
) -> dict[str, Any]:
    """What a trained cell of ``config`` is scored with, as
    :func:`~aubench.bench.evaluate.evaluate_model`'s ``explainers``, ``layers`` and
    ``explainer_layers``: the suite's own for a ``cam`` model; for any other method, its own map
    (:func:`own_map`, read off ``model`` when given) at its layer, where the controls are scored
    too (a control map has that layer's grid)."""
    if config.method == "cam":
        return _suite_producers(suite)
    explainer, layer = own_map(config, model)
    return {"explainers": (explainer,), "layers": (layer,), "explainer_layers": {}}


def own_map(config: TrainConfig, model: torch.nn.Module | None = None) -> tuple[str, str]:
    """(explainer, layer spec) of the map ``config.method`` defines
    (:meth:`~aubench.train.model.Method.explained_by`), read off ``model``, else off an
    untrained build of ``config`` (the map's tap is the architecture's: one build serves the
    baseline and the guided model of every seed)."""
    if model is not None:
        return get_method(config).explained_by(model)
    return _own_map_of(config.replace(guided=False, seed=0))


@functools.lru_cache(maxsize=64)
def _own_map_of(config: TrainConfig) -> tuple[str, str]:
    return get_method(config).explained_by(_blank_model(config))


def _blank_model(config: TrainConfig) -> torch.nn.Module:
    """``config``'s model, untrained and without its weights files, in eval mode on the CPU."""
    return build_model(config.replace(pretrained=None, apvit_vit_pretrained=None), 7).eval()


def _check_producers(
    suite: Suite, model_name: str, model: torch.nn.Module, size: int, settings: dict[str, Any]
) -> None:
    """Run the explainers of ``settings`` (:func:`producer_settings`) and the suite's controls,
    each at its layers (``explainer_layers``, else ``layers``), on one random image of side
    ``size``; :class:`SuiteError` names the failure."""
    image = torch.randn(1, 3, size, size)
    face = torch.as_tensor(MEAN_FACE, dtype=torch.float32)[None] * size
    layers, own = settings["layers"], settings["explainer_layers"]
    for name in (*settings["explainers"], *suite.controls):
        specs = list(own.get(name, layers))
        try:
            explain(model, image, [0], specs, [name], landmarks=face)
        except (ValueError, KeyError, RuntimeError) as err:
            hint = ""
            if name not in own and len(layers) > 1:
                hint = f" (give it its own layers: explainer_layers: {{{name}: [...]}})"
            raise SuiteError(f"{model_name}: {name} at {specs}: {err}{hint}") from None


def suite_hash(suite: Suite) -> str:
    """12 hex digits identifying the resolved suite (the default run folder's suffix)."""
    text = json.dumps(suite.dump(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe_plan(suite: Suite, runs_root: Path) -> str:
    """The dry-run text: each cell with its model (cached, or trained for how many epochs), and
    under each trained one its method, backbone and weights and every map producer it is scored
    with at its layers; then the models to train and the work per cell."""
    cells = plan(suite)
    lines = [f"suite {suite.name} ({suite_hash(suite)}): {len(cells)} cells"]
    to_train, producers, pairs = 0, [], []
    for cell in cells:
        if cell.entry is not None:
            lines.append(f"  {cell.key:<48} {'evaluate as given':<18} {cell.given}")
            settings = _suite_producers(suite)
        else:
            folder = model_dir(runs_root, cell.config)
            cached = (folder / "best.pt").is_file()
            to_train += not cached
            state = "cached" if cached else f"train {cell.config.epochs} epochs"
            lines.append(f"  {cell.key:<48} {state:<18} {folder}")
            settings = producer_settings(suite, cell.config)
            lines.append(f"      {_method_text(cell.config)}; {_producers_text(suite, settings)}")
        names = (*settings["explainers"], *suite.controls)
        own = settings["explainer_layers"]
        producers.append(len(names))
        pairs.append(sum(len(own.get(name, settings["layers"])) for name in names))
    images = suite.eval.max_images or "all"
    metrics = len(suite.metrics)
    lines.append(
        f"work: {to_train} model(s) to train; per cell {_span(producers)} map producers at "
        f"{_span(pairs)} (producer, layer) pairs × {metrics} metric(s) = "
        f"{_span([n * metrics for n in pairs])} scores per image on {images} "
        f"{suite.eval.split} images"
    )
    return "\n".join(lines)


def _method_text(config: TrainConfig) -> str:
    """``method wildcat on resnet10t`` (with APViT's ViT and any weights) for the plan."""
    text = f"method {config.method} on {config.model}"
    if config.method == "apvit":
        text += f" + {config.apvit_depth} {config.apvit_vit} blocks"
    weights = [w for w in (config.pretrained, config.apvit_vit_pretrained) if w is not None]
    return text + (f", weights {' + '.join(weights)}" if weights else "")


def _producers_text(suite: Suite, settings: dict[str, Any]) -> str:
    """``maps cam, gradcam at stage:5; controls random, centre at stage:5``: the producers of
    ``settings`` (:func:`producer_settings`) and the controls, grouped by their layers."""
    parts = []
    for kind, names in (("maps", settings["explainers"]), ("controls", suite.controls)):
        groups: dict[tuple[str, ...], list[str]] = {}
        for name in names:
            layers = settings["explainer_layers"].get(name, settings["layers"])
            groups.setdefault(tuple(layers), []).append(name)
        shown = "; ".join(f"{', '.join(n)} at {', '.join(ls)}" for ls, n in groups.items())
        parts.append(f"{kind} {shown or 'none'}")
    return "; ".join(parts)


def _span(values: list[int]) -> str:
    """``8``, or ``4–13`` when the cells differ (``0`` without cells)."""
    low, high = min(values, default=0), max(values, default=0)
    return f"{low}" if low == high else f"{low}–{high}"


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
        settings |= producer_settings(suite, config, model)  # a method's own map
        if cell.data is not None:  # trained on other data (the variant's): scored on the suite's
            config = config.replace(data=cell.data)
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
        empty = suite.aggregation.empty_class  # needs the dataset's classes
        classes = None if empty is None else open_split(cell.eval_config, cell.split).num_classes
        rows = aggregate_cell(
            wide,
            meta,
            suite.aggregation.bootstrap,
            suite.aggregation.fill_undefined,
            empty_class=empty,
            num_classes=classes,
        )
        counts = count_valid(wide), count_valid(wide, EVIDENCE_REASON)
        rows = pd.concat([rows, dataset_rows(dataset, meta, *counts)], ignore_index=True)
        write_atomic(cell_data_file(run, cell), _eval_fingerprint(cell).encode())
        if suite.protocol != "aubench":  # the fixes it keeps, counted (manifest "fixes")
            write_atomic(cell_fixes_file(run, cell), json.dumps(fix_counts(wide)).encode())
        if suite.evidence != "codebook":  # its counts and agreement (manifest "evidence")
            found = evidence_summary(
                wide, cell.eval_config, cell.split, suite.evidence, suite.protocol
            )
            write_atomic(cell_evidence_file(run, cell), json.dumps(found).encode())
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
        "protocol": suite.protocol,
        "evidence": suite.evidence,
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
    per-depth columns included, :func:`aubench.metrics.describe_column`; a metric scored
    against per-image evidence, ``<name>@evidence``, has its metric's), for reports and
    checks."""
    shown = dict.fromkeys(["accuracy", *(name for name in names if name != "pred")])
    plain = {name: name.removesuffix(EVIDENCE_SUFFIX) for name in shown}
    return {name: describe_column(metric).metadata() for name, metric in plain.items()}


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
    protocol: dict[str, Any] = {"protocol": suite.protocol}
    if suite.protocol != "aubench":  # the fixes it keeps, counted per cell
        protocol["fixes"] = {c.key: json.loads(cell_fixes_file(run, c).read_text()) for c in cells}
    if suite.evidence != "codebook":  # per cell: the counts of its evidence (agreement: beside)
        protocol["evidence"] = {
            "evidence": suite.evidence,
            "cells": {c.key: _evidence_counts(run, c) for c in cells},
        }
    return {
        "suite": suite.dump(),
        "suite_hash": suite_hash(suite),
        **protocol,
        "seeds": list(suite.seeds),
        "layers": list(dict.fromkeys([*_resolved_layers(suite), *given])),
        **_methods(suite),
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
    """The module names the layer specs of every trained cell denote (its ``layers``, then any
    explainer's own: :func:`producer_settings`), in suite order."""
    names: dict[str, None] = {}
    for cell in plan(suite):
        if cell.entry is not None:
            continue
        model = _blank_model(cell.config)
        settings = producer_settings(suite, cell.config, model)
        own = (s for layers in settings["explainer_layers"].values() for s in layers)
        specs = dict.fromkeys([*settings["layers"], *own])
        names.update(dict.fromkeys(resolve_layers(model, list(specs))))
    return list(names)


def _methods(suite: Suite) -> dict[str, Any]:
    """The manifest's ``methods`` of a suite that sets ``methods`` (else nothing): each trained
    model's label → its training ``method``, timm ``model``, the report ``block`` it is compared
    in (the suite model it is trained on; a method on its own model joins the block of the
    suite's only trained model), the ``explainer`` and ``layer`` (module name) of the method's
    own map, whether that map is ``class_agnostic`` (APViT's: one map for every class, so no
    CAM-COS), and the layer specs its guided variants align (``aligned``)."""
    if "methods" not in suite.dump():
        return {}
    methods = {}
    for training in suite.trainings:
        seed = suite.seeds[0]
        config = suite.train_config(training.model, suite.variants[0], seed, training.entry)
        model = _blank_model(config)
        explainer, spec = own_map(config, model)
        block = training.model
        if training.entry.model is not None and len(suite.trained_models) == 1:
            block = suite.trained_models[0]
        methods[training.label] = {
            "method": config.method,
            "model": training.model,
            "block": block,
            "explainer": explainer,
            "layer": resolve_layers(model, [spec])[0],
            "class_agnostic": bool(getattr(get_explainer(explainer), "class_agnostic", False)),
            "aligned": list(config.layers),
        }
    return {"methods": methods}


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
    return open_split(cell.eval_config, cell.split).content_fingerprint


def cell_data_file(run: Path, cell: Cell) -> Path:
    """The content fingerprint of the data a finished cell was evaluated on."""
    return run / "cells" / f"{cell.key}.data"


def cell_evidence_file(run: Path, cell: Cell) -> Path:
    """What a finished cell's per-image AU evidence was
    (:func:`~aubench.bench.evaluate.evidence_summary`, JSON)."""
    return run / "cells" / f"{cell.key}.evidence.json"


def _evidence_counts(run: Path, cell: Cell) -> dict[str, Any]:
    """A cell's :func:`~aubench.bench.evaluate.evidence_summary` but its per-class agreement."""
    found = json.loads(cell_evidence_file(run, cell).read_text())
    return {key: value for key, value in found.items() if key not in ("codebook", "agreement")}


def cell_fixes_file(run: Path, cell: Cell) -> Path:
    """What aubench's validity fixes changed in a finished cell scored under protocol
    ``belharbi2024`` (:func:`~aubench.bench.evaluate.fix_counts`, JSON)."""
    return run / "cells" / f"{cell.key}.fixes.json"


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
