"""The scaling report's figures (PNG bytes): the learning curves (mean IoU against the number of
training geometries N, the fitted power laws extrapolated to the paper's N = 10,000, the paper's
BSE-VoxNets results there) and the mean IoU against the parameter count at each N run at several
model sizes.

Colours are the main report's network colours (``reports.style``); a marker tells the sizes apart.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from benchmark.scaling_fit import PAPER_N, power_law
from reports.paper_tables import load_paper_results
from reports.plotting import legend_below, panel_grid, plain_log_axis, to_png
from reports.scaling import Model, ScalingStudy
from reports.style import METHOD_COLORS
from reports.table_base import fmt_si

#: one marker per model size, fewest parameters first
SIZE_MARKERS = ("o", "s", "^", "D", "v", "P")
#: the paper's results at N = 10,000
PAPER_MARKER = "*"
#: our extrapolated points at N = 10,000 are dodged by this factor per model (centred on 10,000)
DODGE = 1.06
#: the smallest vertical gap between the paper's labels (IoU units)
LABEL_GAP = 0.045


def size_marker(study: ScalingStudy, size: str) -> str:
    sizes = study.sizes()
    return SIZE_MARKERS[sizes.index(size) % len(SIZE_MARKERS)] if size in sizes else SIZE_MARKERS[-1]


def _model_points(study: ScalingStudy, model: Model):
    points = study.points()
    mine = points[(points["network"] == model.network) & (points["config"] == model.config)
                  & (points["size"] == model.size)].sort_values("n_train")
    return mine["n_train"].to_numpy(float), mine["miou"].to_numpy(float), mine["low"].to_numpy(float), \
        mine["high"].to_numpy(float)


def learning_curves_plot(study: ScalingStudy) -> bytes:
    """Mean IoU against N (log axis), one curve per model with its 95 % bootstrap band; the fitted
    power law thin over the fitted range and dashed out to N = 10,000, where an open marker shows
    its extrapolation with the interval; stars: the paper's BSE-VoxNets (Table 2) at N = 10,000."""
    models = study.models()
    if not models:
        raise ValueError("no learning-curve points to draw")
    fits = study.analysis.get("fits") or {}
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    for k, model in enumerate(models):
        n, miou, low, high = _model_points(study, model)
        colour, marker = model.colour, size_marker(study, model.size)
        ax.fill_between(n, low, high, color=colour, alpha=0.13, linewidth=0)
        fit = fits.get(model.key)
        ax.plot(n, miou, marker=marker, color=colour, linestyle="none" if fit else "-", label=model.name)
        if fit:
            _draw_fit(ax, fit, n, colour, marker, PAPER_N * DODGE ** (k - (len(models) - 1) / 2))
    _draw_paper(ax)
    ax.plot([], [], color="0.35", linewidth=1.0, label="power-law fit (fitted range)")
    ax.plot([], [], color="0.35", linewidth=1.0, linestyle="--", label=f"fit extrapolated to N = {PAPER_N:,}")
    ax.plot([], [], color="0.35", marker="o", markerfacecolor="white", linestyle="none",
            label=f"extrapolated IoU at N = {PAPER_N:,} (95 % CI)")
    ax.axvline(PAPER_N, color="0.6", linestyle=":", linewidth=1.0)
    ax.annotate(f"paper's N = {PAPER_N:,}", (PAPER_N, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                textcoords="offset points", ha="center", va="bottom", fontsize=8, color="0.4")
    run = sorted({float(v) for v in study.rows["n_train"].unique()})
    ax.set_xscale("log")
    ax.set_xlim(run[0] / 1.4, PAPER_N * 3.2)
    ax.set_xticks([*run, *([PAPER_N] if PAPER_N / run[-1] >= 1.5 else [])])
    plain_log_axis(ax.xaxis)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xlabel("training geometries N (log scale)")
    ax.set_ylabel("mean IoU of Cu (evaluation set)")
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3, which="major")
    ax.set_title("Learning curves: IoU against the number of training geometries", pad=14)
    legend_below(fig, [ax])
    return to_png(fig)


def _draw_fit(ax, fit: dict, n: np.ndarray, colour, marker: str, x_extrapolated: float) -> None:
    """The fitted power law over the fitted range, dashed beyond it to N = 10,000, and the
    extrapolated value with its interval (an open marker at ``x_extrapolated``)."""
    params = [fit[name]["value"] for name in "abc"]
    inside = np.geomspace(n.min(), n.max(), 80)
    ax.plot(inside, power_law(inside, *params), color=colour, linewidth=1.0)
    if PAPER_N > n.max():
        outside = np.geomspace(n.max(), PAPER_N, 60)
        ax.plot(outside, power_law(outside, *params), color=colour, linewidth=1.0, linestyle="--")
    at = fit["extrapolated"]
    low, high = at["interval"]
    error = None if not (np.isfinite(low) and np.isfinite(high)) else \
        [[max(at["iou"] - low, 0.0)], [max(high - at["iou"], 0.0)]]
    ax.errorbar([x_extrapolated], [at["iou"]], yerr=error, marker=marker, markerfacecolor="white", color=colour,
                capsize=2.5, linewidth=1.0, zorder=3)


def _draw_paper(ax) -> None:
    """The paper's Table 2 test mIoU of each BSE-VoxNets configuration at N = 10,000, labelled
    with its configuration and parameter count (labels spread apart vertically)."""
    configs = load_paper_results()["table2_configs"]["configs"]
    colour = METHOD_COLORS["BSE-VoxNets"]
    order = sorted(configs.items(), key=lambda item: item[1]["miou"])
    ax.plot([PAPER_N] * len(order), [c["miou"] for _, c in order], linestyle="none", marker=PAPER_MARKER,
            markersize=10, color=colour, markeredgecolor="black", markeredgewidth=0.5, alpha=0.8, zorder=2,
            label="paper Table 2: BSE-VoxNets, 16-179 M parameters, N = 10,000, 1,000 e-/pixel")
    placed = []
    for name, config in order:
        y = config["miou"] if not placed else max(config["miou"], placed[-1] + LABEL_GAP)
        placed.append(y)
        ax.annotate(f"{name} {fmt_si(config['parameters'])}: {config['miou']:.3f}", (PAPER_N, config["miou"]),
                    xytext=(PAPER_N * 1.25, y), fontsize=8, va="center", color="0.2",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.6})


def sizes_at_n(study: ScalingStudy) -> list[int]:
    """The N run at more than one model size."""
    points = study.points()
    counts = points.groupby("n_train")["size"].nunique() if len(points) else points
    return [int(n) for n, k in counts.items() if k > 1] if len(points) else []


def iou_vs_parameters_plot(study: ScalingStudy) -> bytes:
    """One panel per N run at several sizes: mean IoU against the parameter count (log axis,
    ticks at the sizes), one line per network with its 95 % bootstrap interval as error bars."""
    chosen = sizes_at_n(study)
    if not chosen:
        raise ValueError("no training-set size N was run at more than one model size: "
                         "nothing to draw against the parameter count")
    points, models = study.points(), study.models()
    fig, axes = panel_grid(len(chosen), panel_width=3.3, panel_height=2.9)
    for ax, n in zip(axes, chosen):
        for network in dict.fromkeys(m.network for m in models):
            mine = [(m, points[(points["network"] == m.network) & (points["config"] == m.config)
                               & (points["size"] == m.size) & (points["n_train"] == n)])
                    for m in models if m.network == network]
            mine = [(m.parameters, p.iloc[0]) for m, p in mine if len(p)]
            if not mine:
                continue
            x = np.array([params for params, _ in mine], float)
            y = np.array([p["miou"] for _, p in mine])
            error = np.array([[p["miou"] - p["low"] for _, p in mine], [p["high"] - p["miou"] for _, p in mine]])
            first = next(m for m in models if m.network == network)
            ax.errorbar(x, y, yerr=np.clip(np.nan_to_num(error), 0, None), marker="o", capsize=2.5,
                        color=first.colour, label=study.network_name(network))
        _parameter_axis(ax, study)
        ax.set_title(f"N = {n:,}")
        ax.set_ylabel("mean IoU of Cu")
        ax.grid(alpha=0.3)
    fig.suptitle("IoU against model size at fixed N")
    legend_below(fig, axes)
    return to_png(fig)


def _parameter_axis(ax, study: ScalingStudy) -> None:
    """Log axis of parameters with one tick per size (its label and the networks' mean count)."""
    sizes = study.sizes()
    means = study.rows.drop_duplicates(["network", "size"]).groupby("size")["parameters"].apply(
        lambda v: float(np.exp(np.log(v.astype(float)).mean())))
    ax.set_xscale("log")
    ax.set_xticks([means[s] for s in sizes])
    ax.set_xticklabels([f"{s}\n({fmt_si(means[s])})" for s in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlim(means.min() / 1.8, means.max() * 1.8)
    ax.set_xlabel("parameters (log scale)")
