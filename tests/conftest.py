"""Shared pytest fixtures.

``synthetic_results``: a factory writing a small benchmark results folder in the layout of
docs/architecture.md and benchmark/cache.py, with made-up but self-consistent volumes and scores,
for the report tests (no simulation, no training). Its rows are ``benchmark.schema.ResultRow``
objects, so they have exactly the columns the harness writes.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.schema import ResultRow, normalise_rows
from methods.base import label_of

ENERGIES_KEV = np.round(np.arange(1, 21) * 0.5, 1)
BLOCK = 20  # voxels per side of the Si block (1 nm each)
# flip probability near the Cu surface: the "quality" of each synthetic method
METHOD_NOISE = {"medsem": 0.6, "unet3d": 0.25, "bsevox": 0.1}
#: the dose of the synthetic stacks (e-/pixel, the smoke preset's), simulated and read
ELECTRONS_PER_PIXEL = 2


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests run torch on one thread: the small kernels gain nothing from more, and two threads
    on the project's 2-core machines ran tens of times slower (see README, CPU threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _nanocube(position: int) -> np.ndarray:
    gt = np.zeros((BLOCK,) * 3, np.uint8)
    start = 1 + 4 * (position - 1)
    gt[start:start + 5, start:start + 5, start:start + 5] = 1
    return gt


def _nanowire(radius_nm: int) -> np.ndarray:
    y, x = np.mgrid[:BLOCK, :BLOCK] + 0.5
    disk = (y - BLOCK / 2) ** 2 + (x - BLOCK / 2) ** 2 <= radius_nm**2
    return np.broadcast_to(disk, (BLOCK, BLOCK, BLOCK)).astype(np.uint8)


def _blob(rng: np.random.Generator) -> np.ndarray:
    z, y, x = np.mgrid[:BLOCK, :BLOCK, :BLOCK] + 0.5
    centre = rng.uniform(5, 15, size=3)
    radius = rng.uniform(3, 6)
    return (((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
            <= radius**2).astype(np.uint8)


def _case_volumes(case: str, rng) -> tuple[list[str], np.ndarray]:
    if case == "nanocube":
        return [f"position{p}" for p in range(1, 5)], np.stack([_nanocube(p) for p in range(1, 5)])
    if case == "nanowire":
        radii = (2, 4, 6, 8, 10)
        return [f"radius{r}nm" for r in radii], np.stack([_nanowire(r) for r in radii])
    ids = [f"test-{i:03d}" for i in range(6)]
    return ids, np.stack([_blob(rng) for _ in ids])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def _scores(pred: np.ndarray, gt: np.ndarray) -> dict:
    p, g = pred.astype(bool), gt.astype(bool)
    inter = np.count_nonzero(p & g)
    layer_union = np.count_nonzero(p | g, axis=(1, 2))
    layer_inter = np.count_nonzero(p & g, axis=(1, 2))
    depth = [float(i / u) if u else float("nan") for i, u in zip(layer_inter, layer_union)]
    v_gt = np.count_nonzero(g)
    return {
        "iou": _iou(p, g),
        "class_mean_iou": (_iou(p, g) + _iou(~p, ~g)) / 2,
        "mre": abs(np.count_nonzero(p) - v_gt) / v_gt if v_gt else float("nan"),
        "precision": inter / np.count_nonzero(p) if np.count_nonzero(p) else float("nan"),
        "recall": inter / v_gt if v_gt else float("nan"),
        "per_depth_iou": json.dumps(depth),
    }


def _row(method: str, config: str, variant: str, case: str, sample: str, run_key: str, seed: int,
         scores: dict) -> ResultRow:
    """One synthetic result row (fixed threshold, made-up timing and provenance)."""
    return ResultRow(
        method=method, label=label_of(method), config=config, variant=variant, tta=False,
        case=case, sample=sample, simulated_electrons_per_pixel=ELECTRONS_PER_PIXEL,
        read_electrons_per_pixel=ELECTRONS_PER_PIXEL, acquisition="ideal", **scores, threshold=0.5,
        threshold_rule="fixed-0.5",
        seconds_per_volume={"medsem": 0.02, "unet3d": 0.005, "bsevox": 0.01}[method], device="cpu",
        parameters=0 if method == "medsem" else 1_000_000,
        macs=0 if method == "medsem" else 2_000_000_000, seed=seed, preset="smoke",
        dataset_hash="abc123", git_commit="deadbeef", versions=json.dumps({"numpy": np.__version__}),
        run_key=run_key, created_utc="2026-01-01T00:00:00Z",
    )


def write_synthetic_results(root, methods=("medsem", "unet3d", "bsevox"),
                            cases=("nanocube", "nanowire", "test", "ablation"),
                            histories=True, dataset=True, seed=0):
    """Write a results folder under ``root``; return its path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    all_rows = []
    plans = [(m, c, "full") for c in cases if c != "ablation" for m in methods]
    if "ablation" in cases and "bsevox" in methods:
        plans += [("bsevox", "ablation", v) for v in ("full", "no-sope", "no-s2mlp", "no-convffn")]
    for method, case, variant in plans:
        config = "default" if method == "medsem" else "tiny"
        run_key = f"{method}-{config}-{variant}-{case}-s{seed}"
        ids, gt = _case_volumes(case, np.random.default_rng(seed + 1))
        noise = METHOD_NOISE[method] * (1.5 if variant != "full" else 1.0)
        surface = np.abs(np.diff(gt.astype(np.int8), axis=-1, prepend=0)) > 0
        flips = surface & (rng.random(gt.shape) < noise)
        prob = np.clip(np.where(flips, 1 - gt, gt) * 0.8 + rng.random(gt.shape) * 0.2, 0, 1)
        binary = (prob >= 0.5).astype(np.uint8)
        bse = rng.random((len(ids), len(ENERGIES_KEV), BLOCK, BLOCK)).astype(np.float16)
        run_dir = root / "runs" / run_key
        run_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(run_dir / "volumes.npz", ids=np.array(ids), gt=gt,
                            prob=prob.astype(np.float16), binary=binary, bse=bse,
                            energies_keV=ENERGIES_KEV)
        frame = normalise_rows(pd.DataFrame([
            asdict(_row(method, config, variant, case, sample, run_key, seed, _scores(binary[k], gt[k])))
            for k, sample in enumerate(ids)]))
        frame.to_parquet(run_dir / "rows.parquet")
        miou = float(frame["iou"].mean())  # bounds made up: the report must copy them
        (run_dir / "summary.json").write_text(json.dumps(
            {"run_key": run_key, "method": method, "params": {"config": config},
             "case": case, "preset": "smoke", "seed": seed,
             "metrics": {"miou": {"mean": miou, "low": miou - 0.01, "high": miou + 0.01,
                                  "n": len(frame), "confidence": 0.95}}}))
        all_rows.append(frame)
    pd.concat(all_rows, ignore_index=True).to_parquet(root / "results.parquet")
    if histories:
        for name in [f"{m}-tiny" for m in methods if m != "medsem"]:
            epochs = np.arange(1, 11)
            history = pd.DataFrame({"epoch": epochs, "train_loss": 1.0 / epochs,
                                    "val_miou": 1 - 0.8 / epochs, "lr": 1e-3,
                                    "seconds": 1.0})
            (root / "models" / name).mkdir(parents=True, exist_ok=True)
            history.to_csv(root / "models" / name / "history.csv", index=False)
    if dataset:
        (root / "data").mkdir(exist_ok=True)
        (root / "data" / "dataset.json").write_text(json.dumps(
            {"preset": "smoke", "hash": "abc123", "simulator": {"version": "test"},
             "splits": {"train": 10, "val": 2, "test": 6}}))
    return root


@pytest.fixture(scope="session")
def synthetic_results():
    """The ``write_synthetic_results(root, **options)`` factory."""
    return write_synthetic_results
