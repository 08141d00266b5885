"""The report's plots of result rows (PNG bytes): IoU per sample, per depth layer, against
the read dose and under realistic acquisition, the case overview, training curves and inference
time.

Colours, font sizes and resolution come from ``reports.style`` (one colour per method in every
figure); legends sit below the panels, never on the data.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from datasets.realism import DEGRADATION_AXES, baseline
from datasets.stats import bootstrap_mean_interval
from reports import style
from reports.paper_tables import paper_label
from reports.plotting import label_palette, legend_below, panel_grid, plain_log_axis, to_png
from reports.realism import DETECTOR_NAMES, ROBUST, level_catalogue, realism_scores
from reports.results import DOSE_CASE, REALISM_CASE, case_groups, parse_depth_iou, quiet_mean
from reports.summary import FAIL_IOU
from reports.table_base import ordered_labels

PAPER_MARKER = "s"


def sample_axis(samples) -> tuple[list[float], str]:
    """x positions and axis name for sample names: position k -> k, radiusRnm -> R nm."""
    samples = list(samples)
    radius = [re.fullmatch(r"radius(\d+(?:\.\d+)?)nm", s) for s in samples]
    if samples and all(radius):
        return [float(m.group(1)) for m in radius], "Cu core radius (nm)"
    position = [re.fullmatch(r"position(\d+)", s) for s in samples]
    if samples and all(position):
        return [float(m.group(1)) for m in position], "core position (1 = top, deeper →)"
    return list(range(len(samples))), "sample"


def iou_by_sample_plot(rows: pd.DataFrame, case: str, paper_case: dict | None = None) -> bytes:
    """IoU versus nanocube position (depth) or nanowire radius: our methods as solid lines, the
    paper's values as dashed lines with square markers, in the colour of the same method with
    the same threshold rule."""
    mine = rows[rows["case"] == case]
    if mine.empty:
        raise ValueError(f"no rows for case {case!r}")
    means = mine.groupby(["label", "sample"])["iou"].mean().reset_index()
    samples = sorted(means["sample"].unique(), key=lambda s: sample_axis([s])[0][0])
    x_of = dict(zip(samples, sample_axis(samples)[0]))
    x_name = sample_axis(samples)[1]
    labels = ordered_labels(mine)
    palette = label_palette(labels)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for label in labels:
        part = means[means["label"] == label].copy()
        part["x"] = part["sample"].map(x_of)
        part = part.sort_values("x")
        ax.plot(part["x"], part["iou"], marker="o", label=f"{label}, ours", color=palette[label])
    if paper_case:
        x_paper, _ = sample_axis(paper_case["samples"])
        for method, values in paper_case["iou"].items():
            name = paper_label(method)
            ax.plot(x_paper, values, ls="--", marker=PAPER_MARKER, ms=4, alpha=0.8,
                    color=style.method_color(name), label=f"{name}, paper")
    ax.set_xlabel(x_name)
    ax.set_ylabel("IoU of Cu")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xticks(sorted(set(x_of.values())))
    ax.grid(alpha=0.3)
    ax.set_title(f"IoU per sample — {case}")
    legend_below(fig, [ax])
    return to_png(fig)


def per_depth_iou_plot(rows: pd.DataFrame, cases: list[str]) -> bytes:
    """Mean per-depth IoU (layers empty in both volumes left out) versus depth, one panel per
    case (the dose study: per read dose; at most four per row) and one line per method: how
    quality falls off with depth."""
    groups = case_groups(rows, cases)
    if not groups:
        raise ValueError("no rows for per-depth IoU")
    palette = label_palette(ordered_labels(rows))
    fig, axes = panel_grid(len(groups))
    drawn = False
    for ax, (case, mine) in zip(axes, groups):
        for label in ordered_labels(mine):
            group = mine[mine["label"] == label]
            curves = [parse_depth_iou(v) for v in group["per_depth_iou"]]
            curves = [c for c in curves if c.size]
            if not curves:
                continue
            depth_layers = max(c.size for c in curves)
            stacked = np.full((len(curves), depth_layers), np.nan)
            for i, c in enumerate(curves):
                stacked[i, : c.size] = c
            mean = [quiet_mean(stacked[:, k]) for k in range(depth_layers)]
            ax.plot(np.arange(depth_layers) + 0.5, mean, marker=".", label=label,
                    color=palette[label])
            drawn = True
        ax.set_title(case)
        ax.set_xlabel("depth below Si surface (nm)")
        ax.set_ylabel("mean IoU of the layer")
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        raise ValueError("no per-depth IoU values in the rows")
    legend_below(fig, axes)
    return to_png(fig)


def loss_switch_epochs(histories: dict[str, pd.DataFrame]) -> list[float]:
    """Where each history's ``loss`` column switches from WBCE to the Lovász hinge: the x
    position between the last WBCE epoch and the first Lovász one (first Lovász epoch - 0.5),
    once per distinct position, sorted."""
    switches = set()
    for history in histories.values():
        if "loss" in history and "epoch" in history:
            lovasz = history.loc[history["loss"].astype(str) == "lovasz", "epoch"]
            if len(lovasz) and len(lovasz) < len(history):
                switches.add(float(lovasz.min()) - 0.5)
    return sorted(switches)


def training_curves_plot(histories: dict[str, pd.DataFrame]) -> bytes:
    """Validation mIoU and training loss versus epoch per trained model (like the paper's
    Fig. 4), keyed by method label. Where a history's ``loss`` column switches from WBCE to
    the Lovász hinge, a dashed line marks the first Lovász epoch: the two losses have
    different scales, so the loss curve jumps there without the model getting worse."""
    if not histories:
        raise ValueError("no training histories")
    palette = label_palette(histories)
    fig, (ax_miou, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    switches = loss_switch_epochs(histories)
    for name, history in histories.items():
        if "val_miou" in history:
            evaluated = history.dropna(subset=["val_miou"])  # validation runs every eval_every epochs
            ax_miou.plot(evaluated["epoch"], evaluated["val_miou"], marker=".", label=name,
                         color=palette[name])
        if "train_loss" in history:
            ax_loss.plot(history["epoch"], history["train_loss"], label=name, color=palette[name])
    for x in switches:
        for ax in (ax_miou, ax_loss):
            ax.axvline(x, color="0.35", ls="--", lw=1)
    if switches:
        x = switches[0]
        ax_loss.annotate("loss switch: WBCE → Lovász hinge\n(new loss, new scale: the jump is\n"
                         "not the model getting worse)", xy=(x, 0.97), xycoords=("data", "axes fraction"),
                         xytext=(-6, 0), textcoords="offset points", ha="right", va="top",
                         fontsize=style.SMALL_FONT_PT, color="0.25")
    ax_miou.set_xlabel("epoch")
    ax_miou.set_ylabel("validation mIoU")
    ax_miou.set_ylim(-0.02, 1.02)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (WBCE, then Lovász)" if switches else "training loss")
    if any("train_loss" in h and (h["train_loss"] > 0).all() for h in histories.values()):
        ax_loss.set_yscale("log")
        plain_log_axis(ax_loss.yaxis, subs=(1.0, 2.0, 5.0))
        ax_loss.set_ylabel(ax_loss.get_ylabel() + ", log scale")
    for ax in (ax_miou, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    legend_below(fig, [ax_miou, ax_loss])
    return to_png(fig)


def timing_plot(rows: pd.DataFrame) -> bytes:
    """Median inference seconds per volume per method on a linear axis (bars in the method's
    colour); the device is named in the bar's label where several devices ran."""
    timed = rows.dropna(subset=["seconds_per_volume"])
    timed = timed[timed["seconds_per_volume"] > 0]
    if timed.empty:
        raise ValueError("no timing values")
    timed = timed.assign(device=timed["device"].fillna("unknown device").astype(str))
    table = (timed.groupby(["label", "device"], sort=False)["seconds_per_volume"].median()
             .reset_index())
    order = {label: i for i, label in enumerate(ordered_labels(timed))}
    table = table.sort_values(["label", "device"], key=lambda s: s.map(order) if s.name == "label" else s)
    several = table["device"].nunique() > 1
    names = [f"{lab}\non {dev}" if several else lab for lab, dev in zip(table["label"], table["device"])]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(table) + 1.3))
    bars = ax.barh(range(len(table)), table["seconds_per_volume"],
                   color=[style.method_color(lab) for lab in table["label"]])
    ax.set_yticks(range(len(table)), names)
    ax.invert_yaxis()
    ax.bar_label(bars, fmt="%.3g s", padding=3, fontsize=style.SMALL_FONT_PT)
    ax.set_xlim(0, table["seconds_per_volume"].max() * 1.2)
    ax.set_xlabel("seconds per volume (median)")
    if not several:
        ax.set_title(f"device: {table['device'].iloc[0]}", fontsize=style.SMALL_FONT_PT + 0.5)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return to_png(fig)


def iou_vs_dose_plot(rows: pd.DataFrame) -> bytes:
    """The dose study (case ``dose``): mean IoU (test split and named cases) against the read
    electrons per pixel, per method, with the 95 % bootstrap interval of each mean as a band
    (``datasets.stats.bootstrap_mean_interval``)."""
    mine = rows[rows["case"] == DOSE_CASE]
    if mine.empty:
        raise ValueError(f"no rows of the dose study (case {DOSE_CASE})")
    mine = mine.assign(dose=mine["read_electrons_per_pixel"].astype(int))
    labels = ordered_labels(mine)
    palette = label_palette(labels)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for label in labels:
        part = mine[mine["label"] == label]
        doses = sorted(part["dose"].unique())
        intervals = [bootstrap_mean_interval(part.loc[part["dose"] == dose, "iou"]) for dose in doses]
        ax.plot(doses, [i.mean for i in intervals], marker="o", color=palette[label], label=label)
        ax.fill_between(doses, [i.low for i in intervals], [i.high for i in intervals],
                        color=palette[label], alpha=0.15)
    ax.set_xscale("log")
    all_doses = sorted(mine["dose"].unique())
    labelled = [d for i, d in enumerate(all_doses)  # a label closer than x1.3 to the previous one is left out
                if i == 0 or d / all_doses[i - 1] >= 1.3 or i == len(all_doses) - 1]
    labelled = [d for i, d in enumerate(labelled) if i == len(labelled) - 1 or labelled[i + 1] / d >= 1.3]
    ax.set_xticks(labelled)
    plain_log_axis(ax.xaxis)
    ax.set_xlabel("electrons per pixel per energy (log scale)")
    ax.set_ylabel("mean IoU of Cu")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("IoU against dose")
    legend_below(fig, [ax])
    return to_png(fig)


def iou_vs_realism_plot(rows: pd.DataFrame) -> bytes:
    """The realism study (case ``realism``): one panel per degradation present, mean IoU against
    the level's value (the ideal level at x = 0 first; the detector panel by category), per method
    with the 95 % bootstrap interval of each mean as a band; robust variants dashed, a dotted line
    at IoU ``FAIL_IOU``."""
    scores = realism_scores(rows)
    catalogue = level_catalogue()
    scores = scores[scores["acquisition"].isin(list(catalogue))]
    if scores.empty:
        raise ValueError(f"no rows of the realism study (case {REALISM_CASE}) at a known level")
    present = {catalogue[name].degradation for name in scores["acquisition"].unique()}
    degradations = [d for d in DEGRADATION_AXES if d in present]
    if not degradations:
        raise ValueError("the realism rows hold only the ideal level: no degradation to plot")
    labels = ordered_labels(scores)
    palette = label_palette(labels)
    robust = set(scores.loc[scores["variant"].astype(str) == ROBUST, "label"])
    fig, axes = panel_grid(len(degradations), panel_width=3.3, panel_height=2.8)
    for ax, degradation in zip(axes, degradations):
        start = baseline(degradation)  # ideal, or for the simulated degradations the ideal simulated again
        levels = [start] + [name for name, level in catalogue.items() if level.degradation == degradation]
        for label in labels:
            part = scores[scores["label"] == label]
            shown = [name for name in levels if (part["acquisition"] == name).any()]
            if not shown:
                continue
            x = [catalogue[name].value for name in shown]
            intervals = [bootstrap_mean_interval(part.loc[part["acquisition"] == name, "iou"]) for name in shown]
            ax.plot(x, [i.mean for i in intervals], marker="o", ms=4, color=palette[label], label=label,
                    ls="--" if label in robust else "-")
            ax.fill_between(x, [i.low for i in intervals], [i.high for i in intervals], color=palette[label],
                            alpha=0.12)
        ax.axhline(FAIL_IOU, color="0.35", ls=":", lw=1)
        ticks = [catalogue[name].value for name in levels]
        names = [DETECTOR_NAMES.get(name, name) if degradation == "detector" else f"{catalogue[name].value:g}"
                 for name in levels]
        ax.set_xticks(ticks, names)
        ax.set_xlabel(DEGRADATION_AXES[degradation])
        ax.set_title(degradation.replace("_", " "))
        ax.set_ylabel("mean IoU of Cu")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    legend_below(fig, axes)
    return to_png(fig)


def case_overview_plot(rows: pd.DataFrame, cases: list[str]) -> bytes:
    """The headline figure: mean IoU of Cu per case (one group of bars per case, one bar per
    method in its colour) on a linear 0-1 axis."""
    mine = rows[rows["case"].isin(cases)]
    if mine.empty:
        raise ValueError("no rows for the case overview")
    cases = [c for c in cases if (mine["case"] == c).any()]
    labels = ordered_labels(mine)
    means = mine.groupby(["case", "label"])["iou"].mean()
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(min(1.6 + 1.5 * len(cases), style.MAX_FIGURE_WIDTH_INCHES - 3), 3.6))
    for i, label in enumerate(labels):
        x = [k + (i - (len(labels) - 1) / 2) * width for k in range(len(cases))]
        y = [means.get((case, label), np.nan) for case in cases]
        ax.bar(x, y, width=width * 0.95, color=style.method_color(label), label=label)
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("mean IoU of Cu")
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3, axis="y")
    legend_below(fig, [ax])
    return to_png(fig)
