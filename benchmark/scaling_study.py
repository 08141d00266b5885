"""The scaling study: how test IoU and the U-Net - BSE-VoxNets gap move with the number of
training geometries N and the model size, and where the curves point at the paper's N = 10,000.

``python -m benchmark.scaling_study --preset smoke|paper-cpu [--results DIR] [--time-budget S]
[--scheduler ADDRESS]``. The design:

- One simulated pool (a dataset preset of :data:`STUDY_DATASETS`, built with
  ``datasets.builder.build_dataset`` in ``<results>/dataset`` unless ``--data`` names one). Its
  ``train`` split is put in one seeded random order and the training subset of size N is its
  first N ids, so the subsets are nested; its ``val`` split selects (best epoch, and the
  binarisation threshold); its ``test`` split is the common evaluation set that no model trains on.
- Model sizes at matched parameter counts (:data:`SIZES`): each size names a config of both
  networks (``methods/bsevoxnets.py`` and ``methods/unet3d.py`` ``CONFIGS``).
- The training-step budget rule (:class:`StepRule`): optimiser steps S(N) = clip(S_ref (N /
  N_ref)^k, S_min, S_max), trained as round(S(N) / batches per epoch) epochs (at least 1) of the
  study's training preset (its learning rate, cosine schedule, losses and validation; ``paper-cpu``
  trains with ``study``, the quick recipe without early stopping, so that every job runs its whole
  budget). The rule is printed and recorded in every job and row.
- Seeds: ``seeds`` seeds (0, 1, ...) for N <= ``few_seeds_above``, one seed above.
- Every (network, size, N, seed) is one cached job (``benchmark/scaling_jobs.py``), run here in
  order or on a Dask cluster (``--scheduler``: the workers need this suite importable, the
  results folder on a filesystem they share, and clocks that agree, since the time budget is a
  wall-clock deadline). ``--time-budget`` stops cleanly between and within jobs (between epochs);
  a rerun skips the finished jobs and resumes the interrupted ones from their checkpoints.

Outputs in the results folder: ``jobs/`` (one folder per job), ``scaling.parquet`` (one row per
job x evaluation sample; columns ``benchmark.scaling_jobs.ROW_COLUMNS``: network, label, config,
size, parameters, n_train, seed, sample, iou (at the validation threshold),
iou_fixed_threshold (at 0.5), threshold, val_miou, epochs, epochs_run, steps, step_rule,
simulated_electrons_per_pixel, read_electrons_per_pixel, dataset_hash, job_key, and the timings
train_seconds, job_seconds) and ``fits.json`` (``benchmark.scaling_fit.analyse``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.errors import UsageError
from benchmark.scaling_fit import analyse, format_tables
from benchmark.scaling_jobs import JobOutcome, JobSpec, finished_outcome, run_job
from datasets.errors import look_up
from datasets.files import atomic_path, write_json_atomic
from datasets.presets import DatasetPreset

#: the two networks, in the order jobs are planned
NETWORKS = ("bsevox", "unet3d")
#: size label -> {network: config}; parameter counts (20 energies, depth 20) in the comments
SIZES: dict[str, dict[str, str]] = {
    "0.3M": {"bsevox": "tiny", "unet3d": "matched"},  # 0.278 M / 0.297 M
    "1.2M": {"bsevox": "s1m", "unet3d": "small"},  # 1.240 M / 1.187 M
    "5M": {"bsevox": "s5m", "unet3d": "s5m"},  # 4.832 M / 4.740 M
}

#: the pools. ``scaling``: 9,100 geometries at the quick preset's 60 e-/pixel (read at it), split
#: 601 evaluation / 306 validation / 8,193 training (validation runs every other epoch of every
#: job: 306 samples select as well as the quick preset's 100 and cost half of 616);
#: ``scaling-smoke``: 48 geometries (10 / 6 / 32)
STUDY_DATASETS: dict[str, DatasetPreset] = {
    "scaling": DatasetPreset(
        name="scaling", n_geometries=9100, simulated_electrons_per_pixel=60, test_fraction=0.066, val_fraction=0.036,
        shard_size=100, seed=20, cases=(),
        description="the scaling study's pool: 8,193 training, 306 validation, 601 evaluation geometries"),
    "scaling-smoke": DatasetPreset(
        name="scaling-smoke", n_geometries=48, simulated_electrons_per_pixel=10, test_fraction=0.2, val_fraction=0.15,
        shard_size=16, seed=20, cases=(),
        description="the scaling study's smoke pool: 32 training, 6 validation, 10 evaluation geometries"),
}


@dataclass(frozen=True)
class StepRule:
    """Optimiser steps S(N) = clip(reference_steps (N / reference_n)^exponent, min_steps, max_steps)."""

    reference_steps: int
    reference_n: int
    exponent: float
    min_steps: int
    max_steps: int

    def steps(self, n_train: int) -> float:
        raw = self.reference_steps * (n_train / self.reference_n) ** self.exponent
        return min(self.max_steps, max(self.min_steps, raw))

    def epochs(self, n_train: int, batch_size: int) -> tuple[int, int]:
        """(epochs, optimiser steps) for N samples (``methods.training`` merges a last batch of one)."""
        batches = math.ceil(n_train / batch_size) - (1 if n_train > batch_size and n_train % batch_size == 1 else 0)
        epochs = max(1, round(self.steps(n_train) / batches))
        return epochs, epochs * batches

    def describe(self) -> str:
        return (f"steps = clip({self.reference_steps} x (N/{self.reference_n})^{self.exponent:g}, "
                f"{self.min_steps}, {self.max_steps}); epochs = round(steps / batches per epoch)")


@dataclass(frozen=True)
class StudyPreset:
    """Everything that decides a study's jobs."""

    name: str
    dataset: str  #: a pool of STUDY_DATASETS
    n_values: tuple[int, ...]
    sizes: tuple[str, ...]
    step_rule: StepRule
    train_preset: str = "quick"
    batch_size: int = 32
    seeds: int = 3
    few_seeds_above: int = 500  #: N above this get one seed
    subset_seed: int = 0
    n_resamples: int = 1000
    description: str = ""

    def seeds_for(self, n_train: int) -> range:
        return range(self.seeds if n_train <= self.few_seeds_above else 1)


STUDY_PRESETS: dict[str, StudyPreset] = {
    "smoke": StudyPreset(
        name="smoke", dataset="scaling-smoke", n_values=(8, 16, 32), sizes=("0.3M",),
        step_rule=StepRule(reference_steps=8, reference_n=16, exponent=0.5, min_steps=4, max_steps=16),
        train_preset="smoke", batch_size=4, seeds=1, n_resamples=200,
        description="6 jobs of seconds each on a 48-geometry pool: the machinery end to end"),
    "paper-cpu": StudyPreset(
        name="paper-cpu", dataset="scaling", n_values=(125, 250, 500, 1000, 2000, 4000, 8000),
        sizes=("0.3M", "1.2M", "5M"),
        step_rule=StepRule(reference_steps=800, reference_n=1000, exponent=0.5, min_steps=400, max_steps=4000),
        train_preset="study",
        description="the issue's grid: N 125-8000, 0.3/1.2/5 M parameters, 3 seeds up to N = 500"),
}


# ---------------------------------------------------------------------------- the plan
def plan_jobs(study: StudyPreset, dataset_path, dataset_hash: str, root, torch_threads: int = 1) -> list[JobSpec]:
    """Every job of the study, smallest N first (a time budget finishes whole learning curves'
    early points before it starts the expensive ones)."""
    specs = []
    for n_train in sorted(study.n_values):
        epochs, steps = study.step_rule.epochs(n_train, study.batch_size)
        for size in study.sizes:
            configs = look_up("scaling-study size", size, SIZES)
            for network in NETWORKS:
                for seed in study.seeds_for(n_train):
                    specs.append(JobSpec(
                        network=network, config=configs[network], size=size, n_train=n_train, seed=seed,
                        subset_seed=study.subset_seed, epochs=epochs, steps=steps,
                        step_rule=study.step_rule.describe(), train_preset=study.train_preset,
                        batch_size=study.batch_size, dataset_hash=dataset_hash, dataset=str(dataset_path),
                        root=str(root), torch_threads=torch_threads))
    return specs


def workload(study: StudyPreset, n_train: int, n_val: int) -> tuple[int, int]:
    """(training samples, validation samples) one job at N passes through its network, before
    early stopping: epochs x N, and N_val per validation epoch (every ``eval_every`` and the last)."""
    from methods.training import TRAIN_PRESETS

    epochs, _ = study.step_rule.epochs(n_train, study.batch_size)
    every = TRAIN_PRESETS[study.train_preset].eval_every
    evaluations = sum(1 for epoch in range(1, epochs + 1) if epoch % every == 0 or epoch == epochs)
    return epochs * n_train, evaluations * n_val


def describe_plan(study: StudyPreset, specs: list[JobSpec], n_val: int | None = None) -> str:
    """The plan in words: the step rule, epochs, steps and seeds per N, and the samples each
    (network, size) passes through training and validation (the cost: divide by measured samples/s)."""
    lines = [f"scaling study '{study.name}': {len(specs)} jobs; training preset '{study.train_preset}', "
             f"batch {study.batch_size}", f"step budget: {study.step_rule.describe()}"]
    totals = [0, 0]
    for n_train in sorted(study.n_values):
        epochs, steps = study.step_rule.epochs(n_train, study.batch_size)
        seeds = len(study.seeds_for(n_train))
        lines.append(f"  N = {n_train:>5}: {epochs:>4} epochs, {steps:>5} steps, {seeds} seed(s)")
        if n_val is not None:
            totals = [t + seeds * w for t, w in zip(totals, workload(study, n_train, n_val))]
    if n_val is not None:
        lines.append(f"per (network, size), before early stopping: {totals[0]:,} training and {totals[1]:,} "
                     f"validation sample passes ({n_val} validation geometries)")
    return "\n".join(lines)


def describe_states(study: StudyPreset, root: Path, data=None) -> str:
    """One line per job of the plan with its state in ``root`` (once the pool exists)."""
    from benchmark.scaling_jobs import job_state
    from datasets.storage import MANIFEST_NAME, read_manifest

    pool = Path(data) if data is not None else Path(root) / "dataset"
    if not (pool / MANIFEST_NAME).is_file():
        return f"jobs: none run yet (no pool in {pool})"
    specs = plan_jobs(study, pool.resolve(), read_manifest(pool)["dataset_hash"], Path(root).resolve())
    states = [job_state(spec) for spec in specs]
    lines = [f"jobs in {root}: {sum(s.startswith('done') for s in states)} of {len(specs)} done"]
    lines += [f"  {spec.network:>6} {spec.config:<8} {spec.size:>4}  N = {spec.n_train:>5}  seed {spec.seed}: {state}"
              for spec, state in zip(specs, states)]
    return "\n".join(lines)


def validation_size(study: StudyPreset) -> int:
    """Validation geometries of the study's pool (from its preset's split fractions)."""
    from datasets.storage import make_splits

    preset = look_up("scaling-study dataset", study.dataset, STUDY_DATASETS)
    ids = [str(i) for i in range(preset.n_geometries)]
    return len(make_splits(ids, preset.test_fraction, preset.val_fraction, preset.seed)["val"])


# ---------------------------------------------------------------------------- execution
def _local_outcomes(specs: list[JobSpec], deadline_wall: float | None):
    for spec in specs:
        yield run_job(spec, deadline_wall)


def _dask_outcomes(specs: list[JobSpec], deadline_wall: float | None, scheduler: str):
    """The jobs on a Dask cluster (``scheduler``: its address), yielded as they finish."""
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = client.map(run_job, specs, deadline_wall=deadline_wall, pure=False)
        for future in as_completed(futures):
            yield future.result()


def run_jobs(specs: list[JobSpec], deadline_wall: float | None = None, scheduler: str | None = None,
             progress: bool = True) -> list[JobOutcome]:
    """Run (or read) every job, locally in order or on ``scheduler``; their outcomes."""
    outcomes = _local_outcomes(specs, deadline_wall) if scheduler is None else \
        _dask_outcomes(specs, deadline_wall, scheduler)
    collected = []
    for i, outcome in enumerate(outcomes, 1):
        collected.append(outcome)
        if progress:
            print(f"[{i}/{len(specs)}] job {outcome.key}: {outcome.status} ({outcome.seconds:.1f} s)",
                  file=sys.stderr, flush=True)
    return collected


# ---------------------------------------------------------------------------- the study
def collect_rows(outcomes: list[JobOutcome]) -> pd.DataFrame:
    """The finished jobs' rows in a fixed order (independent of the order jobs finished)."""
    from benchmark.scaling_jobs import ROW_COLUMNS

    frames = [o.rows for o in outcomes if o.status == "done"]
    if not frames:
        return pd.DataFrame(columns=ROW_COLUMNS)
    rows = pd.concat(frames, ignore_index=True)
    return rows.sort_values(["network", "size", "n_train", "seed", "sample"], kind="stable").reset_index(drop=True)


def ensure_pool(study: StudyPreset, root: Path, data=None, scheduler=None, deadline_wall=None) -> Path:
    """The pool dataset: ``data`` as given, else built (or resumed) in ``root/dataset``. A finished
    pool is used as it is, whatever the simulator's defaults have become since: a study's data stay
    fixed (their physics is in their metadata; the published study's pool is ``nebula-like``)."""
    if data is not None:
        return Path(data)
    from benchmark.scaling_jobs import monotonic_deadline
    from datasets.builder import build_dataset
    from datasets.dataset_format import DatasetError
    from datasets.storage import MANIFEST_NAME, read_manifest

    pool = root / "dataset"
    if (pool / MANIFEST_NAME).is_file():
        try:
            read_manifest(pool)  # complete: used as it is
            return pool
        except DatasetError:
            pass  # interrupted (or unreadable): the build below resumes it or says what is wrong

    preset = look_up("scaling-study dataset", study.dataset, STUDY_DATASETS)
    return build_dataset(pool, preset=preset, scheduler=scheduler,
                         deadline=monotonic_deadline(deadline_wall))


def whole_grid(study: StudyPreset) -> StudyPreset:
    """``study`` with the grid the command line can narrow (N, sizes, seeds) restored to its named
    preset's: the grid a results folder's outputs cover."""
    named = STUDY_PRESETS.get(study.name)
    if named is None:
        return study
    return dataclasses.replace(study, n_values=named.n_values, sizes=named.sizes, seeds=named.seeds)


def write_outputs(root: Path, rows: pd.DataFrame, study: StudyPreset, complete: bool) -> dict | None:
    """``scaling.parquet`` and (where rows exist) ``fits.json``; the analysis."""
    with atomic_path(root / "scaling.parquet") as tmp:
        rows.to_parquet(tmp, index=False)
    if rows.empty:
        return None
    analysis = analyse(rows, n_resamples=study.n_resamples)
    write_json_atomic(root / "fits.json", {"study": dataclasses.asdict(study), "complete": complete, **analysis})
    return analysis


def run_study(study: StudyPreset, root, data=None, time_budget: float | None = None, scheduler: str | None = None,
              torch_threads: int = 1, progress: bool = True) -> dict:
    """Plan, run and analyse the study in ``root``; ``{"complete", "jobs", "done", "analysis"}``.
    A time budget that ends it early leaves every finished job and checkpoint for the rerun."""
    from datasets.budget import BudgetExhausted
    from datasets.storage import open_dataset

    root = Path(root).resolve()  # absolute: the jobs may run on other machines' workers
    deadline_wall = None if time_budget is None else time.time() + float(time_budget)
    try:
        pool = ensure_pool(study, root, data, scheduler, deadline_wall).resolve()
    except BudgetExhausted as err:
        print(f"time budget: {err}", file=sys.stderr)
        return {"complete": False, "jobs": 0, "done": 0, "analysis": None}
    dataset_hash = open_dataset(pool).meta["dataset_hash"]
    specs = plan_jobs(study, pool, dataset_hash, root, torch_threads)
    if progress:
        print(describe_plan(study, specs), file=sys.stderr)
    outcomes = run_jobs(specs, deadline_wall, scheduler, progress)
    done = sum(o.status == "done" for o in outcomes)
    # the folder's outputs cover every finished job of the preset's whole grid, so a run of a
    # part of it (--sizes, --n-values, --seeds) adds to the study instead of replacing it
    grid = whole_grid(study)
    mine = {spec.key() for spec in specs}
    others = [finished_outcome(spec) for spec in plan_jobs(grid, pool, dataset_hash, root)
              if spec.key() not in mine] if grid != study else []
    finished = [o for o in outcomes + others if o is not None and o.status == "done"]
    grid_jobs = len(specs) + len(others)
    analysis = write_outputs(root, collect_rows(finished), grid, len(finished) == grid_jobs)
    return {"complete": done == len(specs), "jobs": len(specs), "done": done, "analysis": analysis}


# ---------------------------------------------------------------------------- command line
def _csv(kind, cast=str):
    def parse(text: str):
        try:
            return tuple(cast(item.strip()) for item in text.split(",") if item.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"bad {kind} list {text!r}: {err}") from None
    return parse


def build_parser(prog: str = "python -m benchmark.scaling_study") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke", help=f"study preset: {', '.join(STUDY_PRESETS)} (default smoke)")
    parser.add_argument("--results", type=Path, default=None, help="results folder (default outputs/scaling-<preset>)")
    parser.add_argument("--data", type=Path, default=None,
                        help="pool dataset folder (default <results>/dataset, built when missing)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds; stop cleanly between or within jobs (a rerun continues)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address to run the jobs on")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per job (default 1)")
    parser.add_argument("--n-values", type=_csv("N", int), default=None, help="override N, e.g. 125,250,500")
    parser.add_argument("--sizes", type=_csv("size"), default=None, help=f"override sizes: {', '.join(SIZES)}")
    parser.add_argument("--seeds", type=int, default=None,
                        help="override the seeds per small N (e.g. 1: one complete curve first; a rerun "
                             "without it adds the other seeds, the finished jobs are kept)")
    parser.add_argument("--plan", action="store_true", help="print the jobs' plan and stop")
    return parser


def study_from_args(args) -> StudyPreset:
    study = look_up("scaling-study preset", args.preset, STUDY_PRESETS)
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    overrides = {"n_values": args.n_values, "sizes": args.sizes, "seeds": args.seeds}
    for size in args.sizes or ():
        look_up("scaling-study size", size, SIZES)
    return dataclasses.replace(study, **{k: v for k, v in overrides.items() if v is not None})


def main(argv=None, prog: str = "python -m benchmark.scaling_study") -> int:
    from datasets.cli_errors import run_cli, split_debug

    argv, debug = split_debug(argv)
    args = build_parser(prog).parse_args(argv)
    return run_cli(_command, args, debug)


def _command(args) -> int:
    study = study_from_args(args)
    root = args.results or Path("outputs") / f"scaling-{study.name}"
    if args.plan:
        print(describe_plan(study, plan_jobs(study, args.data or root / "dataset", "(not built)", root, args.threads),
                            validation_size(study)))
        print(describe_states(study, root, args.data))
        return 0
    result = run_study(study, root, data=args.data, time_budget=args.time_budget, scheduler=args.scheduler,
                       torch_threads=args.threads)
    if result["analysis"] is not None:
        print(format_tables(result["analysis"]))
    print(f"{result['done']}/{result['jobs']} jobs finished; results in {root}"
          + ("" if result["complete"] else " (incomplete: rerun to continue)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
