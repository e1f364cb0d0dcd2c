"""``aubench run --executor``: a suite's cells as submitit jobs (local processes, debug, SLURM).

:func:`submit_suite` works in two phases, so that no two jobs ever train the same model folder
at once (the trainer resumes a folder of the same config, but two processes writing one folder
race):

1. **training**: each distinct model the suite needs that is not trained yet (no ``best.pt`` +
   ``summary.json`` in ``<runs_root>/models/<run name>``) gets one job; a model shared by two
   cells is trained once. Training runs as jobs, not in the submitting process, so on SLURM it
   lands on the GPU nodes rather than the login node. :func:`submit_suite` waits for these jobs.
2. **evaluation**: ``jobs`` shards, shard ``i`` running
   ``run_suite(suite, shard=(i, jobs))`` on cells ``i, i + jobs, …``; every model is in the
   cache by then, so shards only read it. Shards whose cells are all finished are not submitted.

The caller then calls :func:`wait` and, once every shard succeeded, ``run_suite`` once more in
its own process to assemble ``results.csv``/``results.parquet`` and ``manifest.json`` (the CLI
does both). Jobs receive the suite's source, its ``--preset`` and ``--set`` overrides and load the
suite again, so each job validates exactly what the user gave; paths are made absolute before
submission. A suite's ``methods`` need nothing more: each method's models are distinct folders
(:meth:`~aubench.train.config.TrainConfig.run_name`), trained by phase 1 like any other.

Executors (``submitit.AutoExecutor(cluster=...)``, extra ``slurm``):

- ``local``: one subprocess per job on this machine, all at once, pickled exactly as for SLURM;
  they see ``gpus_per_node`` GPUs (default: all of this machine's).
- ``debug``: every job in this process, one after the other, when :func:`wait` asks for its
  result; a failing job drops into ``pdb`` (submitit's debug mode).
- ``slurm``: job arrays through ``sbatch``; one GPU per job unless ``gpus_per_node`` says
  otherwise.

Every job gets ``timeout_min`` 720 unless ``slurm`` says otherwise, and no GPU when the device is
``cpu``.

Logs: ``<folder>/<job id>_<task>_log.out`` and ``…_log.err`` (``folder`` defaults to
``<run>/executor``); a failed job's error names its shard (or model) and its log file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from aubench.bench.runner import (
    Cell,
    cell_file,
    check_suite,
    is_trained,
    model_dir,
    plan,
    prepare_run_folder,
    run_folder,
    run_suite,
)
from aubench.bench.suite import BUILTIN_SUITES, Suite, load_suite
from aubench.train.loop import fit

#: The submitit clusters ``--executor`` accepts.
EXECUTORS = ("local", "debug", "slurm")
#: Each job's time limit in minutes unless ``slurm`` gives ``timeout_min``.
DEFAULT_TIMEOUT_MIN = 720


class JobFailed(RuntimeError):
    """One or more jobs failed; the message names each one, its cause and its log file."""


@dataclass(frozen=True)
class SuiteJob:
    """A submitted job: what it does (``label``, e.g. ``shard 1/4``) and its submitit job."""

    label: str
    job: Any  # submitit.Job: the extra is optional, so not imported at module level

    @property
    def log(self) -> Path:
        """The job's stderr log (tracebacks land there; stdout is beside it, ``…_log.out``)."""
        return Path(self.job.paths.stderr)


def submit_suite(
    suite_source: str,
    overrides: Sequence[str] = (),
    *,
    preset: str | None = None,
    out: str | Path | None = None,
    runs_root: str | Path = "runs",
    jobs: int | None = None,
    executor: str = "local",
    folder: str | Path | None = None,
    device: str | None = None,
    slurm: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[SuiteJob]:
    """Train the suite's missing models as jobs (and wait for them), then submit its shards.

    Args:
        suite_source: built-in suite name or suite YAML file, as for :func:`load_suite`.
        overrides: ``KEY=VALUE`` overrides, as for :func:`load_suite`.
        preset: the suite's preset, as for :func:`load_suite` (every job applies it too).
        out: run folder; default ``<runs_root>/<suite>-<hash>``, as ``run_suite``'s.
        runs_root: where trained models live (``<runs_root>/models``).
        jobs: number of evaluation shards; default one per cell.
        executor: ``local``, ``debug`` or ``slurm`` (see the module doc).
        folder: submitit's folder for pickles and logs; default ``<out>/executor``.
        device: device of every job (default: the suite's, ``auto``).
        slurm: more ``submitit.AutoExecutor.update_parameters`` arguments, applied last, e.g.
            ``{"slurm_partition": "gpu", "timeout_min": 240, "gpus_per_node": 1,
            "cpus_per_task": 8, "mem_gb": 32, "slurm_account": "def-me"}``; ``slurm_*`` ones
            apply on SLURM only.
        echo: called with one line per batch of submitted jobs (job ids, log folder).

    Returns:
        The evaluation shards' jobs; pass them to :func:`wait`.

    Raises:
        ValueError: unknown executor, ``slurm`` off a SLURM cluster, ``jobs`` < 1, or a bad
            suite (``SuiteError``).
        FileExistsError: ``out`` holds a run of another suite.
        ImportError: submitit is not installed.
        JobFailed: a training job failed (no shard is submitted then).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    submitit = _import_submitit()
    overrides = list(overrides)
    suite = load_suite(suite_source, overrides, preset)
    check_suite(suite)  # before any job: a bad explainer layer fails here, not after training
    source = _portable_source(suite_source)
    cells = plan(suite)
    count = len(cells) if jobs is None else jobs
    if count < 1:
        raise ValueError(f"jobs {count}: expected at least 1")
    runs_root = Path(runs_root).resolve()
    run = run_folder(suite, out, runs_root)
    run = run.resolve()
    prepare_run_folder(run, suite)  # now, not in racing shards: each would see the other's files
    folder = Path(folder).resolve() if folder is not None else run / "executor"
    try:
        pool = submitit.AutoExecutor(folder=folder, cluster=executor)
    except RuntimeError as err:  # slurm without srun on the PATH
        raise ValueError(f"executor {executor!r}: {err}") from None
    pool.update_parameters(**(_parameters(suite, executor, device) | (slurm or {})))

    untrained = _untrained(cells, runs_root)
    if untrained:
        trainings = pool.map_array(
            train_model,
            [source] * len(untrained),
            [overrides] * len(untrained),
            [runs_root] * len(untrained),
            untrained,
            [device] * len(untrained),
            [preset] * len(untrained),
        )
        _echo(echo, "training", trainings, folder)
        wait([SuiteJob(f"training of {n}", j) for n, j in zip(untrained, trainings, strict=True)])

    done = [cell_file(run, c).is_file() for c in cells]
    pending = [i for i in range(count) if not all(done[i::count])]
    if not pending:
        return []
    shards = pool.map_array(
        evaluate_shard,
        [source] * len(pending),
        [overrides] * len(pending),
        [run] * len(pending),
        [runs_root] * len(pending),
        [(i, count) for i in pending],
        [device] * len(pending),
        [preset] * len(pending),
    )
    _echo(echo, "evaluation", shards, folder)
    return [SuiteJob(f"shard {i}/{count}", job) for i, job in zip(pending, shards, strict=True)]


def wait(jobs: Sequence[SuiteJob]) -> None:
    """Wait for every job; raise :class:`JobFailed` naming each failed one and its log file.

    Every job is waited for, so the shards that succeed keep their finished cells.
    """
    failures = []
    for item in jobs:
        try:
            item.job.result()
        except Exception as err:
            failures.append(
                f"{item.label} (job {item.job.job_id}) failed: {_cause(err)}\n  log: {item.log}"
            )
    if failures:
        raise JobFailed(f"{len(failures)} of {len(jobs)} job(s) failed:\n" + "\n".join(failures))


def train_model(
    suite_source: str,
    overrides: list[str],
    runs_root: Path,
    name: str,
    device: str | None,
    preset: str | None = None,
) -> str:
    """Job: train model ``name`` (a run folder name under ``<runs_root>/models``) of the suite
    (any method's: every cell's config is looked at).

    Does nothing when the model is already trained. Returns the model folder.
    """
    suite = load_suite(suite_source, overrides, preset)
    configs = {model_dir(runs_root, c.config).name: c.config for c in plan(suite)}
    if name not in configs:
        raise ValueError(
            f"{suite_source} with {overrides} does not train {name}: was the suite edited after "
            "submission?"
        )
    folder = model_dir(runs_root, configs[name])
    if not is_trained(folder):
        target = device or suite.device
        fit(configs[name], out=folder, device=None if target == "auto" else target, progress=False)
    return str(folder)


def evaluate_shard(
    suite_source: str,
    overrides: list[str],
    out: Path,
    runs_root: Path,
    shard: tuple[int, int],
    device: str | None,
    preset: str | None = None,
) -> str:
    """Job: evaluate shard ``shard = (i, n)`` of the suite into run folder ``out``."""
    suite = load_suite(suite_source, overrides, preset)
    index, count = shard
    print(f"aubench: suite {suite.name}, shard {index}/{count}, run folder {out}", flush=True)
    run = run_suite(suite, out=out, runs_root=runs_root, device=device, shard=shard, progress=False)
    return str(run)


def _import_submitit() -> ModuleType:
    try:
        import submitit
    except ImportError:
        raise ImportError(
            "the local, debug and slurm executors need submitit: pip install 'aubench[slurm]'"
        ) from None
    return submitit


def _portable_source(source: str) -> str:
    """``source`` as a job elsewhere can load it: a built-in name, or an absolute file path."""
    if (BUILTIN_SUITES / f"{source}.yaml").is_file():
        return source
    return str(Path(source).resolve())


def _parameters(suite: Suite, executor: str, device: str | None) -> dict[str, Any]:
    """Default executor parameters: job name, time limit, and GPUs unless the device is CPU."""
    parameters: dict[str, Any] = {
        "name": f"aubench-{suite.name}",
        "timeout_min": DEFAULT_TIMEOUT_MIN,
    }
    cpu = (device or suite.device) == "cpu"
    if executor == "slurm":
        parameters["gpus_per_node"] = 0 if cpu else 1
    elif executor == "local":  # submitit hides every GPU from local jobs unless told
        parameters["gpus_per_node"] = 0 if cpu else torch.cuda.device_count()
    return parameters


def _untrained(cells: list[Cell], runs_root: Path) -> list[str]:
    """Run names of the distinct models of ``cells`` not trained yet, in plan order (given
    models, which are evaluated and never trained, have none)."""
    folders = dict.fromkeys(model_dir(runs_root, c.config) for c in cells if c.entry is None)
    return [folder.name for folder in folders if not is_trained(folder)]


def _echo(echo: Callable[[str], None] | None, what: str, jobs: list, folder: Path) -> None:
    if echo is not None:
        ids = ", ".join(job.job_id for job in jobs)
        echo(f"submitted {len(jobs)} {what} job(s): {ids}; logs in {folder}")


def _cause(err: Exception) -> str:
    """One line saying why a job failed: the last line of its traceback where submitit has it."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    text = str(err)
    if isinstance(err, FailedJobError):  # the job's traceback, between two rules of dashes
        parts = text.split("----------------------\n")
        trace = parts[1].strip() if len(parts) > 2 else ""
        return trace.splitlines()[-1] if trace else text.splitlines()[0]
    if isinstance(err, UncompletedJobError):  # timed out, killed, or no result
        return text.splitlines()[0]
    return f"{type(err).__name__}: {text}"  # debug mode: the job's own exception
