"""Build a dataset on disk: random geometries -> Monte Carlo BSE stacks -> HDF5 shards.

Python API::

    from datasets.builder import build_dataset
    build_dataset("outputs/quick/data", preset="quick")                 # local processes
    build_dataset(out, preset="paper", device="cuda")                   # one process per GPU
    build_dataset(out, preset="paper", scheduler="tcp://host:8786")     # a Dask cluster

Command line: ``python -m datasets build --preset quick --out DIR [--workers N]
[--scheduler ADDRESS] [--device cpu|cuda] [--n-geometries N] [--electrons-per-pixel N]``.

Work is cut into units (``datasets.build_units``): one per shard of ``shard_size`` random
samples, plus one for the named cases; the data do not depend on the number of workers or on the
order in which units finish. Workers (``datasets.build_workers``) only simulate; this process
writes every file once, atomically (``datasets.dataset_format.write_shard``), so an interrupted
build resumes where it stopped: a unit whose file exists, matches its recorded sha256 and was
made with these settings is skipped; a truncated, corrupt or foreign file is deleted and rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from datasets import build_manifest
from datasets.budget import BudgetExhausted, past
from datasets.build_units import (  # noqa: F401 - the build's seeds and streams, for tests and callers
    SIMULATOR_ENV,
    STREAM_GEOMETRY,
    STREAM_SHARD_SIMULATION,
    derive_seed,
    load_simulator,
    plan_units,
)
from datasets.build_workers import _dask_results, _local_results
from datasets.dataset_format import MANIFEST_NAME, SHARDS_DIR, DatasetError
from datasets.files import write_json_atomic
from datasets.presets import DATASET_PRESETS, get_preset
from datasets.provenance import check_device
from datasets.storage import open_dataset

LOCK_NAME = ".build.lock"


@contextlib.contextmanager
def _build_lock(out: Path, wait: bool = False):
    """Hold an exclusive lock on ``out`` so that two builds never write the same directory.

    ``wait``: wait (with a message) for another build to finish instead of failing; the data it
    wrote are then reused."""
    with open(out / LOCK_NAME, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            if not wait:
                raise DatasetError(f"another build is writing {out}; wait for it to finish") from err
            print(f"another build is writing {out}: waiting for it to finish, then reusing its data",
                  file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of writes that a killed build left (``datasets.files.atomic_path`` names)."""
    for directory in (out, out / SHARDS_DIR):
        for tmp in directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _results(todo, workers, scheduler, device: str, device_type: str):
    """``run_unit`` results of the units ``todo``: local processes, or a Dask cluster."""
    if scheduler is not None:
        return _dask_results(todo, scheduler)
    if workers is None:
        # CPU: this process, the kernel's threads on every core; CUDA: one process per GPU
        workers = torch.cuda.device_count() if device_type == "cuda" else 1
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    workers = max(1, min(int(workers), len(todo)))
    return _local_results(todo, workers, device) if todo else iter(())


def _write_results(out: Path, results, units, n_todo: int, content: dict, entries: dict, progress: bool,
                   label: str, deadline: float | None, start: float) -> None:
    """Write each unit's file as its result arrives (into ``entries``); stop before ``deadline``."""
    bar = tqdm(total=len(units), initial=len(units) - n_todo, unit="shard", desc=label,
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    electrons = 0
    done = 0
    with bar:
        for unit, payload in results:
            entries[unit.file] = build_manifest.write_unit(out, unit, payload, content)
            electrons += unit.electrons
            done += 1
            bar.set_postfix_str(f"{electrons / (time.perf_counter() - start):.3g} e-/s")
            bar.update(1)
            if done < n_todo and past(deadline, (time.perf_counter() - start) / done):
                results.close()  # stops the workers; the finished shards stay
                raise BudgetExhausted(f"dataset build stopped by the time budget after {done} of {n_todo} "
                                      f"remaining units ({len(units) - n_todo + done}/{len(units)} done); "
                                      "rerun to continue")


def build_dataset(out_dir, preset="quick", workers: int | None = None, scheduler: str | None = None,
                  device: str = "cpu", progress: bool = True, simulator=None, wait_for_lock: bool = False,
                  deadline: float | None = None, **overrides) -> Path:
    """Build (or resume, or verify) the dataset of ``preset`` in ``out_dir``; return its path.

    ``preset``: a name in ``DATASET_PRESETS`` or a ``DatasetPreset``; ``overrides``: preset fields
    to replace (e.g. ``n_geometries=200``). ``workers``: local processes (default: 1 on CPU,
    which runs in this process with the kernel's threads on every core; GPUs on CUDA). ``scheduler``: address of a Dask distributed
    scheduler to run the units on instead. ``simulator``: test seam (``datasets.build_units``).
    ``wait_for_lock``: when another build holds ``out_dir``, wait for it instead of failing.
    ``deadline`` (``time.monotonic()`` seconds): stop before a unit that would end after it,
    keeping the finished shards, and raise ``datasets.budget.BudgetExhausted`` (a rerun resumes).
    """
    preset = get_preset(preset, **overrides)
    device_type = check_device(device, backend="torch").split(":")[0]
    simulator_module = load_simulator(simulator)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS_DIR).mkdir(exist_ok=True)
    start = time.perf_counter()
    with _build_lock(out, wait=wait_for_lock):
        _remove_stale_temporaries(out)
        content = build_manifest.content_fields(preset, simulator_module, device_type)
        manifest = build_manifest.start_manifest(out, preset, content)
        splits, splits_sha256 = build_manifest.ensure_splits(out, preset)
        units = plan_units(preset, device, simulator_module.__name__)
        entries = {unit.file: build_manifest.finished_entry(out, unit, content) for unit in units}
        todo = [unit for unit in units if entries[unit.file] is None]
        if not todo and manifest.get("complete"):
            return out
        if manifest.get("complete"):  # a file went bad: the dataset is unusable until it is rebuilt
            manifest["complete"] = False
            write_json_atomic(out / MANIFEST_NAME, manifest)
        results = _results(todo, workers, scheduler, device, device_type)
        _write_results(out, results, units, len(todo), content, entries, progress, f"build {preset.name}",
                       deadline, start)
        manifest = build_manifest.complete_manifest(manifest, preset, units, entries, splits, splits_sha256,
                                                    time.perf_counter() - start)
        manifest["device"] = str(device) if scheduler is None else f"{device} (dask {scheduler})"
        write_json_atomic(out / MANIFEST_NAME, manifest)
    return out


# ----------------------------------------------------------------------------------------------
# Command line


def _cmd_build(args) -> int:
    path = build_dataset(
        args.out,
        preset=args.preset,
        workers=args.workers,
        scheduler=args.scheduler,
        device=args.device,
        progress=not args.quiet,
        n_geometries=args.n_geometries,
        simulated_electrons_per_pixel=args.electrons_per_pixel,
        seed=args.seed,
    )
    dataset = open_dataset(path)
    sizes = ", ".join(f"{name} {len(ids)}" for name, ids in dataset.splits.items())
    print(f"dataset {path}: {len(dataset)} samples ({sizes}), cases {dataset.cases()}, hash {dataset.hash[:16]}")
    return 0


def register_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="build (or resume) a simulated dataset of a preset",
        description="Simulate a preset's random geometries and named cases into HDF5 shards; resumable.",
    )
    parser.add_argument("--data-preset", "--preset", dest="preset", default="quick", choices=sorted(DATASET_PRESETS),
                        help="dataset preset (default quick; also --preset)")
    parser.add_argument("--data", "--out", dest="out", required=True, type=Path,
                        help="dataset directory (also --out)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: 1 on CPU, using every core; one per GPU)")
    parser.add_argument("--scheduler", default=None, help="address of a Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--n-geometries", type=int, default=None, help="override the preset's number of geometries")
    parser.add_argument("--electrons-per-pixel", type=int, default=None, help="override the preset's simulated electrons per pixel")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's dataset seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cmd_build)
