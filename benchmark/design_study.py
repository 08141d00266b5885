"""The quick dataset's design study: geometries x electrons per pixel at a fixed simulation budget.

``python -m benchmark design-study`` simulates one training dataset per design (``N x E``: N
random geometries at E simulated e-/pixel; N x E is the budget, so every design costs the same
primaries), each read at the benchmark's dose (``--dose``, default 60 e-/pixel) — a design
simulated above the dose trains on fresh exact thinnings every epoch (``TrainSettings.fresh_noise``),
one at the dose sees one noise draw per sample. One learned method is trained on each design with
the same number of training steps (epochs scaled by 1000 / N) and scored on one common
evaluation set: geometries of another dataset seed, at the dose, which no design trains on. The
threshold is chosen on each design's own validation split. No test split is read: this is model
selection, done on validation data only.

Outputs in ``--results`` (default ``outputs/design-study``): ``design_study.csv`` and
``design_study.md`` (the README's table), one folder per design (its data and model). Finished
designs are reused by a rerun.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UsageError

#: the designs compared by default: 6e4 geometry x e-/pixel each (the quick preset's budget)
DEFAULT_DESIGNS = ("1000x60", "500x120", "250x240")
#: training set seed of the designs, and the evaluation set's (neither is the quick dataset's 0)
DESIGN_SEED, EVALUATION_SEED = 1, 2
EVALUATION_GEOMETRIES = 200
#: samples seen in training equal those of the quick preset (its epochs x 1000 geometries x 0.8)
REFERENCE_GEOMETRIES = 1000


def parse_design(text: str) -> tuple[int, int, bool]:
    """``"500x120"`` -> (500, 120, fresh noise); a ``"-once"`` suffix turns fresh noise off."""
    body, once = (text[:-5], True) if text.endswith("-once") else (text, False)
    try:
        n, e = (int(part) for part in body.lower().split("x"))
    except ValueError:
        raise UsageError(f"design {text!r} is not GEOMETRIESxELECTRONS (e.g. 500x120, or 500x120-once)") from None
    if n < 20 or e < 1:
        raise UsageError(f"design {text!r}: need at least 20 geometries and 1 e-/pixel")
    return n, e, not once


def _eval_set(root: Path, dose: int, progress: bool, n_geometries: int = EVALUATION_GEOMETRIES):
    from datasets.builder import build_dataset
    from datasets.presets import get_preset
    from datasets.storage import open_dataset

    preset = get_preset("quick", n_geometries=n_geometries, electrons_per_pixel=dose, seed=EVALUATION_SEED,
                        cases=(), shard_size=50)
    path = build_dataset(root / "evaluation-data", preset=preset, progress=progress, wait_for_lock=True)
    data = open_dataset(path)
    stacks = np.stack([data.sample(sid)["bse"] for sid in data.ids]).astype(np.float32)
    labels = np.stack([data.sample(sid)["label"] for sid in data.ids]).astype(np.uint8)
    return data, stacks, labels


def run_design_study(results_dir="outputs/design-study", designs=DEFAULT_DESIGNS, dose: int = 60,
                     method: str = "bsevox", config: str = "tiny", train_preset: str = "quick",
                     progress: bool = True, log=print, reference_geometries: int = REFERENCE_GEOMETRIES,
                     evaluation_geometries: int = EVALUATION_GEOMETRIES) -> pd.DataFrame:
    """Run (or finish) the study; returns its table (also written as CSV and Markdown).
    ``reference_geometries``: a design of N geometries trains ``reference_geometries / N`` times
    the train preset's epochs (equal training steps)."""
    from benchmark.metrics import bootstrap_mean_interval
    from datasets.builder import build_dataset
    from datasets.presets import get_preset
    from datasets.storage import open_dataset
    from methods.base import create
    from methods.binarize import binarize, choose_threshold, iou_per_sample
    from methods.training import TRAIN_PRESETS, train

    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    eval_data, eval_stacks, eval_labels = _eval_set(root, dose, progress, evaluation_geometries)
    base = TRAIN_PRESETS[train_preset]
    rows = []
    for text in designs:
        n, electrons, fresh = parse_design(text)
        if electrons < dose:
            raise UsageError(f"design {text}: {electrons} e-/pixel is below the dose {dose} it is read at")
        folder = root / text
        preset = get_preset("quick", n_geometries=n, electrons_per_pixel=electrons, dose=dose, seed=DESIGN_SEED,
                            cases=(), test_fraction=0.0, val_fraction=0.1, shard_size=50)
        tic = time.monotonic()
        data_dir = root / f"{n}x{electrons}" / "data"  # a "-once" design trains on its base design's data
        build_dataset(data_dir, preset=preset, progress=progress, wait_for_lock=True)
        simulated_s = time.monotonic() - tic
        data = open_dataset(data_dir)
        scale = reference_geometries / n
        settings = replace(base, epochs=max(1, round(base.epochs * scale)),
                           eval_every=max(1, round(base.eval_every * scale)),
                           patience=max(1, round(base.patience * scale)), fresh_noise=fresh)
        model = create(method, config=config, preset=train_preset, tta=True)
        model_dir = folder / "model"
        tic = time.monotonic()
        summary_path = model_dir / "summary.json"
        if summary_path.is_file() and model.is_trained(model_dir):
            summary = json.loads(summary_path.read_text())
            model = type(model).load(model_dir)
            model.params["tta"] = True
        else:
            log(f"design {text}: training {method} {config} ({settings.epochs} epochs, fresh noise "
                f"{fresh and electrons > dose})")
            summary = train(model, data, model_dir, settings, progress=progress, resume=True)
        trained_s = time.monotonic() - tic
        val_stacks, val_labels, _ = data.arrays("val")
        threshold = choose_threshold(model.reconstruct(val_stacks, data.energies_keV), val_labels)
        prob = model.reconstruct(eval_stacks, eval_data.energies_keV)
        iou = iou_per_sample(binarize(prob, threshold), eval_labels)
        ci = bootstrap_mean_interval(iou, seed=0)
        mean, low, high = ci.mean, ci.low, ci.high
        rows.append({
            "design": text, "geometries": n, "simulated_e_per_px": electrons, "dose_e_per_px": dose,
            "fresh_noise": bool(fresh and electrons > dose), "train_samples": len(data.split_ids("train")),
            "epochs": settings.epochs, "method": f"{method} {config}", "threshold": threshold,
            "best_val_miou": summary.get("best_val_miou"), "eval_miou": mean, "eval_low": low, "eval_high": high,
            "eval_samples": len(iou), "build_s": round(simulated_s, 1), "train_s": round(trained_s, 1),
        })
        log(f"design {text}: evaluation mIoU {mean:.3f} [{low:.3f}, {high:.3f}]")
        table = pd.DataFrame(rows)
        table.to_csv(root / "design_study.csv", index=False)
        (root / "design_study.md").write_text(markdown(table))
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The study as a Markdown table (the README's)."""
    lines = ["| design (geometries x simulated e-/px) | read at | fresh noise | train samples | epochs | "
             "evaluation mIoU [95 % CI] |", "|---|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.geometries} x {row.simulated_e_per_px} | {row.dose_e_per_px} e-/px | "
                     f"{'yes' if row.fresh_noise else 'no'} | {row.train_samples} | {row.epochs} | "
                     f"{row.eval_miou:.3f} [{row.eval_low:.3f}, {row.eval_high:.3f}] |")
    return "\n".join(lines) + "\n"
