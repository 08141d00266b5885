"""The realism study (case ``realism``): every method scored on the same samples, each read under
one acquisition level at a time (``datasets.realism``: ``ideal``, then probe, detector, drift, gain
noise, readout noise, brightness/contrast). Models are trained on ideal data (variant ``full``);
a ``robust`` variant of a learned method was trained with the image degradations as augmentation.

Here: the per-sample scores of the study, the mean IoU per level, the paired robust - full
differences, and the two report tables built from them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from datasets.realism import IDEAL, RESIMULATED, RealismLevel, realism_levels
from datasets.stats import MeanInterval, paired_difference_interval
from reports.results import REALISM_CASE, level_rank
from reports.table_base import Table, best_mask, fmt, is_nan, ordered_labels, render_table

#: the variant of a learned model trained with the image degradations as augmentation
ROBUST = "robust"
#: the detector panel's categories: the paper's plane detector is the ideal level
DETECTOR_NAMES = {IDEAL: "plane (ideal)", RESIMULATED: "plane", "detector-annular": "annular", "detector-lowloss": "low-loss"}
#: the robust table's row of the differences averaged over every image-degradation level
ALL_IMAGE_LEVELS = "all image levels"
SCORE_KEYS = ["label", "method", "config", "variant", "threshold_rule", "acquisition", "sample"]


def level_catalogue() -> dict[str, RealismLevel]:
    """``{level name: RealismLevel}`` of every level of ``datasets.realism``."""
    return {level.name: level for level in realism_levels()}


def ordered_levels(names) -> list[str]:
    """Level names in the catalogue's plot order (``ideal`` first), unknown names last."""
    return sorted(dict.fromkeys(str(n) for n in names), key=level_rank)


def image_levels(names) -> list[str]:
    """The names made by degrading the stored ideal stacks (catalogue kind ``image``), in order."""
    catalogue = level_catalogue()
    return [n for n in ordered_levels(names) if n in catalogue and catalogue[n].kind == "image"]


def realism_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """IoU of each (label, level, sample) of the realism case, a sample's repeats averaged, with
    the label's method, config, variant and threshold rule."""
    mine = rows[rows["case"] == REALISM_CASE] if len(rows) else rows
    if mine.empty:
        return pd.DataFrame(columns=[*SCORE_KEYS, "iou"])
    mine = mine.assign(acquisition=mine["acquisition"].astype(str))
    return mine.groupby(SCORE_KEYS, dropna=False, sort=False)["iou"].mean().reset_index()


def level_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU over the samples: one row per label (table order), one column per level (plot order)."""
    if scores.empty:
        return pd.DataFrame()
    means = scores.groupby(["label", "acquisition"])["iou"].mean().unstack("acquisition")
    return means.reindex(index=ordered_labels(scores), columns=ordered_levels(means.columns))


def robust_pairs(scores: pd.DataFrame) -> list[tuple[str, str]]:
    """(robust label, ideal-trained label) of every robust model whose ``full`` counterpart (same
    method, config and threshold rule) is among the scores, in table order."""
    labels = scores.drop_duplicates("label")
    key = ["method", "config", "threshold_rule"]
    full = {tuple(map(str, r[key])): r["label"] for _, r in labels.iterrows() if str(r["variant"]) == "full"}
    robust = {r["label"]: tuple(map(str, r[key])) for _, r in labels.iterrows() if str(r["variant"]) == ROBUST}
    return [(label, full[robust[label]]) for label in ordered_labels(labels)
            if label in robust and robust[label] in full]


def paired_level_difference(scores: pd.DataFrame, robust: str, full: str, levels) -> MeanInterval:
    """Mean per-sample IoU difference ``robust - full`` over ``levels`` (each sample's differences
    averaged over the levels both scored) with its paired bootstrap interval: only samples both
    scored at every one of those levels count."""
    mine = scores[scores["label"].isin([robust, full]) & scores["acquisition"].isin(list(levels))]
    wide = mine.pivot_table(index="sample", columns=["label", "acquisition"], values="iou", aggfunc="mean")
    if robust not in wide.columns.get_level_values(0) or full not in wide.columns.get_level_values(0):
        return paired_difference_interval([], [])
    a, b = wide[robust], wide[full]
    shared = [level for level in levels if level in a.columns and level in b.columns]
    a, b = a[shared], b[shared]
    matched = a.notna().all(axis=1) & b.notna().all(axis=1)
    if not shared or not matched.any():
        return paired_difference_interval([], [])
    return paired_difference_interval(a[matched].mean(axis=1), b[matched].mean(axis=1), seed=0)


def realism_table(rows: pd.DataFrame) -> Table:
    """Mean IoU of every method (and robust variant) at every realism level."""
    scores = realism_scores(rows)
    frame = level_means(scores)
    frame.index.name, frame.columns.name = "method", None
    best = best_mask(frame, {c: "max" for c in frame.columns})
    n = scores["sample"].nunique() if len(scores) else 0
    return Table(
        "realism", "Mean IoU under realistic acquisition",
        f"Mean Cu IoU over the {n} samples of the realism study (the first test-split geometries and "
        "the named-case geometries), each read under one level at a time: ideal = the paper's point "
        "beam and plane detector; probe-*: a Gaussian probe of that FWHM and detector-*: another "
        "detector (both simulated again); drift-*, gain-*, readout-*, brightness-*: the ideal stacks "
        "degraded after the simulation (datasets.realism). Every model was trained on ideal data, "
        "except the robust variants (trained with the image degradations as augmentation). "
        "One row per level; bold: best per level.",
        # shown one row per level (20 levels do not fit a page as columns)
        frame, best, render_table("realism", frame.T.rename_axis(index="level", columns=None), best.T, fmt(3)),
    )


def robust_differences(rows: pd.DataFrame) -> pd.DataFrame:
    """Per robust model and level (and over all image levels): the paired mean IoU difference
    robust - ideal-trained on the same samples, its 95 % bootstrap interval and the sample count."""
    scores = realism_scores(rows)
    records, index = [], []
    for robust, full in robust_pairs(scores):
        levels = ordered_levels(scores.loc[scores["label"] == robust, "acquisition"])
        image = image_levels(levels)
        for name, chosen in [*((level, [level]) for level in levels), (ALL_IMAGE_LEVELS, image)]:
            if not chosen:
                continue
            mean, low, high, n = paired_level_difference(scores, robust, full, chosen).as_tuple()
            index.append((robust, name))
            records.append({"compared with": full, "robust − full": mean, "95% CI low": low,
                            "95% CI high": high, "samples": float(n)})
    columns = ["compared with", "robust − full", "95% CI low", "95% CI high", "samples"]
    names = ["robust model", "level"]
    index = pd.MultiIndex.from_tuples(index, names=names) if index else pd.MultiIndex.from_arrays([[], []], names=names)
    return pd.DataFrame.from_records(records, index=index, columns=columns)


def robust_table(rows: pd.DataFrame) -> Table:
    """The paired comparison of each robust model with its ideal-trained counterpart per level."""
    frame = robust_differences(rows)
    best = pd.DataFrame(False, index=frame.index, columns=frame.columns)

    def signed(value) -> str:
        return "—" if is_nan(value) or not np.isfinite(value) else f"{value:+.3f}"

    formatters = {"robust − full": signed, "95% CI low": signed, "95% CI high": signed, "samples": fmt(0)}
    return Table(
        "realism-robust", "Robust training against training on ideal data",
        "Each robust model (trained with the image degradations as on-the-fly augmentation) minus the "
        "same method trained on ideal data, on the same samples: the mean per-sample IoU difference "
        "with its 95 % paired bootstrap interval (samples resampled jointly, 2000 resamples, seed 0); "
        f"'{ALL_IMAGE_LEVELS}': each sample's difference averaged over the drift, gain, readout and "
        "brightness levels first. An interval that excludes 0 separates the two.",
        frame, best, render_table("realism-robust", frame, best, formatters),
    )
