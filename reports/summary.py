"""Plain-language remarks for the top of the report, generated from the result rows only."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from datasets.realism import DEGRADATION_AXES, IDEAL, RESIMULATED
from datasets.stats import MeanInterval, paired_difference_interval
from reports.paper_tables import load_paper_results
from reports.realism import (
    image_levels,
    level_catalogue,
    level_means,
    paired_level_difference,
    realism_scores,
    robust_pairs,
)
from reports.results import DOSE_CASE, ReportInputs
from reports.table_base import METHOD_ORDER
from reports.tables import miou_table, seed_table, stratified_table

#: IoU below which a reconstruction is called a failure in the remarks.
FAIL_IOU = 0.5
#: the dose study's "enough electrons": within this IoU of a method's best over the doses
DOSE_PLATEAU_IOU = 0.01
EXPECTED_CASES = ("nanocube", "nanowire", "test", "ablation")


def _radius_nm(sample: str) -> float | None:
    m = re.fullmatch(r"radius(\d+(?:\.\d+)?)nm", sample)
    return float(m.group(1)) if m else None


def _position(sample: str) -> int | None:
    m = re.fullmatch(r"position(\d+)", sample)
    return int(m.group(1)) if m else None


def nanowire_remarks(rows: pd.DataFrame) -> list[str]:
    """Smallest Cu radius from which each method keeps IoU >= FAIL_IOU (its resolution limit)."""
    mine = rows[rows["case"] == "nanowire"]
    remarks = []
    for label, group in mine.groupby("label", sort=False):
        by_radius = {}
        for sample, iou in group.groupby("sample")["iou"].mean().items():
            if (r := _radius_nm(sample)) is not None and np.isfinite(iou):
                by_radius[r] = float(iou)
        if not by_radius:
            continue
        radii = sorted(by_radius)
        ok_from = None
        for r in reversed(radii):
            if by_radius[r] < FAIL_IOU:
                break
            ok_from = r
        worst = min(radii, key=by_radius.get)
        if ok_from == radii[0]:
            remarks.append(f"{label} keeps IoU ≥ {FAIL_IOU} at every nanowire radius down to "
                           f"{radii[0]:g} nm (lowest {by_radius[worst]:.3f} at {worst:g} nm).")
        elif ok_from is None:
            remarks.append(f"{label} stays below IoU {FAIL_IOU} even at the largest radius "
                           f"({radii[-1]:g} nm: {by_radius[radii[-1]]:.3f}).")
        else:
            below = [r for r in radii if r < ok_from]
            remarks.append(f"{label} fails below {ok_from:g} nm Cu radius: IoU < {FAIL_IOU} at "
                           + ", ".join(f"{r:g} nm ({by_radius[r]:.3f})" for r in below) + ".")
    return remarks


def nanocube_remarks(rows: pd.DataFrame) -> list[str]:
    """How each method's IoU changes from the top core position to the deepest one."""
    mine = rows[rows["case"] == "nanocube"]
    remarks = []
    for label, group in mine.groupby("label", sort=False):
        by_pos = {p: float(v) for s, v in group.groupby("sample")["iou"].mean().items()
                  if (p := _position(s)) is not None and np.isfinite(v)}
        if len(by_pos) < 2:
            continue
        first, last = min(by_pos), max(by_pos)
        worst = min(by_pos, key=by_pos.get)
        remarks.append(f"{label} on the nanocube: IoU {by_pos[first]:.3f} at position {first} "
                       f"(top) and {by_pos[last]:.3f} at position {last} (deepest); worst "
                       f"{by_pos[worst]:.3f} at position {worst}.")
    return remarks


def heldout_remarks(rows: pd.DataFrame, summaries: dict | None = None) -> list[str]:
    """Best test mIoU with its interval (as in the test-split table), compared with the
    paper's Table 2."""
    scored = miou_table(rows, summaries).frame.dropna(subset=["mIoU"])
    if scored.empty:
        return []
    scored = scored.sort_values("mIoU", ascending=False)
    label, best = scored.index[0], scored.iloc[0]
    interval = (f" (95% CI {best['95% CI low']:.3f}–{best['95% CI high']:.3f})"
                if np.isfinite(best["95% CI low"]) else "")
    text = (f"Best on the held-out test split: {label}, mIoU {best['mIoU']:.3f}{interval} over "
            f"{int(best['samples'])} samples")
    first = rows[(rows["case"] == "test") & (rows["label"] == label)].iloc[0]
    paper = load_paper_results()["table2_configs"]["configs"]
    if first["method"] == "bsevox" and str(first["config"]) in paper:
        text += f"; the paper reports {paper[str(first['config'])]['miou']:.3f} for this config"
    text += f"; the paper's best is {paper['moderate']['miou']:.3f} (BSE-VoxNets Moderate)."
    remarks = [text]
    if len(scored) > 1:
        label2, second = scored.index[1], scored.iloc[1]
        overlap = best["95% CI low"] <= second["95% CI high"]  # False when either is NaN
        remarks.append(
            f"Runner-up: {label2} with mIoU {second['mIoU']:.3f}; the intervals "
            + ("overlap, which alone does not rank them: the paired comparison of the same samples "
               "below does." if overlap else "do not overlap (or are undefined).")
        )
    return remarks


def coverage_remarks(inputs: ReportInputs) -> list[str]:
    """What was not run or not saved."""
    rows = inputs.rows
    remarks = []
    present = set(rows["case"].dropna().astype(str))
    absent_cases = [c for c in EXPECTED_CASES if c not in present]
    if absent_cases:
        remarks.append("Not in these results: case(s) " + ", ".join(absent_cases)
                       + " (where the paper has numbers for them, the tables show only the "
                       "paper's).")
    from methods.base import available, get

    methods = set(rows["method"].dropna().astype(str))
    order = {m: i for i, m in enumerate(METHOD_ORDER)}  # the paper's order, then the rest
    absent_methods = [get(m).display_name() for m in sorted(available(), key=lambda m: (order.get(m, len(order)), m))
                      if m not in methods]
    if absent_methods:
        remarks.append("Methods not run: " + ", ".join(absent_methods) + ".")
    return remarks


def scale_remarks(rows: pd.DataFrame) -> list[str]:
    """Preset scale and oracle thresholds: what a reader needs to weigh the headline numbers."""
    remarks = []
    presets = sorted(rows["preset"].dropna().astype(str).unique())
    if presets and presets != ["paper"]:
        remarks.append(
            f"Preset {', '.join(presets)}: smaller data and shorter training than the paper "
            "(10,000 geometries, 250 epochs), so absolute numbers are not expected to match it.")
    oracle = rows[rows["threshold_rule"].astype(str) == "oracle"]
    if len(oracle):
        names = ", ".join(sorted(oracle["label"].unique()))
        remarks.append(f"{names}: scored with the paper's oracle thresholds (picked per sample "
                       "knowing the answer) — an optimistic upper bound, as in the paper.")
    return remarks


def context_remarks(rows: pd.DataFrame) -> list[str]:
    """Preset scale, oracle thresholds and timing, the facts a reader needs to weigh the numbers."""
    remarks = scale_remarks(rows)
    timed = rows.dropna(subset=["seconds_per_volume"])
    if len(timed):
        per = timed.groupby("label")["seconds_per_volume"].median().sort_values()
        devices = ", ".join(sorted(timed["device"].dropna().astype(str).unique())) or "unknown"
        if len(per) == 1:
            remarks.append(f"{per.index[0]} takes {per.iloc[0]:.3g} s per volume "
                           f"(device: {devices}).")
        else:
            remarks.append(f"Fastest: {per.index[0]} at {per.iloc[0]:.3g} s per volume; slowest: "
                           f"{per.index[-1]} at {per.iloc[-1]:.3g} s (device: {devices}).")
    return remarks


def paired_remarks(rows: pd.DataFrame, case: str = "test", only: set | None = None) -> list[str]:
    """"A beats B by x [lo, hi]" for every pair of methods scored on the same samples of ``case``
    (the full variants, one threshold rule each): the bootstrap interval of the mean per-sample IoU
    difference; where it includes 0 the remark says the two are not separable at this size.
    ``only``: the pairs of these labels only."""
    mine = rows[(rows["case"] == case) & (rows["variant"].astype(str) == "full")]
    if mine.empty:
        return []
    table = mine.pivot_table(index="sample", columns="label", values="iou", aggfunc="mean")
    labels = [lab for lab in table.columns if table[lab].notna().all() and (only is None or lab in only)]
    out = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            # the bootstrap of the per-sample differences (the samples resampled jointly)
            mean, low, high, n = paired_difference_interval(table[a], table[b], seed=0).as_tuple()
            first, second, sign = (a, b, 1.0) if mean >= 0 else (b, a, -1.0)
            if n < 2:  # one sample: a difference but no interval
                out.append(f"On the one {case} sample scored by both (n=1, no interval): {first} beats "
                           f"{second} by {abs(mean):.3f} IoU; one sample cannot separate them.")
                continue
            lo, hi = sorted((sign * low, sign * high))
            verdict = ("separable" if lo > 0 else "NOT separable at this size (the interval includes 0)")
            out.append(f"Paired on the {n} {case} samples: {first} beats {second} by "
                       f"{abs(mean):.3f} IoU [{lo:.3f}, {hi:.3f}], {verdict}.")
    return out


def dose_remarks(rows: pd.DataFrame) -> list[str]:
    """How the mean IoU of each method changes from the lowest to the highest read dose of the
    dose study (case ``dose``, doses from ``read_electrons_per_pixel``)."""
    mine = rows[rows["case"] == DOSE_CASE]
    if mine.empty:
        return []
    mine = mine.assign(dose=mine["read_electrons_per_pixel"].astype(int))
    means = mine.groupby(["label", "dose"])["iou"].mean().unstack("dose")
    low, high = means.columns.min(), means.columns.max()
    parts = [f"{label} {means.loc[label, low]:.3f} -> {means.loc[label, high]:.3f}" for label in means.index]
    remarks = [f"Dose study (test geometries and the named cases, thinned exactly from the top dose), mean IoU "
               f"at {low} -> {high} e-/pixel: " + "; ".join(parts) + "."]
    needed = []
    for label in means.index:
        row = means.loc[label].dropna()
        if len(row) > 1:
            enough = min(d for d, v in row.items() if v >= row.max() - DOSE_PLATEAU_IOU)
            needed.append((label, enough, row.max()))
    if needed:
        text = "; ".join(f"{label} from {dose} e-/pixel (best {best:.3f})" for label, dose, best in needed)
        remarks.append(f"Electrons per pixel each method needs to come within {DOSE_PLATEAU_IOU} IoU of its best: "
                       f"{text}.")
        if high > min(d for _, d, _ in needed) and all(d < high for _, d, _ in needed):
            remarks.append("Above those doses more electrons do not help any method: with these models, "
                           "data and training, accuracy is limited by something other than shot noise.")
    return remarks


def realism_remarks(rows: pd.DataFrame) -> list[str]:
    """The realism study (case ``realism``): which ideal-trained method loses least IoU to the
    degraded acquisitions, where each method first falls below ``FAIL_IOU`` per degradation, and
    how the robust variants compare with their ideal-trained counterparts."""
    scores = realism_scores(rows)
    if scores.empty:
        return []
    means = level_means(scores)
    full = [label for label in means.index
            if (scores.loc[scores["label"] == label, "variant"].astype(str) == "full").all()]
    remarks = _least_degraded_remark(means.loc[full], scores["sample"].nunique())
    remarks += [text for label in means.index if (text := _failure_remark(label, means.loc[label]))]
    return remarks + _robust_remarks(scores)


def _least_degraded_remark(means: pd.DataFrame, samples: int) -> list[str]:
    """Ideal-trained methods ranked by their IoU drop: mean IoU on ideal data minus the mean of
    their mean IoUs at the non-ideal levels every one of them was scored at."""
    common = means.dropna(axis=1)
    degraded = [level for level in common.columns if level not in (IDEAL, RESIMULATED)]
    if IDEAL not in common.columns or not degraded or common.empty:
        return []
    drops = (common[IDEAL] - common[degraded].mean(axis=1)).sort_values()
    best = drops.index[0]
    others = "; ".join(f"{label} {drop:.3f}" for label, drop in drops.iloc[1:].items())
    who = f"least affected by the acquisition is {best}, whose" if others else f"{best}'s"
    return [f"Realism study ({samples} samples, every model trained on ideal data): {who} mean IoU drops by "
            f"{drops.iloc[0]:.3f} from {common.loc[best, IDEAL]:.3f} on ideal data (the drop: IoU on ideal "
            f"data minus the mean over the {len(degraded)} other levels' mean IoUs)"
            + (f"; the others drop by: {others}." if others else ".")]


def _failure_remark(label: str, means: pd.Series) -> str:
    """Per degradation, the first level at which ``label``'s mean IoU falls below ``FAIL_IOU``, or
    the highest level up to which it stays at or above it."""
    catalogue = level_catalogue()
    below, above = [], []
    for degradation in DEGRADATION_AXES:
        levels = [name for name in means.dropna().index
                  if name in catalogue and catalogue[name].degradation == degradation]
        if not levels:
            continue
        first = next((name for name in levels if means[name] < FAIL_IOU), None)
        if first is None:
            above.append(levels[-1])
        else:
            below.append(f"{first} ({means[first]:.3f})")
    if not below and not above:
        return ""
    if IDEAL in means.dropna().index and means[IDEAL] < FAIL_IOU:  # no level to fall below it at
        return (f"{label} under degraded acquisition: already below IoU {FAIL_IOU} on ideal data "
                f"({means[IDEAL]:.3f}); lowest level mean {means.drop(IDEAL).min():.3f} "
                f"({means.drop(IDEAL).idxmin()}).")
    parts = []
    if below:
        parts.append(f"falls below IoU {FAIL_IOU} at " + ", ".join(below))
    if above:
        parts.append(f"stays ≥ {FAIL_IOU} up to " + ", ".join(above))
    return f"{label} under degraded acquisition: " + "; ".join(parts) + "."


def _signed_interval(interval: MeanInterval) -> str:
    """'+0.050 IoU [+0.030, +0.070]', or the mean alone where there is no interval."""
    if interval.n < 2:
        return f"{interval.mean:+.3f} IoU (n={interval.n}, no interval)"
    return f"{interval.mean:+.3f} IoU [{interval.low:+.3f}, {interval.high:+.3f}]"


def _robust_remarks(scores: pd.DataFrame) -> list[str]:
    """Each robust model minus its ideal-trained counterpart on the same samples: averaged over the
    image-degradation levels and on the ideal level, with paired bootstrap intervals."""
    remarks = []
    for robust, full in robust_pairs(scores):
        image = image_levels(scores.loc[scores["label"] == robust, "acquisition"])
        on_image = paired_level_difference(scores, robust, full, image)
        on_ideal = paired_level_difference(scores, robust, full, [IDEAL])
        if on_image.n == 0 and on_ideal.n == 0:
            continue
        parts = []
        if on_image.n:
            parts.append(f"{_signed_interval(on_image)} averaged over the {len(image)} image-degradation "
                         f"levels ({on_image.n} samples)")
        if on_ideal.n:
            parts.append(f"{_signed_interval(on_ideal)} on ideal data")
        remarks.append(f"Trained with the image degradations as augmentation, {robust} minus {full} on the "
                       "same samples (paired bootstrap): " + "; ".join(parts) + ".")
    return remarks


def seed_remarks(seed_rows: pd.DataFrame | None) -> list[str]:
    """Mean and spread of the test mIoU over training seeds, where several were trained."""
    if seed_rows is None or seed_rows.empty:
        return []
    frame = seed_table(seed_rows).frame
    if frame.empty:
        return []
    parts = [f"{label} {row['mean mIoU']:.3f} ± {row['sd']:.3f} ({len(row['seeds'].split(','))} seeds, "
             f"range {row['min']:.3f}–{row['max']:.3f})" for label, row in frame.iterrows()]
    return ["Over training seeds (same data, same test split), test mIoU mean ± sd: " + "; ".join(parts) + "."]


def strata_remarks(rows: pd.DataFrame, runs) -> list[str]:
    """Each method's weakest stratum of the test split (Cu volume or depth of the Cu's top)."""
    frame = stratified_table(rows, runs).frame
    if frame.empty:
        return []
    parts = []
    for label, row in frame.iterrows():
        populated = row[[c for c in frame.columns if not c.endswith("(n=0)")]].dropna()
        if len(populated):
            parts.append(f"{label} {populated.min():.3f} ({populated.idxmin()})")
    return ["Weakest test stratum per method (mean IoU): " + "; ".join(parts) + "."] if parts else []


def verdict_remarks(inputs: ReportInputs) -> list[str]:
    """The few remarks at the top of the report: the best method on the held-out test split, its
    runner-up and their paired comparison, then the preset's scale and any oracle thresholds;
    without a test split, the first three of all remarks."""
    rows = inputs.rows
    if rows.empty:
        return summary_remarks(inputs)
    headline = heldout_remarks(rows, inputs.summaries)
    if not headline:
        return summary_remarks(inputs)[:3]
    ranked = miou_table(rows, inputs.summaries).frame.dropna(subset=["mIoU"]).sort_values(
        "mIoU", ascending=False).index[:2]
    top_pair = paired_remarks(rows, only=set(ranked)) if len(ranked) == 2 else []
    return headline + top_pair + scale_remarks(rows)


def summary_remarks(inputs: ReportInputs) -> list[str]:
    """All remarks, most important first."""
    rows = inputs.rows
    if rows.empty:
        return ["No result rows were found, so there is nothing to compare yet. Run "
                "`python -m benchmark run --method all --case all` and rebuild the report."]
    return (heldout_remarks(rows, inputs.summaries) + paired_remarks(rows) + seed_remarks(inputs.seed_rows)
            + nanowire_remarks(rows) + nanocube_remarks(rows) + strata_remarks(rows, inputs.runs)
            + dose_remarks(rows) + realism_remarks(rows) + context_remarks(rows) + coverage_remarks(inputs))


__all__ = ["summary_remarks", "verdict_remarks"]
