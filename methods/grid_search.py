"""Grid search over learning rate, weight decay and lambda, selected on the validation split only
(paper section III's grid)."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from datasets.errors import look_up
from datasets.files import write_text_atomic
from methods.base import create
from methods.training import TRAIN_PRESETS, TrainSettings, train_on_splits

#: The paper's lambdas (section III): 1/n, n = 2..15, all at or below 1/2 (Cu weighted down).
PAPER_LAMBDAS = [1.0 / n for n in range(2, 16)]
#: Both directions: the paper's and 1 - 1/n (n = 3..15, Cu weighted up). With a threshold chosen
#: on validation the two sides are not equivalent: a small lambda shifts the calibrated
#: threshold below 0.5, a large one above it, and which side trains better is an empirical matter.
TWO_SIDED_LAMBDAS = sorted(set(PAPER_LAMBDAS) | {1.0 - 1.0 / n for n in range(3, 16)})
#: The paper's grids (section III).
PAPER_GRID = {
    "lr": [5e-3, 1e-3, 5e-4, 1e-4, 5e-5, 1e-5],
    "weight_decay": [1e-3, 1e-4, 1e-5],
    "lam": PAPER_LAMBDAS,
}
#: The default search: the paper's lr and weight-decay grids, lambda in both directions.
DEFAULT_GRID = {**PAPER_GRID, "lam": TWO_SIDED_LAMBDAS}
GRIDS = {"two-sided": DEFAULT_GRID, "paper": PAPER_GRID}


#: the training settings a grid may search over
GRID_SETTINGS = ("lr", "weight_decay", "lam")


def _trials(grid: dict, max_trials: int | None, seed: int) -> tuple[list[str], list[tuple], list[int]]:
    """The grid's setting names, its points, and the indices of the points to train (all, or
    ``max_trials`` drawn at random with ``seed``)."""
    for key in grid:
        look_up("setting", key, dict.fromkeys(GRID_SETTINGS))
    keys = list(grid)
    points = list(itertools.product(*(grid[k] for k in keys)))
    trial_ids = list(range(len(points)))
    if max_trials is not None and max_trials < len(points):
        rng = np.random.default_rng(seed)
        trial_ids = sorted(rng.choice(len(points), size=max_trials, replace=False).tolist())
    return keys, points, trial_ids


def _write_best(out_dir: Path, table: pd.DataFrame, method_name: str, config: str, settings: TrainSettings) -> None:
    """``best.json``: the trial with the best validation mIoU."""
    if len(table):
        best = table.loc[table["best_val_miou"].idxmax()].to_dict()
        info = {"method": method_name, "config": config, "selected_on": "validation split",
                "base_settings": asdict(settings), "best": best}
        write_text_atomic(out_dir / "best.json", json.dumps(info, indent=2, default=float), fsync=False)


def grid_search(
    method_name: str,
    config: str,
    dataset,
    grid: dict | None = None,
    settings: TrainSettings | None = None,
    out_dir="grid-search",
    max_trials: int | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str = "cpu",
    method_params: dict | None = None,
) -> pd.DataFrame:
    """Grid search over lr x weight_decay x lam (default ``DEFAULT_GRID``: lambda two-sided),
    selected on the VALIDATION split only.

    Each trial trains ``method_name`` (``config``) with ``settings`` and the trial's values, on
    ``dataset.split("train")`` and scores the best validation mIoU (the test split is never
    read). ``max_trials`` draws that many grid points at random (``seed``). Results go to
    ``out_dir/grid_results.csv`` after every trial; a rerun skips finished trials and resumes an
    interrupted one. ``out_dir/best.json`` names the selected values.
    """
    keys, points, trial_ids = _trials(grid or DEFAULT_GRID, max_trials, seed)
    settings = replace(settings or TRAIN_PRESETS["quick"], device=device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / "grid_results.csv"
    done = pd.read_csv(table_path) if table_path.exists() else pd.DataFrame()
    finished = set(done["trial"]) if len(done) else set()
    rows = done.to_dict("records") if len(done) else []
    train_split, val_split = dataset.split("train"), dataset.split("val")

    for trial in tqdm(trial_ids, desc="grid search", disable=not progress):
        if trial in finished:
            continue
        values = dict(zip(keys, points[trial]))
        trial_settings = replace(settings, **values)
        method = create(method_name, device=device, config=config, **(method_params or {}))
        trial_dir = out_dir / f"trial-{trial:04d}"
        summary = train_on_splits(method, train_split, val_split, trial_dir, trial_settings,
                                  progress=False, resume=True, energies_keV=dataset.energies_keV)
        rows.append({"trial": trial, **values, "best_val_miou": summary["best_val_miou"],
                     "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
                     "train_seconds": summary["train_seconds"]})
        for name in ("latest.pt", "best.pt"):  # keep the table and curves, not every model
            (trial_dir / name).unlink(missing_ok=True)
        write_text_atomic(table_path, pd.DataFrame(rows).to_csv(index=False), fsync=False)

    table = pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)
    _write_best(out_dir, table, method_name, config, settings)
    return table
