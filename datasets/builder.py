"""Build a dataset on disk: random geometries -> Monte Carlo BSE stacks -> HDF5 shards.

Python API::

    from datasets.builder import build_dataset
    build_dataset("outputs/quick/data", preset="quick")                 # local processes
    build_dataset(out, preset="paper", device="cuda")                   # one process per GPU
    build_dataset(out, preset="paper", scheduler="tcp://host:8786")     # a Dask cluster

Command line: ``python -m datasets build --preset quick --out DIR [--workers N]
[--scheduler ADDRESS] [--device cpu|cuda] [--n-geometries N] [--electrons-per-pixel N]``.

Work is cut into units: one per shard of ``shard_size`` random samples, plus one for the named
cases. Sample ``i``'s geometry is ``random_geometry(seed_i)`` and shard ``k`` is simulated in one
batched ``simulate_stacks`` call with seed ``s_k``, where ``seed_i`` and ``s_k`` are derived from
(dataset seed, stream, index) with ``numpy.random.SeedSequence``: the data do not depend on the
number of workers or on the order in which units finish. Workers only simulate; this process
writes every file once, atomically (``storage.write_shard``), so an interrupted build resumes
where it stopped: a unit whose file exists and matches its recorded sha256 is skipped; a
truncated or corrupt file is deleted and rebuilt.

Test seam: ``simulator=`` (or the environment variable ``BSE_DATASET_SIMULATOR``) names a module
used instead of ``datasets.simulate``; it must define ``simulate_stacks`` (same signature),
``SIMULATOR_VERSION`` and may define ``PhysicsConfig``. The tests use it to plug in a fast fake.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from datasets import storage
from datasets.budget import BudgetExhausted, past
from datasets.presets import DATASET_PRESETS, DatasetPreset, get_preset
from datasets.scene import BLOCK_Z_NM, PAPER_SHAPE_ZYX, block_labels

SIMULATOR_ENV = "BSE_DATASET_SIMULATOR"
DEFAULT_SIMULATOR = "datasets.simulate"
#: Independent random streams derived from the dataset seed.
STREAM_GEOMETRY, STREAM_SHARD_SIMULATION, STREAM_CASE_SIMULATION, STREAM_CASE_REPEAT, STREAM_DOSE_STUDY = 1, 2, 3, 4, 5
LOCK_NAME = ".build.lock"


def derive_seed(dataset_seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for item ``index`` of random ``stream``, a pure function of its arguments."""
    sequence = np.random.SeedSequence(entropy=int(dataset_seed), spawn_key=(int(stream), int(index)))
    return int(sequence.generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class WorkUnit:
    """One file to produce: a shard of random samples, or ``cases.h5``."""

    kind: str  # "shard" | "cases"
    index: int
    file: str  # path relative to the dataset directory
    first_index: int
    n_samples: int
    simulation_seed: int
    preset: DatasetPreset
    device: str
    simulator: str

    @property
    def electrons(self) -> int:
        """Primary electrons this unit simulates."""
        pixels = PAPER_SHAPE_ZYX[1] * PAPER_SHAPE_ZYX[2]
        return self.n_samples * len(self.preset.energies_keV) * pixels * self.preset.electrons_per_pixel


def plan_units(preset: DatasetPreset, device: str, simulator: str) -> list[WorkUnit]:
    """All work units of a dataset, shards first (in order), then the named cases."""
    units = []
    for shard in range(preset.n_shards):
        first = shard * preset.shard_size
        units.append(
            WorkUnit(
                "shard", shard, storage.shard_name(shard), first,
                min(preset.shard_size, preset.n_geometries - first),
                derive_seed(preset.seed, STREAM_SHARD_SIMULATION, shard), preset, device, simulator,
            )
        )
    if preset.cases or preset.dose_study_electrons_per_pixel:
        from datasets.cases import get_case

        n_case_samples = sum(len(get_case(name)) for name in preset.cases) * preset.case_repeats
        if preset.dose_study_electrons_per_pixel:  # counted in primaries of the stored dose
            n_case_samples += round((len(dose_study_test_ids(preset)) + sum(len(get_case(n)) for n in preset.cases))
                                    * preset.dose_study_electrons_per_pixel / preset.electrons_per_pixel)
        units.append(WorkUnit("cases", 0, storage.CASES_NAME, 0, n_case_samples, 0, preset, device, simulator))
    return units


# ----------------------------------------------------------------------------------------------
# Worker side: simulate one unit and return its arrays (no file is written by workers).

_WORKER_DEVICE: str | None = None


def load_simulator(name: str | ModuleType | None = None) -> ModuleType:
    """The simulator module: ``name``, else ``$BSE_DATASET_SIMULATOR``, else ``datasets.simulate``."""
    if isinstance(name, ModuleType):
        module = name
    else:
        module = importlib.import_module(name or os.environ.get(SIMULATOR_ENV) or DEFAULT_SIMULATOR)
    for attribute in ("simulate_stacks", "SIMULATOR_VERSION"):
        if not hasattr(module, attribute):
            raise TypeError(f"simulator module {module.__name__!r} has no {attribute}")
    return module


def physics_config(simulator: ModuleType, preset: DatasetPreset):
    """``PhysicsConfig`` of the preset's physics preset and model names (the simulator's defaults
    where None); a simulator's own config class gets the model fields it declares."""
    import dataclasses

    config_class = getattr(simulator, "PhysicsConfig", None)
    if config_class is None:
        from datasets.physics import PhysicsConfig as config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    names = {f: getattr(preset, f) for f in ("elastic", "stopping", "inelastic", "barrier")
             if getattr(preset, f, None) is not None and f in fields}
    if getattr(preset, "physics", None) is not None and hasattr(config_class, "preset"):
        return config_class.preset(preset.physics, **names)
    return config_class(**names)


def dose_study_test_ids(preset: DatasetPreset) -> list[str]:
    """The test samples simulated again at the dose study's top dose: the first
    ``dose_study_test_samples`` of the test split (a pure function of the preset, as the split)."""
    if not preset.dose_study_electrons_per_pixel:
        return []
    ids = [storage.sample_id(i) for i in range(preset.n_geometries)]
    test = storage.make_splits(ids, preset.test_fraction, preset.val_fraction, preset.seed)["test"]
    return test[: preset.dose_study_test_samples]


def _dose_study_groups(simulator, unit: WorkUnit) -> dict:
    """``dose-study:test`` and ``dose-study:<case>`` groups simulated at the top dose."""
    from datasets.cases import get_case
    from datasets.geometry import random_geometry

    preset, top = unit.preset, unit.preset.dose_study_electrons_per_pixel
    groups = {}
    test_ids = dose_study_test_ids(preset)
    sources = []
    if test_ids:
        drawn = [random_geometry(derive_seed(preset.seed, STREAM_GEOMETRY, int(sid[1:]))) for sid in test_ids]
        sources.append(("test", test_ids, np.stack([g for g, _ in drawn]), [p for _, p in drawn]))
    for name in preset.cases:
        samples = get_case(name)
        sources.append((name, [s.name for s in samples], np.stack([s.geometry for s in samples]),
                        [dict(s.params) for s in samples]))
    for index, (name, ids, geometries, params) in enumerate(sources):
        seed = derive_seed(preset.seed, STREAM_DOSE_STUDY, index)
        bse, counts = _simulate(simulator, geometries, seed, unit, electrons_per_pixel=top)
        arrays = storage.SampleArrays(sample_ids=ids, bse=bse, counts=counts,
                                      label=np.stack([block_labels(g) for g in geometries]),
                                      geometry=geometries, params=params)
        groups[f"{storage.DOSE_STUDY_PREFIX}{name}"] = (arrays, {"simulation_seed": seed, "electrons_per_pixel": top})
    return groups


def _simulate(simulator, geometries: np.ndarray, seed: int, unit: WorkUnit,
              electrons_per_pixel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    preset = unit.preset
    stacks = simulator.simulate_stacks(
        geometries,
        energies_keV=preset.energies_keV,
        electrons_per_pixel=electrons_per_pixel or preset.electrons_per_pixel,
        seed=seed,
        device=_WORKER_DEVICE or unit.device,
        physics=physics_config(simulator, preset),
        cutoff_eV=preset.cutoff_eV,
        progress=False,
    )
    bse = np.stack([stack.bse for stack in stacks]).astype(np.float32)
    counts = None if stacks[0].counts is None else np.stack([stack.counts for stack in stacks])
    return bse, counts


def run_unit(unit: WorkUnit):
    """Simulate one unit; returns ``(unit, SampleArrays)`` or ``(unit, {case: (SampleArrays, attrs)})``."""
    from datasets.geometry import random_geometry

    simulator = load_simulator(unit.simulator)
    if unit.kind == "shard":
        indices = range(unit.first_index, unit.first_index + unit.n_samples)
        seeds = [derive_seed(unit.preset.seed, STREAM_GEOMETRY, i) for i in indices]
        drawn = [random_geometry(seed) for seed in seeds]
        geometries = np.stack([geometry for geometry, _ in drawn])
        bse, counts = _simulate(simulator, geometries, unit.simulation_seed, unit)
        arrays = storage.SampleArrays(
            sample_ids=[storage.sample_id(i) for i in indices],
            bse=bse,
            counts=counts,
            label=np.stack([block_labels(g) for g in geometries]),
            geometry=geometries,
            params=[params for _, params in drawn],
            seeds=np.asarray(seeds, dtype=np.uint64),
        )
        return unit, arrays

    from datasets.cases import get_case, repeat_id

    cases = {}
    repeats = unit.preset.case_repeats
    for case_index, name in enumerate(unit.preset.cases):
        samples = get_case(name)
        geometries = np.stack([sample.geometry for sample in samples])
        # repeat 0 keeps the seed of a dataset without repeats; repeat r its own stream item
        seeds = [derive_seed(unit.preset.seed, STREAM_CASE_SIMULATION, case_index)]
        seeds += [derive_seed(unit.preset.seed, STREAM_CASE_REPEAT, case_index * 10_000 + r) for r in range(1, repeats)]
        simulated = [_simulate(simulator, geometries, seed, unit) for seed in seeds]
        arrays = storage.SampleArrays(
            sample_ids=[repeat_id(sample.name, r) for r in range(repeats) for sample in samples],
            bse=np.concatenate([bse for bse, _ in simulated]),
            counts=None if simulated[0][1] is None else np.concatenate([counts for _, counts in simulated]),
            label=np.tile(np.stack([sample.label for sample in samples]), (repeats, 1, 1, 1)),
            geometry=np.tile(geometries, (repeats, 1, 1, 1)),
            params=[{**dict(sample.params), **({"repeat": r} if r else {})}
                    for r in range(repeats) for sample in samples],
        )
        attrs = {"simulation_seed": seeds[0]}
        if repeats > 1:
            attrs["repeat_seeds"] = np.asarray(seeds, dtype=np.uint64)
        cases[name] = (arrays, attrs)
    if unit.preset.dose_study_electrons_per_pixel:
        cases.update(_dose_study_groups(simulator, unit))
    return unit, cases


def exit_with_parent(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """End this process when ``parent_pid`` dies (SIGKILL of a build must not leave orphans).

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``); a
    daemon thread that watches the parent id covers other systems and the race at start-up.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll_seconds)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(device_queue, cpu_threads: int, parent_pid: int) -> None:
    """Pool initialiser: the worker's share of the CPU cores, and one GPU per worker on CUDA.

    Workers ignore Ctrl-C (the parent stops them and keeps what was written) and exit when the
    parent dies."""
    global _WORKER_DEVICE
    from datasets.kernel import set_cpu_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)
    torch.set_num_threads(1)
    set_cpu_threads(cpu_threads)
    if device_queue is not None:
        _WORKER_DEVICE = device_queue.get()


def _local_results(units: list[WorkUnit], workers: int, device: str):
    """Yield ``run_unit`` results as they finish, in this process or in a spawn process pool."""
    if workers == 1:
        for unit in units:
            yield run_unit(unit)
        return
    context = multiprocessing.get_context("spawn")
    device_queue = None
    if torch.device(device).type == "cuda" and torch.device(device).index is None:
        device_queue = context.Queue()
        for gpu in range(workers):
            device_queue.put(f"cuda:{gpu % max(torch.cuda.device_count(), 1)}")
    cpu_threads = max(1, (os.cpu_count() or 1) // workers)
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(device_queue, cpu_threads, os.getpid()))
    stopped = False
    try:
        pending = {executor.submit(run_unit, unit) for unit in units}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BaseException:  # Ctrl-C or an error: stop the workers now, keep what was written
        stopped = True
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        raise
    finally:
        executor.shutdown(wait=not stopped, cancel_futures=True)


def _dask_results(units: list[WorkUnit], scheduler: str):
    """Yield ``run_unit`` results computed on an existing Dask distributed cluster."""
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = [client.submit(run_unit, unit, pure=False) for unit in units]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures)


# ----------------------------------------------------------------------------------------------
# Driver


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _versions() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "h5py": h5py.__version__,
    }


def _check_device(device: str) -> str:
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use 'cpu' or 'cuda'")
    return kind


def _content_fields(preset: DatasetPreset, simulator: ModuleType, device_type: str) -> dict:
    """Manifest entries that decide the data; a resumed build must match them exactly."""
    return {
        "settings": preset.settings(),
        "physics": physics_config(simulator, preset).describe(),
        "simulator": {"module": simulator.__name__, "version": str(simulator.SIMULATOR_VERSION)},
        "device_type": device_type,
    }


def _differences(old: dict, new: dict, prefix="") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _start_manifest(out: Path, preset: DatasetPreset, content: dict) -> dict:
    """Load the manifest of an earlier (possibly interrupted) build, or write a new one."""
    path = out / storage.MANIFEST_NAME
    manifest, recovered = None, False
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (UnicodeDecodeError, ValueError) as err:
            # the shards carry their own checksums and settings: keep the good ones, rebuild the manifest
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            os.replace(path, aside)
            print(f"{path} is corrupt ({err}); kept as {aside.name}, rebuilding the manifest from the "
                  "verified shards (shards of other settings are rebuilt)", file=sys.stderr)
            manifest, recovered = None, True
    if manifest is not None:
        old = {key: manifest.get(key) for key in content}
        differences = _differences(old, content)
        if differences:
            raise ValueError(
                f"{out} holds a dataset built with other settings ({'; '.join(differences)}); "
                "choose another --out directory or delete the old dataset"
            )
        return manifest
    manifest = {
        "format": storage.FORMAT_NAME,
        "format_version": storage.FORMAT_VERSION,
        "complete": False,
        "preset": preset.name,
        **content,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    storage.atomic_write_json(path, manifest)
    if recovered:
        manifest["rebuilt_manifest"] = True  # in memory only: check every file's settings strictly
    return manifest


def _ensure_splits(out: Path, preset: DatasetPreset) -> tuple[dict, str]:
    """Write ``splits.json`` once (a pure function of ids, fractions and seed); return it and its sha256."""
    ids = [storage.sample_id(i) for i in range(preset.n_geometries)]
    path = out / storage.SPLITS_NAME
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise storage.DatasetError(f"{path} is corrupt: {err}") from err
        storage.check_splits(splits, ids, where=str(path))
    else:
        splits = storage.make_splits(ids, preset.test_fraction, preset.val_fraction, preset.seed)
        storage.atomic_write_json(path, splits)
    return splits, storage.sha256_file(path)


def _unit_attrs(unit: WorkUnit, content: dict) -> dict:
    """The HDF5 attributes that tie a unit's file to the settings that made it."""
    preset = unit.preset
    attrs = {
        "energies_keV": np.asarray(preset.energies_keV, dtype=np.float64),
        "electrons_per_pixel": preset.electrons_per_pixel,
        "cutoff_eV": preset.cutoff_eV,
        "content_json": json.dumps(content, sort_keys=True, default=str),
    }
    if unit.kind == "shard":
        attrs.update(shard_index=unit.index, first_index=unit.first_index, simulation_seed=np.uint64(unit.simulation_seed))
    return attrs


def _attrs_mismatch(path: Path, expected: dict, strict: bool) -> str | None:
    """Why the file's attributes differ from ``expected`` (``None`` when they agree). Files of
    builds before ``content_json`` existed pass unless ``strict`` (no intact manifest vouches for them)."""
    try:
        with h5py.File(path, "r") as h5:
            for key, value in expected.items():
                if key not in h5.attrs:
                    if key == "content_json" and not strict:
                        continue
                    return f"{path} has no '{key}' attribute"
                stored = h5.attrs[key]
                stored = stored.decode() if isinstance(stored, bytes) else stored
                if isinstance(value, str) or isinstance(stored, str):
                    same = str(stored) == str(value)
                else:
                    same = np.array_equal(np.asarray(stored), np.asarray(value))
                if not same:
                    return f"{path} was built with other settings ('{key}' differs)"
    except OSError as err:
        return f"{path} is unreadable ({err})"
    return None


def _finished_entry(out: Path, unit: WorkUnit, content: dict, strict: bool = False) -> dict | None:
    """Manifest entry of a unit whose file verifies against its checksum and was made with these
    settings; else delete its leftovers."""
    path = out / unit.file
    verdict = storage.verify_file(path, storage.read_checksum(path))
    if verdict is None:
        verdict = _attrs_mismatch(path, _unit_attrs(unit, content), strict)
    if verdict is None:
        return {"file": unit.file, "sha256": storage.read_checksum(path), "bytes": path.stat().st_size}
    if path.exists() or storage.checksum_path(path).exists():
        print(f"rebuilding: {verdict}", file=sys.stderr)
        path.unlink(missing_ok=True)
        storage.checksum_path(path).unlink(missing_ok=True)
    return None


def _write_unit(out: Path, unit: WorkUnit, payload, content: dict) -> dict:
    path = out / unit.file
    attrs = _unit_attrs(unit, content)
    if unit.kind == "shard":
        checksum = storage.write_shard(path, payload, attrs)
    else:
        checksum = storage.write_cases(path, payload, attrs)
    return {"file": unit.file, "sha256": checksum, "bytes": path.stat().st_size}


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
                raise storage.DatasetError(f"another build is writing {out}; wait for it to finish") from err
            print(f"another build is writing {out}: waiting for it to finish, then reusing its data",
                  file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _remove_stale_temporaries(out: Path) -> None:
    for directory in (out, out / storage.SHARDS_DIR):
        for tmp in directory.glob("*.tmp-*"):
            tmp.unlink(missing_ok=True)


def build_dataset(out_dir, preset="quick", workers: int | None = None, scheduler: str | None = None,
                  device: str = "cpu", progress: bool = True, simulator=None, wait_for_lock: bool = False,
                  deadline: float | None = None, **overrides) -> Path:
    """Build (or resume, or verify) the dataset of ``preset`` in ``out_dir``; return its path.

    ``preset``: a name in ``DATASET_PRESETS`` or a ``DatasetPreset``; ``overrides``: preset fields
    to replace (e.g. ``n_geometries=200``). ``workers``: local processes (default: 1 on CPU,
    which runs in this process with the kernel's threads on every core; GPUs on CUDA). ``scheduler``: address of a Dask distributed
    scheduler to run the units on instead. ``simulator``: test seam (module docstring).
    ``wait_for_lock``: when another build holds ``out_dir``, wait for it instead of failing.
    ``deadline`` (``time.monotonic()`` seconds): stop before a unit that would end after it,
    keeping the finished shards, and raise ``datasets.budget.BudgetExhausted`` (a rerun resumes).
    """
    preset = get_preset(preset, **overrides)
    device_type = _check_device(device)
    simulator_module = load_simulator(simulator)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / storage.SHARDS_DIR).mkdir(exist_ok=True)
    start = time.perf_counter()
    with _build_lock(out, wait=wait_for_lock):
        _remove_stale_temporaries(out)
        content = _content_fields(preset, simulator_module, device_type)
        manifest = _start_manifest(out, preset, content)
        splits, splits_sha256 = _ensure_splits(out, preset)

        units = plan_units(preset, device, simulator_module.__name__)
        strict = bool(manifest.pop("rebuilt_manifest", False))
        entries = {unit.file: _finished_entry(out, unit, content, strict) for unit in units}
        todo = [unit for unit in units if entries[unit.file] is None]
        if not todo and manifest.get("complete"):
            return out
        if manifest.get("complete"):  # a file went bad: the dataset is unusable until it is rebuilt
            manifest["complete"] = False
            storage.atomic_write_json(out / storage.MANIFEST_NAME, manifest)
        if scheduler is None:
            if workers is None:
                # CPU: this process, the kernel's threads on every core; CUDA: one process per GPU
                workers = torch.cuda.device_count() if device_type == "cuda" else 1
            if int(workers) != workers or workers < 1:
                raise ValueError(f"workers must be a positive integer, got {workers!r}")
            workers = max(1, min(int(workers), len(todo)))
            results = _local_results(todo, workers, device) if todo else iter(())
        else:
            results = _dask_results(todo, scheduler)

        bar = tqdm(total=len(units), initial=len(units) - len(todo), unit="shard", desc=f"build {preset.name}",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        electrons = 0
        done = 0
        with bar:
            for unit, payload in results:
                entries[unit.file] = _write_unit(out, unit, payload, content)
                electrons += unit.electrons
                done += 1
                bar.set_postfix_str(f"{electrons / (time.perf_counter() - start):.3g} e-/s")
                bar.update(1)
                if done < len(todo) and past(deadline, (time.perf_counter() - start) / done):
                    results.close()  # stops the workers; the finished shards stay
                    raise BudgetExhausted(f"dataset build stopped by the time budget after {done} of {len(todo)} "
                                          f"remaining units ({len(units) - len(todo) + done}/{len(units)} done); "
                                          "rerun to continue")

        manifest = _complete_manifest(manifest, preset, units, entries, splits, splits_sha256,
                                      time.perf_counter() - start)
        manifest["device"] = str(device) if scheduler is None else f"{device} (dask {scheduler})"
        storage.atomic_write_json(out / storage.MANIFEST_NAME, manifest)
    return out


def _complete_manifest(manifest: dict, preset: DatasetPreset, units: list[WorkUnit], entries: dict,
                       splits: dict, splits_sha256: str, seconds: float) -> dict:
    split_sizes = {name: len(splits[name]) for name in storage.SPLIT_NAMES}
    n_energies = len(preset.energies_keV)
    image_shape = list(PAPER_SHAPE_ZYX[1:])
    label_shape = [BLOCK_Z_NM[1] - BLOCK_Z_NM[0], *PAPER_SHAPE_ZYX[1:]]
    pixels = image_shape[0] * image_shape[1]
    shards = [
        {**entries[u.file], "first_index": u.first_index, "n_samples": u.n_samples, "simulation_seed": u.simulation_seed}
        for u in units if u.kind == "shard"
    ]
    cases = None
    if preset.cases or preset.dose_study_electrons_per_pixel:
        cases_unit = next(u for u in units if u.kind == "cases")
        cases = {**entries[cases_unit.file], "names": list(preset.cases), "n_samples": cases_unit.n_samples}
        if preset.dose_study_electrons_per_pixel:
            cases["dose_study"] = {"electrons_per_pixel": preset.dose_study_electrons_per_pixel,
                                   "groups": (["test"] if dose_study_test_ids(preset) else []) + list(preset.cases),
                                   "test_ids": dose_study_test_ids(preset)}
    manifest = {
        **manifest,
        "complete": True,
        "n_samples": preset.n_geometries,
        "energies_keV": list(preset.energies_keV),
        "electrons_per_pixel": preset.electrons_per_pixel,
        "cutoff_eV": preset.cutoff_eV,
        "dataset_seed": preset.seed,
        "image_shape": image_shape,
        "label_shape": label_shape,
        "geometry_shape": list(PAPER_SHAPE_ZYX),
        "sample_nbytes": n_energies * pixels * 8 + int(np.prod(label_shape)) + int(np.prod(PAPER_SHAPE_ZYX)),
        "shards": shards,
        "cases": cases,
        "splits_sha256": splits_sha256,
        "split_sizes": split_sizes,
        "git_commit": _git_commit(),
        "versions": _versions(),
        "last_build_seconds": round(seconds, 2),
        "completed_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["dataset_hash"] = storage.dataset_hash(manifest, splits_sha256)
    return manifest


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
        electrons_per_pixel=args.electrons_per_pixel,
        seed=args.seed,
    )
    dataset = storage.open_dataset(path)
    sizes = ", ".join(f"{name} {len(ids)}" for name, ids in dataset.splits.items())
    print(f"dataset {path}: {len(dataset)} samples ({sizes}), cases {dataset.cases()}, hash {dataset.hash[:16]}")
    return 0


def register_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="build (or resume) a simulated dataset of a preset",
        description="Simulate a preset's random geometries and named cases into HDF5 shards; resumable.",
    )
    parser.add_argument("--data-preset", "--preset", dest="preset", default="quick", choices=sorted(DATASET_PRESETS),
                        help="dataset preset (default quick; --preset: the earlier name)")
    parser.add_argument("--data", "--out", dest="out", required=True, type=Path,
                        help="dataset directory (--out: the earlier name)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: 1 on CPU, using every core; one per GPU)")
    parser.add_argument("--scheduler", default=None, help="address of a Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--n-geometries", type=int, default=None, help="override the preset's number of geometries")
    parser.add_argument("--electrons-per-pixel", type=int, default=None, help="override the preset's electrons per pixel")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's dataset seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cmd_build)
