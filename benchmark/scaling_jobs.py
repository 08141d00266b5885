"""One job of the scaling study (``benchmark/scaling_study.py``): train one model on one nested
training subset, select its threshold on the validation split, score it on the evaluation set.

A job is a pure function of its :class:`JobSpec` (the dataset, the network and config, the
training-set size N, the seed, the training settings), so it gives the same rows wherever it
runs: in this process or on a Dask worker. It lives in its own folder ``jobs/<name>-<key>/``
(``key``: hash of everything the result depends on):

- ``model/``: the training folder (``methods.training`` checkpoints; an interrupted job resumes
  there exactly);
- ``rows.parquet``: one row per evaluation sample (columns: ``ROW_COLUMNS``);
- ``job.json``: the spec, the training summary and the selected threshold, written last: a job
  is finished when its ``job.json`` exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datasets.budget import past
from datasets.files import atomic_path, write_json_atomic

#: bump when a job's computation changes: every job gets a new key and reruns
JOB_FORMAT = 1
#: rows.parquet columns that a rerun reproduces exactly (the result)
RESULT_COLUMNS: list[str] = [
    "network", "label", "config", "size", "parameters", "n_train", "seed", "sample", "iou",
    "iou_fixed_threshold", "threshold", "val_miou", "epochs", "epochs_run", "steps", "step_rule",
    "simulated_electrons_per_pixel", "read_electrons_per_pixel", "dataset_hash", "job_key",
]
#: rows.parquet columns that depend on the machine and its load
TIMING_COLUMNS: list[str] = ["train_seconds", "job_seconds"]
ROW_COLUMNS: list[str] = RESULT_COLUMNS + TIMING_COLUMNS
#: spec fields that do not change the result (left out of the key)
_RUN_ONLY_FIELDS = ("dataset", "root", "torch_threads")


@dataclass(frozen=True)
class JobSpec:
    """Everything one job needs; ``key()`` hashes the fields that decide its result."""

    network: str  #: registry name: ``bsevox`` or ``unet3d``
    config: str  #: the network's config (``CONFIGS``)
    size: str  #: the study's size label, e.g. ``0.3M``
    n_train: int  #: training-set size N: the first N ids of the seeded order
    seed: int  #: weight init and batch order
    subset_seed: int  #: seed of the training ids' order (shared by every job of a study)
    epochs: int  #: from the step-budget rule
    steps: int  #: optimiser steps the rule budgets (epochs x batches per epoch)
    step_rule: str  #: the rule, in words
    train_preset: str  #: ``methods.training.TRAIN_PRESETS`` name (lr, schedule, losses)
    batch_size: int
    dataset_hash: str
    dataset: str = ""  #: path of the pool dataset
    root: str = ""  #: the study's results folder
    torch_threads: int = 1

    def key(self) -> str:
        content = {k: v for k, v in asdict(self).items() if k not in _RUN_ONLY_FIELDS}
        content["job_format"] = JOB_FORMAT
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def folder(self) -> Path:
        return Path(self.root) / "jobs" / f"{self.network}-{self.config}-n{self.n_train}-s{self.seed}-{self.key()}"


@dataclass(frozen=True)
class JobOutcome:
    """What a job returned: ``status`` ``done`` (with its rows), ``interrupted`` or ``not started``."""

    key: str
    status: str
    rows: pd.DataFrame | None = None
    seconds: float = 0.0


class InMemorySplit(torch.utils.data.Dataset):
    """A split as arrays, in the form ``Method.fit`` takes: items ``{"bse", "label"}`` and the
    beam energies as ``energies_keV``."""

    def __init__(self, bse: np.ndarray, labels: np.ndarray, ids: list[str], energies_keV):
        self.bse, self.labels, self.ids = bse, labels, list(ids)
        self.energies_keV = np.asarray(energies_keV, dtype=float)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"bse": self.bse[index], "label": self.labels[index], "id": self.ids[index]}


# ---------------------------------------------------------------------------- the pool's parts
def training_order(train_ids, subset_seed: int) -> list[str]:
    """The pool's training ids in one seeded random order: subset N is its first N ids, so the
    subsets are nested by construction. A pure function of the set of ids and the seed."""
    ids = sorted(train_ids)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=int(subset_seed), spawn_key=(0x5CA1E,)))
    return [ids[i] for i in rng.permutation(len(ids))]


def nested_subset(train_ids, n_train: int, subset_seed: int) -> list[str]:
    """The first ``n_train`` ids of :func:`training_order`."""
    order = training_order(train_ids, subset_seed)
    if not 0 < n_train <= len(order):
        raise ValueError(f"training-set size {n_train} outside 1..{len(order)} (the pool's training split)")
    return order[:n_train]


def read_split(dataset, ids: list[str]) -> InMemorySplit:
    """Samples ``ids`` of ``dataset`` (at its read dose) as one in-memory split."""
    items = [dataset.sample(sid) for sid in ids]
    bse = np.stack([np.asarray(item["bse"], np.float32) for item in items])
    labels = np.stack([np.asarray(item["label"], np.float32) for item in items])
    return InMemorySplit(bse, labels, ids, dataset.energies_keV)


def dataset_doses(dataset) -> tuple[int, int]:
    """(simulated, read) e-/pixel of a pool dataset (``datasets.protocol.Dataset``)."""
    return int(dataset.simulated_electrons_per_pixel), int(dataset.read_electrons_per_pixel)


# ---------------------------------------------------------------------------- one job
@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch on ``n`` CPU threads inside the block (equal thread counts: equal arithmetic)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_method(spec: JobSpec):
    from methods import registry

    return registry.create(spec.network, config=spec.config, preset=spec.train_preset, epochs=spec.epochs,
                           batch_size=spec.batch_size, seed=spec.seed)


def monotonic_deadline(deadline_wall: float | None) -> float | None:
    """A ``time.time()`` deadline (comparable across processes and machines) as ``time.monotonic()``."""
    return None if deadline_wall is None else time.monotonic() + (deadline_wall - time.time())


def score(method, val: InMemorySplit, evaluation: InMemorySplit) -> tuple[float, np.ndarray, np.ndarray]:
    """(threshold chosen on ``val``, IoU per evaluation sample at it, IoU at 0.5)."""
    from methods.binarize import choose_threshold, iou_per_sample

    threshold = choose_threshold(method.reconstruct(val.bse, val.energies_keV), val.labels)
    prob = method.reconstruct(evaluation.bse, evaluation.energies_keV)
    return threshold, iou_per_sample(prob >= threshold, evaluation.labels), iou_per_sample(prob >= 0.5, evaluation.labels)


def job_rows(spec: JobSpec, method, summary: dict, scores, doses, seconds: float) -> pd.DataFrame:
    threshold, iou, iou_half, eval_ids = scores
    simulated_electrons_per_pixel, read_electrons_per_pixel = doses
    constant = {
        "network": spec.network, "label": method.label, "config": spec.config, "size": spec.size,
        "parameters": int(summary["parameters"]), "n_train": spec.n_train, "seed": spec.seed,
        "threshold": float(threshold), "val_miou": summary.get("best_val_miou"), "epochs": spec.epochs,
        "epochs_run": int(summary["epochs_run"]), "steps": spec.steps, "step_rule": spec.step_rule,
        "simulated_electrons_per_pixel": simulated_electrons_per_pixel,
        "read_electrons_per_pixel": read_electrons_per_pixel, "dataset_hash": spec.dataset_hash,
        "job_key": spec.key(), "train_seconds": float(summary["train_seconds"]), "job_seconds": seconds,
    }
    rows = pd.DataFrame({"sample": eval_ids, "iou": iou.astype(float), "iou_fixed_threshold": iou_half.astype(float)})
    for column, value in constant.items():
        rows[column] = value
    return rows[ROW_COLUMNS]


def finished_outcome(spec: JobSpec) -> JobOutcome | None:
    """The outcome of a finished job (its ``job.json`` written), else None."""
    folder = spec.folder()
    if not (folder / "job.json").is_file():
        return None
    record = json.loads((folder / "job.json").read_text())
    return JobOutcome(spec.key(), "done", pd.read_parquet(folder / "rows.parquet"), float(record["job_seconds"]))


def job_state(spec: JobSpec) -> str:
    """Where a job stands in its folder: ``done (mIoU 0.574; last run 6.2 min)`` (the run that
    finished it, after any resume), ``checkpoint at epoch 19/50`` or ``not started``."""
    done = finished_outcome(spec)
    if done is not None:
        return f"done (mIoU {done.rows['iou'].mean():.3f}; last run {done.seconds / 60:.1f} min)"
    history = spec.folder() / "model" / "history.csv"
    if history.is_file():
        epochs = max(len(history.read_text().strip().splitlines()) - 1, 0)
        return f"checkpoint at epoch {epochs}/{spec.epochs}"
    return "not started"


def run_job(spec: JobSpec, deadline_wall: float | None = None) -> JobOutcome:
    """Train and score one job (or read it when finished). ``deadline_wall`` (``time.time()``):
    not started past it, and training stops cleanly between epochs before it (resumed by a rerun)."""
    done = finished_outcome(spec)
    if done is not None:
        return done
    deadline = monotonic_deadline(deadline_wall)
    if past(deadline):
        return JobOutcome(spec.key(), "not started")
    tic = time.perf_counter()
    with torch_threads(spec.torch_threads):
        rows, record = _train_and_score(spec, deadline, tic)
    if rows is None:
        return JobOutcome(spec.key(), "interrupted", seconds=time.perf_counter() - tic)
    folder = spec.folder()
    with atomic_path(folder / "rows.parquet") as tmp:
        rows.to_parquet(tmp, index=False)
    write_json_atomic(folder / "job.json", record)
    return JobOutcome(spec.key(), "done", rows, record["job_seconds"])


def _train_and_score(spec: JobSpec, deadline: float | None, tic: float):
    """(rows, job record), or (None, None) when the deadline interrupted the training."""
    from datasets.storage import open_dataset

    dataset = open_dataset(spec.dataset)
    if dataset.meta["dataset_hash"] != spec.dataset_hash:
        raise ValueError(f"{spec.dataset} changed since the study was planned (dataset hash differs)")
    train = read_split(dataset, nested_subset(dataset.split_ids("train"), spec.n_train, spec.subset_seed))
    val = read_split(dataset, dataset.split_ids("val"))
    method = make_method(spec)
    summary = method.fit(train, val, out_dir=spec.folder() / "model", progress=False, resume=True, deadline=deadline)
    if "interrupted_at_epoch" in summary:
        return None, None
    evaluation = read_split(dataset, dataset.split_ids("test"))
    threshold, iou, iou_half = score(method, val, evaluation)
    seconds = time.perf_counter() - tic
    rows = job_rows(spec, method, summary, (threshold, iou, iou_half, evaluation.ids), dataset_doses(dataset), seconds)
    record = {"spec": asdict(spec), "key": spec.key(), "threshold": threshold, "job_seconds": seconds,
              "summary": summary, "created_utc": pd.Timestamp.now("UTC").isoformat()}
    return rows, record
