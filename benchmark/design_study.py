"""The quick dataset's design study: geometries x electrons per pixel at a fixed simulation budget.

``python -m benchmark design-study`` simulates one training dataset per design (``N x E``: N
random geometries at E simulated e-/pixel; N x E is the budget, so every design costs the same
primaries), each read at one dose (``--read-dose``, default 60 e-/pixel) — a design
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UsageError
from datasets.files import write_bytes_atomic, write_text_atomic

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


def _eval_set(root: Path, read_electrons_per_pixel: int, progress: bool,
              n_geometries: int = EVALUATION_GEOMETRIES):
    from datasets.builder import build_dataset
    from datasets.presets import get_preset
    from datasets.storage import open_dataset

    preset = get_preset("quick", n_geometries=n_geometries, simulated_electrons_per_pixel=read_electrons_per_pixel,
                        seed=EVALUATION_SEED, cases=(), shard_size=50)
    path = build_dataset(root / "evaluation-data", preset=preset, progress=progress, wait_for_lock=True)
    data = open_dataset(path)
    stacks = np.stack([data.sample(sid)["bse"] for sid in data.ids]).astype(np.float32)
    labels = np.stack([data.sample(sid)["label"] for sid in data.ids]).astype(np.uint8)
    return data, stacks, labels


@dataclass(frozen=True)
class StudySettings:
    """What every design of one study shares."""

    root: Path
    read_electrons_per_pixel: int
    method: str
    config: str
    train_preset: str
    progress: bool
    log: Callable[[str], None]
    reference_geometries: int


def run_design_study(results_dir="outputs/design-study", designs=DEFAULT_DESIGNS, read_electrons_per_pixel: int = 60,
                     method: str = "bsevox", config: str = "tiny", train_preset: str = "quick",
                     progress: bool = True, log=print, reference_geometries: int = REFERENCE_GEOMETRIES,
                     evaluation_geometries: int = EVALUATION_GEOMETRIES) -> pd.DataFrame:
    """Run (or finish) the study; returns its table (also written as CSV and Markdown).
    ``reference_geometries``: a design of N geometries trains ``reference_geometries / N`` times
    the train preset's epochs (equal training steps)."""
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    study = StudySettings(root, int(read_electrons_per_pixel), method, config, train_preset, progress, log,
                          reference_geometries)
    evaluation = _eval_set(root, study.read_electrons_per_pixel, progress, evaluation_geometries)
    rows = []
    for text in designs:
        rows.append(_run_design(study, text, evaluation))
        table = pd.DataFrame(rows)
        write_bytes_atomic(root / "design_study.csv", table.to_csv(index=False).encode())
        write_text_atomic(root / "design_study.md", markdown(table))
    return pd.DataFrame(rows)


def _run_design(study: StudySettings, text: str, evaluation) -> dict:
    """One design built, trained (or reused), thresholded on its validation split and scored
    on the evaluation set; its row of the table (the columns are the CSV's format)."""
    from benchmark.metrics import bootstrap_mean_interval
    from datasets.builder import build_dataset
    from datasets.presets import get_preset
    from datasets.storage import open_dataset
    from methods.binarize import binarize, choose_threshold, iou_per_sample

    eval_data, eval_stacks, eval_labels = evaluation
    n, simulated, fresh = parse_design(text)
    read = study.read_electrons_per_pixel
    if simulated < read:
        raise UsageError(f"design {text}: {simulated} e-/pixel is below the dose {read} it is read at")
    # the dataset preset's settings are the dataset's file format: ``electrons_per_pixel`` is the
    # simulated dose, ``dose`` the read one
    preset = get_preset("quick", n_geometries=n, simulated_electrons_per_pixel=simulated, read_electrons_per_pixel=read, seed=DESIGN_SEED,
                        cases=(), test_fraction=0.0, val_fraction=0.1, shard_size=50)
    tic = time.monotonic()
    data_dir = study.root / f"{n}x{simulated}" / "data"  # a "-once" design trains on its base design's data
    build_dataset(data_dir, preset=preset, progress=study.progress, wait_for_lock=True)
    simulated_s = time.monotonic() - tic
    data = open_dataset(data_dir)
    tic = time.monotonic()
    model, summary, settings = _trained_model(study, text, data, n, fresh, fresh and simulated > read)
    trained_s = time.monotonic() - tic
    val_stacks, val_labels, _ = data.arrays("val")
    threshold = choose_threshold(model.reconstruct(val_stacks, data.energies_keV), val_labels)
    prob = model.reconstruct(eval_stacks, eval_data.energies_keV)
    iou = iou_per_sample(binarize(prob, threshold), eval_labels)
    ci = bootstrap_mean_interval(iou, seed=0)
    study.log(f"design {text}: evaluation mIoU {ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]")
    return {
        "design": text, "geometries": n, "simulated_e_per_px": simulated, "dose_e_per_px": read,
        "fresh_noise": bool(fresh and simulated > read), "train_samples": len(data.split_ids("train")),
        "epochs": settings.epochs, "method": f"{study.method} {study.config}", "threshold": threshold,
        "best_val_miou": summary.get("best_val_miou"), "eval_miou": ci.mean, "eval_low": ci.low,
        "eval_high": ci.high, "eval_samples": len(iou), "build_s": round(simulated_s, 1),
        "train_s": round(trained_s, 1),
    }


def _trained_model(study: StudySettings, text: str, data, n: int, fresh: bool, thinned_fresh: bool):
    """The design's model, trained with epochs scaled to equal training steps (or loaded when
    finished before): ``(method, training summary, train settings)``. ``fresh``: the design asks
    for fresh noise draws; ``thinned_fresh``: it gets them (simulated above its read dose)."""
    from methods.base import create
    from methods.training import TRAIN_PRESETS, train

    base = TRAIN_PRESETS[study.train_preset]
    scale = study.reference_geometries / n
    settings = replace(base, epochs=max(1, round(base.epochs * scale)),
                       eval_every=max(1, round(base.eval_every * scale)),
                       patience=max(1, round(base.patience * scale)), fresh_noise=fresh)
    model = create(study.method, config=study.config, preset=study.train_preset, tta=True)
    model_dir = study.root / text / "model"
    summary_path = model_dir / "summary.json"
    if summary_path.is_file() and model.is_trained(model_dir):
        model = type(model).load(model_dir)
        model.params["tta"] = True
        return model, json.loads(summary_path.read_text()), settings
    study.log(f"design {text}: training {study.method} {study.config} ({settings.epochs} epochs, fresh noise "
              f"{thinned_fresh})")
    return model, train(model, data, model_dir, settings, progress=study.progress, resume=True), settings


def markdown(table: pd.DataFrame) -> str:
    """The study as a Markdown table (the README's)."""
    lines = ["| design (geometries x simulated e-/px) | read at | fresh noise | train samples | epochs | "
             "evaluation mIoU [95 % CI] |", "|---|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.geometries} x {row.simulated_e_per_px} | {row.dose_e_per_px} e-/px | "
                     f"{'yes' if row.fresh_noise else 'no'} | {row.train_samples} | {row.epochs} | "
                     f"{row.eval_miou:.3f} [{row.eval_low:.3f}, {row.eval_high:.3f}] |")
    return "\n".join(lines) + "\n"
