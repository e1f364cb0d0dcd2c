"""The ``aubench`` command line.

Commands: ``synth`` (export the built-in synthetic AU faces with a preview grid), ``train``
(baseline or AU-guided training, see :mod:`aubench.train`), ``run`` (a suite), ``evaluate``
(score your own model or precomputed maps, see :mod:`aubench.bench.api`), ``report``,
``check``, ``landmarks`` (compute and cache
68 landmarks for a dataset, see :mod:`aubench.landmarks.cache`) and ``list``
(codebooks, region models, expressions, action units, a model's layers). Errors in user input
exit with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from aubench.version import __version__


def _synth(args: argparse.Namespace) -> None:
    from aubench.data.preview import save_synthetic_preview
    from aubench.data.synthetic import SyntheticFaces, export_synthetic

    dataset = SyntheticFaces(
        args.n,
        args.size,
        args.split,
        args.seed,
        args.num_classes,
        shortcut=args.shortcut,
        difficulty=args.difficulty,
    )
    out = export_synthetic(dataset, args.out, progress=not args.quiet)
    written = "labels.csv, images/"
    if not args.no_preview:
        save_synthetic_preview(dataset, out / "preview.png")
        written += ", preview.png"
    print(f"wrote {len(dataset)} faces to {out} ({written})")


def _list(args: argparse.Namespace) -> None:
    from aubench.faces.codebook import AU_NAMES, EXPRESSIONS, get_codebook, list_codebooks

    if args.what == "codebooks":
        for name in list_codebooks():
            book = get_codebook(name)
            print(name)
            for label, expression in enumerate(EXPRESSIONS):
                aus = book.aus_of(label)
                shown = " ".join(f"AU{au}" for au in aus) if aus else "— (invalid heatmap)"
                print(f"  {expression:<10} {shown}")
    elif args.what == "regions":
        from aubench.faces.region_registry import REGION_MODELS

        for name, model in REGION_MODELS.items():
            codebook = model.default_codebook or "— (label-agnostic)"
            print(f"{name:<20} default codebook: {codebook}")
    elif args.what == "expressions":
        for label, expression in enumerate(EXPRESSIONS):
            print(f"{label}  {expression}")
    elif args.what == "suites":
        from aubench.bench.suite import list_suites, suite_description

        for name in list_suites():
            print(f"{name:<14} {suite_description(name)}")
    elif args.what == "aus":
        for au, name in AU_NAMES.items():
            print(f"AU{au:<3} {name}")
    else:
        _list_layers(args)


def _list_layers(args: argparse.Namespace) -> None:
    from aubench.models import create, list_layers

    if not args.model:
        raise ValueError("`aubench list layers` needs a model name, e.g. `list layers resnet18`")
    model = create(args.model, num_classes=7, img_size=args.size)
    print(f"{'layer':<32} {'stage':>5}  {'module':<20} output ({args.size}×{args.size} input)")
    for info in list_layers(model, args.size, depth=args.depth):
        stage = "" if info.stage is None else str(info.stage)
        grid = "" if info.spatial is None else f"  grid {info.spatial[0]}×{info.spatial[1]}"
        shape = "×".join(str(n) for n in info.shape[1:])
        print(f"{info.name:<32} {stage:>5}  {info.kind:<20} {shape}{grid}")


def _train(args: argparse.Namespace) -> None:
    import os

    from aubench.train import TrainingInterrupted, config_from_arguments, fit

    config = config_from_arguments(args)
    if args.dump_config:
        print(config.to_yaml(), end="")
        return
    try:
        summary = fit(
            config,
            out=args.out,
            device=args.device,
            workers=args.workers,
            progress=not args.quiet,
            save_every=args.save_every,
            stop_after_steps=args.stop_after_steps,
        )
    except TrainingInterrupted as stop:
        print(f"aubench train: {stop}", file=sys.stderr)
        raise SystemExit(3) from None
    if os.environ.get("RANK", "0") == "0":
        best = summary["best"] or {}
        shown = {k: best[k] for k in best if k.endswith(("_acc", "_att_cos", "_att_cos@evidence"))}
        scores = ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
        print(
            f"trained {summary['run']} (config {summary['config_hash']}); "
            f"best epoch {summary['best_epoch']}: {scores}"
        )


def _landmarks(args: argparse.Namespace) -> None:
    from aubench.data.landmark_backends import get_backend
    from aubench.data.registry import open_dataset, parse_data_spec
    from aubench.landmarks.cache import compute_landmarks, summary

    if parse_data_spec(args.data)[0] == "synthetic":
        raise ValueError("synthetic faces carry exact landmarks; there is nothing to compute")
    dataset = open_dataset(args.data, "all", landmarks="none")
    if args.backend == "dataset":
        options = {"source": args.source or dataset}
    elif args.backend == "face-alignment":
        options = {"face_box": args.face_box or "image", "device": args.device}
    else:
        options = {"min_score": args.min_score, "upsample": args.upsample}
        options["face_box"] = args.face_box or "detect"
    try:
        backend = get_backend(args.backend, **options)
    except ImportError as err:
        print(f"aubench landmarks: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    cache = compute_landmarks(
        dataset,
        backend,
        overwrite=args.overwrite,
        checkpoint_every=args.checkpoint_every,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(f"{dataset.name} ({len(dataset)} images): {summary(cache)}")
    print(f"cache: {cache.path}")


def _run(args: argparse.Namespace) -> None:
    from aubench.bench.runner import check_suite, describe_plan, run_suite
    from aubench.bench.suite import load_suite
    from aubench.bench.summary import headline

    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data={args.data}")
    if args.protocol:
        overrides.append(f"protocol={args.protocol}")
    if args.evidence:
        overrides.append(f"evidence={json.dumps(args.evidence)}")
    if args.pretrained:
        overrides.append(_weights_override(args.pretrained))
    suite = load_suite(args.suite, overrides, args.preset)
    if args.dry_run:
        check_suite(suite)
        print(describe_plan(suite, args.runs_root))
        return
    # imported before the run, not after it: a long run must not build its report from modules
    # edited on disk meanwhile (a 73-min run once failed there, mixing two versions)
    from aubench.report import write_report

    index, count = _parse_shard(args.shard)
    if args.executor != "none":
        if count != 1:
            raise ValueError("--shard and --executor exclude each other (the jobs are the shards)")
        _submit(args, overrides)  # every cell is then finished: run_suite below assembles
    run = run_suite(
        suite,
        out=args.out,
        runs_root=args.runs_root,
        device=args.device,
        shard=(index, count),
        progress=not args.quiet,
    )
    from aubench.train.distributed import from_environment

    if not from_environment().main:  # under torchrun, rank 0 reports
        return None
    if not (run / "results.parquet").is_file():
        print(f"shard {index}/{count} done; results are assembled when every shard has finished")
        return
    report = write_report(run)
    print(headline(run))
    print(f"results: {run}\nreport:  {report / 'report.md'}")


def _weights_override(specs: list[str]) -> str:
    """The suite override of ``run --pretrained`` flags: ``FILE`` or ``hub`` for every trained
    model (``*``), ``MODEL=FILE`` or ``MODEL=hub`` for one timm model."""
    weights = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        weights.update({name.strip(): value.strip()} if sep else {"*": spec})
    return f"pretrained={json.dumps(weights)}"


#: The ``--protocol`` flag's help (the suite validates the name).
#: The ``--evidence`` flag's help (the suite validates the setting).
EVIDENCE_HELP = (
    "also score the maps against each image's AU evidence (metrics <name>@evidence): facs (the "
    "dataset's coded AUs: synthetic, ckplus), detector:PATH (OpenFace/py-feat/LibreFace output), "
    "hybrid[:PATH] (the codebook's AUs weighted by them); default codebook only"
)
PROTOCOL_HELP = (
    "evaluation protocol: aubench (default) or belharbi2024 (the reference code's heatmaps, map "
    "post-processing and undefined scores -> 0)"
)
#: ``aubench evaluate`` flags that are model card keys (the card file's values give way to them).
CARD_FLAGS = ("input_size", "channels", "mean", "std", "classes", "layers", "crop", "output")
#: Card keys (and other flags) that describe a model, not precomputed maps.
MODEL_ONLY = ("channels", "mean", "std", "classes", "layers", "output", "checkpoint")


def _evaluate(args: argparse.Namespace) -> None:
    """``aubench evaluate``: a one-model suite, run like ``aubench run`` (see the API)."""
    from aubench.bench.api import evaluation_suite, notes
    from aubench.bench.runner import run_suite
    from aubench.bench.summary import headline

    given = {key: getattr(args, key) for key in CARD_FLAGS if getattr(args, key) is not None}
    if args.maps is not None:
        model_only = [k for k in MODEL_ONLY if getattr(args, k) is not None]
        model_only += ["strict"] if args.strict == "false" else []
        model_only += [k for k in ("explainers", "controls") if getattr(args, k) is not None]
        if model_only:
            flags = ", ".join("--" + k.replace("_", "-") for k in model_only)
            raise ValueError(f"{flags}: for --model only; maps are scored as they are")
    elif args.skip_bad_maps:
        raise ValueError("--skip-bad-maps: for --maps only")
    suite = evaluation_suite(
        args.data,
        model=args.model,
        maps=args.maps,
        checkpoint=args.checkpoint,
        card=args.card,
        card_overrides={key: _card_value(key, value) for key, value in given.items()},
        name=args.name,
        strict=args.strict == "true",
        skip_bad_maps=args.skip_bad_maps,
        explainers=_names(args.explainers),
        controls=_names(args.controls),
        metrics=_names(args.metrics),
        split=args.split,
        batch_size=args.batch_size,
        max_images=args.max_images,
        target=args.target,
        samples_per_class=args.samples_per_class,
        bootstrap=args.bootstrap,
        protocol=args.protocol,
        empty_class=args.empty_class,
        evidence=args.evidence,
    )
    run = run_suite(
        suite, out=args.out, runs_root=args.runs_root, device=args.device, progress=not args.quiet
    )
    print(headline(run))
    for line in notes(run):
        print(f"note: {line}")
    print(f"results: {run}\nreport:  aubench report {run}; CI: aubench check {run} --baseline B")


def _names(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated flag as names; ``none`` (or empty) is no name at all."""
    if text is None:
        return None
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    return () if names in ((), ("none",)) else names


def _card_value(key: str, text: str) -> object:
    """A card flag's text as the card key's value: ``--input-size 48`` or ``48x64``,
    ``--mean 0.5`` or ``0.485,0.456,0.406``; the others as given."""
    if key == "input_size":
        sides = text.lower().replace(",", "x").split("x")
        if not all(side.strip().isdigit() for side in sides) or len(sides) > 2:
            raise ValueError(f"--input-size {text!r}: expected a side (48) or HxW (48x64)")
        return int(sides[0]) if len(sides) == 1 else [int(side) for side in sides]
    if key in ("mean", "std"):
        try:
            return [float(part) for part in text.split(",")]
        except ValueError:
            raise ValueError(
                f"--{key} {text!r}: expected numbers, e.g. 0.5 or 0.5,0.5,0.5"
            ) from None
    if key == "channels":
        return int(text)
    return text


def _submit(args: argparse.Namespace, overrides: list[str]) -> None:
    """``run --executor``: train and evaluate the suite as submitit jobs and wait for them."""
    from aubench.bench.executor import JobFailed, submit_suite, wait

    options = {"timeout_min": args.slurm_time, "slurm_partition": args.slurm_partition}
    options["gpus_per_node"] = args.slurm_gpus
    try:
        jobs = submit_suite(
            args.suite,
            overrides,
            preset=args.preset,
            out=args.out,
            runs_root=args.runs_root,
            jobs=args.jobs,
            executor=args.executor,
            folder=args.executor_folder,
            device=args.device,
            slurm={k: v for k, v in options.items() if v is not None},
            echo=None if args.quiet else print,
        )
        wait(jobs)
    except ImportError as err:
        print(f"aubench run: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except JobFailed as err:
        print(f"aubench run: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def _report(args: argparse.Namespace) -> None:
    from aubench.report.build import write_report

    def names(text: str | None) -> list[str] | None:
        return [n.strip() for n in text.split(",") if n.strip()] if text else None

    out = write_report(
        args.run,
        out=args.out,
        metrics=names(args.metrics),
        ci=args.ci,
        split=args.split,
        variants=names(args.variants),
    )
    tables = len(list((out / "tables").glob("*.tex")))
    figures = len(list((out / "figures").glob("*.png")))
    print(f"wrote {out / 'report.md'}, {tables} LaTeX tables and {figures} figures (PNG + PDF)")


def _check(args: argparse.Namespace) -> int:
    from aubench.bench.check import check_run, update_baseline

    if args.update_baseline:
        path = update_baseline(args.run, args.baseline)
        print(f"wrote baseline {path}")
        return 0
    result = check_run(args.run, args.baseline)
    print(result.describe())
    return 0 if result.ok else 1


def _parse_shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not int(index) < int(count):
        raise ValueError(f"--shard {text!r}: expected i/n with 0 ≤ i < n, e.g. 0/4")
    return int(index), int(count)


def build_parser() -> argparse.ArgumentParser:
    from aubench.faces.synth_difficulty import DEFAULT_DIFFICULTY

    parser = argparse.ArgumentParser(
        prog="aubench",
        description="Does your facial-expression classifier look where a FACS expert looks?",
    )
    parser.add_argument("--version", action="version", version=f"aubench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "synth", help="export synthetic AU faces (images + labels.csv with 68 landmarks + preview)"
    )
    synth.add_argument("--n", type=int, default=64, help="number of faces (default 64)")
    synth.add_argument("--size", type=int, default=112, help="image side in px, 64-224 (112)")
    synth.add_argument("--out", required=True, help="output folder (created; resumable)")
    synth.add_argument("--split", default="train", choices=["train", "val", "test"])
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--num-classes", type=int, default=7, choices=[7, 8])
    synth.add_argument(
        "--shortcut", type=float, default=0.0, help="probability ρ of a class-coloured shortcut cue"
    )
    synth.add_argument(
        "--difficulty",
        default=DEFAULT_DIFFICULTY,
        choices=["easy", "moderate", "hard"],
        help="how hard the faces are (subtle AUs, noise, blur, occluders, pose, identity, "
        "label noise; default moderate)",
    )
    synth.add_argument("--no-preview", action="store_true", help="skip preview.png")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_synth)

    run = commands.add_parser(
        "run", help="run a suite: train what is missing, evaluate every cell, write results"
    )
    run.add_argument("--suite", required=True, help="built-in suite name or a suite YAML file")
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a suite field (repeatable)"
    )
    run.add_argument("--data", help="dataset spec NAME:PATH (overrides the suite's data)")
    run.add_argument(
        "--preset",
        metavar="NAME",
        help="a preset of the suite (its field overrides, applied before --set), e.g. "
        "cam-methods' paper (the paper's settings; needs --data and --pretrained)",
    )
    run.add_argument(
        "--pretrained",
        action="append",
        metavar="[MODEL=]FILE|hub",
        help="ImageNet weights of the trained models: a weights file or hub (timm's, from the "
        "local hub cache) for every model, or MODEL=… for one timm model (repeatable)",
    )
    run.add_argument("--protocol", help=PROTOCOL_HELP + " (overrides the suite's)")
    run.add_argument("--evidence", help=EVIDENCE_HELP + " (overrides the suite's)")
    run.add_argument("--out", help="run folder (default runs/<suite>-<hash>)")
    run.add_argument("--runs-root", default="runs", help="where runs and trained models live")
    run.add_argument("--device", help="cpu, cuda, cuda:1 … (default: the suite's, auto)")
    run.add_argument("--shard", default="0/1", help="evaluate cells i, i+n, … only (i/n)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    run.add_argument(
        "--executor",
        default="none",
        choices=["none", "local", "debug", "slurm"],
        help="run the cells as submitit jobs: local processes, debug (in this process, pdb on "
        "failure) or SLURM; missing models are trained first (default none: in this process)",
    )
    run.add_argument("--jobs", type=int, help="--executor: evaluation shards (default: one a cell)")
    run.add_argument("--slurm-partition", help="--executor slurm: the partition")
    run.add_argument(
        "--slurm-time", type=int, metavar="MINUTES", help="--executor: time limit a job (720)"
    )
    run.add_argument(
        "--slurm-gpus", type=int, help="--executor: GPUs a job (slurm 1, local all; cpu device 0)"
    )
    run.add_argument("--executor-folder", help="--executor: job pickles and logs (RUN/executor)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(handler=_run)

    _add_evaluate(commands)

    check = commands.add_parser(
        "check", help="compare a run with a committed baseline; exit 1 on a regression"
    )
    check.add_argument("run", help="run folder (holding results.parquet and manifest.json)")
    check.add_argument("--baseline", required=True, help="baseline JSON file")
    check.add_argument(
        "--update-baseline", action="store_true", help="rewrite the baseline from this run"
    )
    check.set_defaults(handler=_check)

    listing = commands.add_parser(
        "list", help="list codebooks, region models, expressions, AUs, or a model's layers"
    )
    listing.add_argument(
        "what", choices=["codebooks", "regions", "expressions", "aus", "layers", "suites"]
    )
    listing.add_argument("model", nargs="?", help="timm model name (for `list layers`)")
    listing.add_argument("--size", type=int, default=224, help="input side in px (layers; 224)")
    listing.add_argument(
        "--depth", type=int, default=2, help="module-name depth shown (layers; default 2)"
    )
    listing.set_defaults(handler=_list)

    from aubench.train.config import add_config_arguments

    train = commands.add_parser(
        "train",
        help="train a baseline or AU-guided classifier (resumable; torchrun for DDP)",
        description="Train a classifier, optionally aligning a layer's attention with the AU "
        "heatmaps (--guided). Re-running the same command resumes the run. Distributed: "
        "torchrun --nproc_per_node N -m aubench train ...",
    )
    start = train.add_mutually_exclusive_group()
    start.add_argument("--config", help="YAML config file (flags below override it)")
    start.add_argument(
        "--preset",
        choices=["small", "paper"],
        help="named config: small (default; synthetic faces on a CPU in minutes) or paper "
        "(Belharbi et al.'s recipe; give --data and --pretrained)",
    )
    train.add_argument("--out", help="run folder (default: runs/<model>-<baseline|guided>-<hash>)")
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    train.add_argument("--workers", type=int, default=0, help="DataLoader workers per process (0)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--save-every",
        type=int,
        default=0,
        help="also save last.pt every N steps, to resume mid-epoch (default: epoch ends only)",
    )
    train.add_argument(
        "--dump-config", action="store_true", help="print the resolved config as YAML and exit"
    )
    train.add_argument(
        "--stop-after-steps",
        type=int,
        help="testing: stop as if killed after N steps of this invocation (exit status 3)",
    )
    add_config_arguments(train)
    train.set_defaults(handler=_train)

    marks = commands.add_parser(
        "landmarks",
        help="compute and cache 68 landmarks for a whole dataset (resumable)",
        description="Detect 68 landmarks for every image of a dataset and cache them under "
        "$AUBENCH_CACHE (default ~/.cache/aubench); datasets opened with landmarks='auto' pick "
        "them up. Re-running resumes; failures are counted by reason.",
    )
    marks.add_argument("--data", required=True, help="NAME:PATH, e.g. rafdb:/data/RAF-DB")
    marks.add_argument(
        "--backend", default="dlib", choices=["dlib", "face-alignment", "dataset"], help="(dlib)"
    )
    marks.add_argument(
        "--face-box",
        choices=["detect", "image"],
        help="detect faces, or use the whole image as the face (default: dlib detect, "
        "face-alignment image)",
    )
    marks.add_argument(
        "--min-score", type=float, default=0.0, help="dlib: lowest detection score kept (0)"
    )
    marks.add_argument("--upsample", type=int, default=1, help="dlib: detector upsampling (1)")
    marks.add_argument("--device", default="cpu", help="face-alignment: torch device (cpu)")
    marks.add_argument(
        "--from", dest="source", help="dataset backend: a landmarks.txt instead of the shipped ones"
    )
    marks.add_argument("--workers", type=int, default=0, help="detector processes (0: in-process)")
    marks.add_argument(
        "--checkpoint-every", type=float, default=60.0, help="seconds between saves (60)"
    )
    marks.add_argument("--overwrite", action="store_true", help="recompute an existing cache")
    marks.add_argument("--quiet", action="store_true", help="no progress bar")
    marks.set_defaults(handler=_landmarks)

    report = commands.add_parser(
        "report",
        help="LaTeX tables, figures and a Markdown summary of a run folder",
        description="Write RUN/report/: tables/*.tex (booktabs), figures/*.png|pdf and "
        "report.md, from the run's results alone (no model is loaded).",
    )
    report.add_argument("run", help="run folder (results.parquet, manifest.json, per_image/ …)")
    report.add_argument("--out", help="output folder (default RUN/report)")
    report.add_argument(
        "--metrics", help="comma-separated map metrics of the main table (default cosine)"
    )
    report.add_argument("--ci", action="store_true", help="show bootstrap 95%% CIs in tables")
    report.add_argument("--split", help="split to report (default test, or the only one)")
    report.add_argument("--variants", help="comma-separated variants to show (default all)")
    report.set_defaults(handler=_report)
    return parser


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    """The ``evaluate`` command's flags."""
    evaluate = commands.add_parser(
        "evaluate",
        help="score your own model or precomputed maps; writes a run folder like `aubench run`",
        description="Score a model (never trained) or a folder/file of maps against the AU "
        "heatmaps of a dataset. The run folder is `aubench run`'s: `aubench report` and "
        "`aubench check` read it; re-running resumes.",
    )
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        metavar="SPEC",
        help="timm:NAME, FILE.py:FACTORY, package.module:FACTORY, a TorchScript or .pt2 file, "
        "belharbi2024:METHOD (the paper's published checkpoints)",
    )
    source.add_argument(
        "--maps", metavar="PATH", help="maps: a folder of <image id>.npy|.png, or .npz/.pt/.parquet"
    )
    evaluate.add_argument("--data", required=True, help="dataset spec NAME:PATH")
    evaluate.add_argument("--checkpoint", help="weights file (state dict, safetensors, best.pt)")
    evaluate.add_argument(
        "--strict",
        default="true",
        choices=["true", "false"],
        help="false: load the checkpoint's matching tensors and say what was skipped",
    )
    evaluate.add_argument("--name", help="model name in results (default: from the SPEC)")
    card = evaluate.add_argument_group("model card (flags override the --card file's keys)")
    card.add_argument("--card", help="model card YAML file")
    card.add_argument("--input-size", help="input side in px (48), or HxW (square only)")
    card.add_argument("--channels", choices=["1", "3"], help="1 grey, 3 RGB")
    card.add_argument("--mean", help="per-channel mean on [0, 1] pixels (0.5 or 0.5,0.5,0.5)")
    card.add_argument("--std", help="per-channel std (with --mean; both omitted: ImageNet's)")
    card.add_argument("--classes", help="the model's output classes, in order, comma-separated")
    card.add_argument("--layers", help="layers to explain: module names, feature:N, stage:N")
    card.add_argument("--crop", choices=["align", "as-is"], help="face crop the model expects")
    card.add_argument("--output", choices=["logits", "probabilities"], help="what it returns")
    evaluate.add_argument(
        "--explainers",
        help="comma-separated (default attention,cam,gradcam, or a belharbi2024:METHOD's own; "
        "none: no explainer)",
    )
    evaluate.add_argument("--controls", help="control maps (default random,centre,generic-face)")
    evaluate.add_argument("--metrics", help="comma-separated metrics (default cosine)")
    evaluate.add_argument("--split", default="test", choices=["test", "val"])
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--max-images", type=int, help="score the first N images only")
    evaluate.add_argument("--target", default="gt", choices=["gt", "pred"], help="class explained")
    evaluate.add_argument("--samples-per-class", type=int, default=2, help="faces kept for figures")
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="replicates for the CIs")
    evaluate.add_argument("--protocol", default="aubench", help=PROTOCOL_HELP)
    evaluate.add_argument("--evidence", default="codebook", help=EVIDENCE_HELP)
    evaluate.add_argument(
        "--empty-class",
        type=float,
        metavar="VALUE",
        help="value of a class with no scored image, averaged into the macro (the reference: -1)",
    )
    evaluate.add_argument(
        "--skip-bad-maps",
        action="store_true",
        help="maps: score the rest when some are missing or unusable (counted by reason)",
    )
    evaluate.add_argument("--out", help="run folder (default runs/evaluate-<name>-<hash>)")
    evaluate.add_argument("--runs-root", default="runs", help="where default run folders go")
    evaluate.add_argument("--device", help="cpu, cuda, cuda:1 … (default auto)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=_evaluate)


def user_message(err: BaseException) -> str:
    """The one line a user error is told in. An error raised inside a DataLoader worker comes
    back as ``Caught X in DataLoader worker process N.`` plus the worker's traceback: keep the
    original message, the traceback's last line without its ``module.Class:`` prefix."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code = 0
    try:
        code = args.handler(args)
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
    ) as err:
        print(f"aubench {args.command}: error: {user_message(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a pager or `head` that stopped reading
        sys.stderr.close()
        code = 0
    except KeyboardInterrupt:
        print(f"aubench {args.command}: interrupted (finished work is kept)", file=sys.stderr)
        return 130
    return code or 0
