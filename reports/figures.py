"""The report's figures (matplotlib Agg + seaborn); every function returns PNG bytes.

Volumes are ``[z, y, x]`` arrays over the 20 nm Si block, z = depth below the block top (1 nm
per voxel). 3D views are drawn as an isometric projection of the exposed faces of the voxels
(painter's algorithm) on ordinary 2D axes: all panels of a figure share one axes, which is
tens of times faster than one ``mplot3d`` axes per panel and looks the same.
"""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
# Case names, file names and labels are user input: draw them as plain text, never as mathtext
# (a name like "$\frac{1}{0$" would otherwise fail to render and lose the figure).
matplotlib.rcParams["text.parse_math"] = False

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from reports.results import RunVolumes, parse_depth_iou, quiet_mean  # noqa: E402
from reports.tables import load_paper_results, ordered_labels  # noqa: E402

DPI = 80
CU_COLOR = "#c8742c"
FALSE_POSITIVE_COLOR = "#d62728"
FALSE_NEGATIVE_COLOR = "#1f77b4"
PAPER_MARKER = "s"
VIEW_AZIMUTH_DEG = -55.0  # camera direction around the vertical axis
VIEW_ELEVATION_DEG = 30.0  # camera height above the block's top plane

# unit-cube faces: (axis of [x, y, z], side) -> 4 corner offsets; z = depth (down)
_FACE_CORNERS = {
    (0, 0): [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1)],
    (0, 1): [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)],
    (1, 0): [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)],
    (1, 1): [(0, 1, 0), (1, 1, 0), (1, 1, 1), (0, 1, 1)],
    (2, 0): [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)],
    (2, 1): [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)],
}
_LIGHT = np.array([-0.4, -0.6, 1.0]) / np.linalg.norm([-0.4, -0.6, 1.0])  # in (x, y, height)


def to_png(fig, tight: bool = True) -> bytes:
    """Render a figure to PNG bytes and close it (``tight`` crops the margins)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight" if tight else None,
                metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def plain_log_axis(axis) -> None:
    """Plain-number tick labels on a log axis: the default ones are math text ("10^{-1}"),
    which the report turns off (names in figures are never parsed as math)."""
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def label_palette(labels) -> dict[str, tuple]:
    """A fixed colour per method label, in the given order."""
    labels = list(dict.fromkeys(labels))
    colors = sns.color_palette("tab10", n_colors=max(len(labels), 1))
    return {label: colors[i % len(colors)] for i, label in enumerate(labels)}


def voxel_faces(mask_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exposed faces of the filled voxels of a [z, y, x] mask.

    Returns quads (N, 4, 3) with corners in (x, y, z) nm (z = depth) and the outward unit
    normal of each quad (N, 3) in the same frame.
    """
    filled = np.asarray(mask_zyx, dtype=bool).transpose(2, 1, 0)  # -> [x, y, z]
    padded = np.pad(filled, 1)
    quads, normals = [], []
    for (axis, side), corners in _FACE_CORNERS.items():
        shift = 1 if side == 0 else -1
        neighbour = np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
        origins = np.argwhere(filled & ~neighbour).astype(float)
        if len(origins):
            quads.append(origins[:, None, :] + np.asarray(corners, dtype=float)[None])
            normal = np.zeros(3)
            normal[axis] = 1.0 if side == 1 else -1.0
            normals.append(np.broadcast_to(normal, (len(origins), 3)))
    if not quads:
        return np.zeros((0, 4, 3)), np.zeros((0, 3))
    return np.concatenate(quads), np.concatenate(normals)


def _view_basis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(screen right, screen up, toward camera) unit vectors in (x, y, height) coordinates."""
    a, e = np.radians(VIEW_AZIMUTH_DEG), np.radians(VIEW_ELEVATION_DEG)
    toward_camera = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    right = np.array([-np.sin(a), np.cos(a), 0.0])
    return right, np.cross(toward_camera, right), toward_camera


def _to_height(points: np.ndarray, depth: int) -> np.ndarray:
    """(x, y, z-depth) -> (x, y, height above the block bottom): depth grows downwards."""
    out = np.array(points, dtype=float)
    out[..., 2] = depth - out[..., 2]
    return out


class IsometricCanvas:
    """Panels of voxel volumes drawn side by side in one 2D axes (rows x columns)."""

    def __init__(self, n_rows: int, n_cols: int, shape_zyx, panel_inches: float = 2.0,
                 left_inches: float = 0.35, bottom_inches: float = 0.0, title_lines: int = 2):
        self.depth, height, width = shape_zyx
        self.right, self.up, self.toward = _view_basis()
        box = np.array([[x, y, z] for x in (0, width) for y in (0, height)
                        for z in (0, self.depth)], dtype=float)
        self.box = _to_height(box, self.depth)
        uv = self._project(self.box)
        self.low = uv.min(axis=0)
        size = uv.max(axis=0) - self.low
        self.cell = size * np.array([1.08, 1.0 + 0.09 * title_lines])  # room for titles
        self.n_rows, self.n_cols = n_rows, n_cols
        aspect = self.cell[1] / self.cell[0]
        self.fig = plt.figure(figsize=(left_inches + panel_inches * n_cols,
                                       bottom_inches + panel_inches * aspect * n_rows))
        left = left_inches / self.fig.get_figwidth()
        self.bottom = bottom_inches / self.fig.get_figheight()
        self.ax = self.fig.add_axes((left, self.bottom, 1 - left, 1 - self.bottom))
        self.ax.set_xlim(0, self.cell[0] * n_cols)
        self.ax.set_ylim(-self.cell[1] * n_rows, 0)
        self.ax.set_aspect("equal")
        self.ax.set_axis_off()

    def _project(self, points: np.ndarray) -> np.ndarray:
        return np.stack([points @ self.right, points @ self.up], axis=-1)

    def _offset(self, row: int, col: int) -> np.ndarray:
        """Screen position of a panel's projected origin."""
        return np.array([col * self.cell[0], -(row + 1) * self.cell[1]]) - self.low \
            + np.array([0.04 * self.cell[0], 0.0])

    def panel(self, row: int, col: int, layers: list[tuple[np.ndarray, str]],
              title: str = "") -> None:
        """Draw a wire box of the block and the exposed faces of each (mask, colour) layer."""
        offset = self._offset(row, col)
        edges = [self.box[[a, b]] for a in range(8) for b in range(a + 1, 8)
                 if np.count_nonzero(self.box[a] != self.box[b]) == 1]
        self.ax.add_collection(LineCollection(
            [self._project(e) + offset for e in edges], colors="0.65", linewidths=0.5, zorder=1))
        polygons, colors, keys = [], [], []
        for mask, color in layers:
            quads, normals = voxel_faces(mask)
            if not len(quads):
                continue
            quads, normals = _to_height(quads, self.depth), normals * np.array([1, 1, -1])
            visible = normals @ self.toward > 0  # back faces are hidden anyway
            quads, normals = quads[visible], normals[visible]
            shade = 0.55 + 0.45 * np.clip(normals @ _LIGHT, 0, 1)
            base = np.asarray(matplotlib.colors.to_rgb(color))
            polygons.append(self._project(quads) + offset)
            colors.append(np.clip(base[None] * shade[:, None], 0, 1))
            keys.append(quads.mean(axis=1) @ self.toward)
        if polygons:
            order = np.argsort(np.concatenate(keys), kind="stable")  # far faces first
            self.ax.add_collection(PolyCollection(
                np.concatenate(polygons)[order], facecolors=np.concatenate(colors)[order],
                edgecolors=(0, 0, 0, 0.25), linewidths=0.2, zorder=2))
        if title:
            top = offset[1] + self._project(self.box)[:, 1].max()
            self.ax.text(offset[0] + self.low[0] + 0.48 * self.cell[0], top + 0.02 * self.cell[1],
                         title, ha="center", va="bottom", fontsize=7, zorder=3)

    def row_label(self, row: int, text: str) -> None:
        """Bold label left of a row of panels (the method's name)."""
        y = 1 - (1 - self.bottom) * (row + 0.5) / self.n_rows
        self.fig.text(0.01, y, text, rotation=90, va="center",
                      ha="left", fontsize=8, fontweight="bold")

    def png(self) -> bytes:
        return to_png(self.fig, tight=False)


def _index(run: RunVolumes, sample_id: str) -> int | None:
    return run.ids.index(sample_id) if sample_id in run.ids else None


def render_reconstructions(runs: list[RunVolumes], max_samples: int = 5) -> bytes:
    """3D view of the ground truth (first row) and each method's binary reconstruction (one row
    per method, one column per sample), like the paper's Fig. 5 and Fig. 8."""
    if not runs:
        raise ValueError("render_reconstructions needs at least one run")
    ids = runs[0].ids[:max_samples]
    rows = [("Ground truth", runs[0], "gt")] + [(r.label, r, "binary") for r in runs]
    canvas = IsometricCanvas(len(rows), len(ids), runs[0].gt.shape[1:])
    for i, (label, run, field) in enumerate(rows):
        canvas.row_label(i, label)
        for j, sample in enumerate(ids):
            k = _index(run, sample)
            if k is None:
                canvas.panel(i, j, [], f"{sample}: not run")
                continue
            volume = getattr(run, field)[k]
            n = int(np.count_nonzero(volume))
            title = f"{sample}\n{n} Cu voxels" if i == 0 else f"{n} Cu voxels"
            canvas.panel(i, j, [(volume, CU_COLOR)], title)
    return canvas.png()


def render_errors(runs: list[RunVolumes], max_samples: int = 5) -> bytes:
    """Absolute error |binary - gt| per method and sample, like the paper's Fig. 7 and 10:
    red = false Cu (predicted, not there), blue = missed Cu."""
    if not runs:
        raise ValueError("render_errors needs at least one run")
    ids = runs[0].ids[:max_samples]
    canvas = IsometricCanvas(len(runs), len(ids), runs[0].gt.shape[1:], bottom_inches=0.3)
    for i, run in enumerate(runs):
        canvas.row_label(i, run.label)
        for j, sample in enumerate(ids):
            k = _index(run, sample)
            if k is None:
                canvas.panel(i, j, [], f"{sample}: not run")
                continue
            pred, gt = run.binary[k].astype(bool), run.gt[k].astype(bool)
            false_cu, missed = pred & ~gt, gt & ~pred
            canvas.panel(i, j, [(false_cu, FALSE_POSITIVE_COLOR), (missed, FALSE_NEGATIVE_COLOR)],
                         f"{sample}\nfalse {np.count_nonzero(false_cu)} / "
                         f"missed {np.count_nonzero(missed)}")
    canvas.fig.legend(handles=[Patch(color=FALSE_POSITIVE_COLOR, label="false Cu (|error| = 1)"),
                               Patch(color=FALSE_NEGATIVE_COLOR, label="missed Cu (|error| = 1)")],
                      loc="lower right", ncol=2, fontsize=7, frameon=False)
    return canvas.png()


def error_depth_plot(runs_by_case: dict[str, list[RunVolumes]]) -> bytes:
    """Mean absolute error |binary - gt| per depth layer (fraction of the layer's voxels that
    are wrong), averaged over each case's samples; one panel per case, one line per method."""
    cases = [c for c, runs in runs_by_case.items() if runs]
    if not cases:
        raise ValueError("error_depth_plot needs at least one run")
    palette = label_palette(r.label for c in cases for r in runs_by_case[c])
    fig, axes = plt.subplots(1, len(cases), figsize=(3.4 * len(cases), 3.0), squeeze=False,
                             sharey=True)
    for ax, case in zip(axes[0], cases):
        for run in runs_by_case[case]:
            error = np.abs(run.binary.astype(np.int8) - run.gt.astype(np.int8)).mean(axis=(0, 2, 3))
            ax.plot(np.arange(len(error)) + 0.5, error, marker=".", label=run.label,
                    color=palette[run.label])
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("depth below block top (nm)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean |binary − gt| per layer")
    _shared_legend(fig, axes[0])
    return to_png(fig)


def _shared_legend(fig, axes) -> None:
    """One legend under the panels with every label once."""
    handles, names = [], []
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.tight_layout(rect=(0, 0.1 + 0.03 * (len(names) // 4), 1, 1))
    if names:
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), fontsize=7,
                   frameon=False)


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
    paper's values as dashed lines with square markers."""
    mine = rows[rows["case"] == case]
    if mine.empty:
        raise ValueError(f"no rows for case {case!r}")
    means = mine.groupby(["label", "sample"])["iou"].mean().reset_index()
    samples = sorted(means["sample"].unique(), key=lambda s: sample_axis([s])[0][0])
    x_of = dict(zip(samples, sample_axis(samples)[0]))
    x_name = sample_axis(samples)[1]
    labels = ordered_labels(mine)
    palette = label_palette(labels)
    method_of = dict(zip(mine["label"], mine["method"]))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label in labels:
        part = means[means["label"] == label].copy()
        part["x"] = part["sample"].map(x_of)
        part = part.sort_values("x")
        ax.plot(part["x"], part["iou"], marker="o", label=f"{label} (ours)", color=palette[label])
    if paper_case:
        names = load_paper_results()["method_names"]  # the paper's spelling of its methods
        x_paper, _ = sample_axis(paper_case["samples"])
        gray = sns.color_palette("Greys", 5)
        for n, (method, values) in enumerate(paper_case["iou"].items()):
            ours = [lab for lab in labels if method_of.get(lab) == method]
            color = palette[ours[0]] if ours else gray[2 + n % 3]
            ax.plot(x_paper, values, ls="--", marker=PAPER_MARKER, ms=4, alpha=0.7, color=color,
                    label=f"{names.get(method, method)} (paper)")
    ax.set_xlabel(x_name)
    ax.set_ylabel("IoU of Cu")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xticks(sorted(set(x_of.values())))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"IoU per sample — {case}", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def per_depth_iou_plot(rows: pd.DataFrame, cases: list[str]) -> bytes:
    """Mean per-depth IoU (layers empty in both volumes left out) versus depth, one panel per
    case and one line per method: how reconstruction quality falls off with depth."""
    cases = [c for c in cases if (rows["case"] == c).any()]
    if not cases:
        raise ValueError("no rows for per-depth IoU")
    palette = label_palette(ordered_labels(rows))
    fig, axes = plt.subplots(1, len(cases), figsize=(3.6 * len(cases), 3.2), squeeze=False,
                             sharey=True)
    drawn = False
    for ax, case in zip(axes[0], cases):
        mine = rows[rows["case"] == case]
        for label, group in mine.groupby("label", sort=False):
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
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("depth below block top (nm)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean IoU of the layer")
    axes[0][0].set_ylim(-0.02, 1.05)
    if not drawn:
        plt.close(fig)
        raise ValueError("no per-depth IoU values in the rows")
    _shared_legend(fig, axes[0])
    return to_png(fig)


def training_curves_plot(histories: dict[str, pd.DataFrame]) -> bytes:
    """Validation mIoU and training loss versus epoch per trained model (like the paper's
    Fig. 4)."""
    if not histories:
        raise ValueError("no training histories")
    palette = label_palette(histories)
    fig, (ax_miou, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, history in histories.items():
        if "val_miou" in history:
            evaluated = history.dropna(subset=["val_miou"])  # validation runs every eval_every epochs
            ax_miou.plot(evaluated["epoch"], evaluated["val_miou"], marker=".", label=name,
                         color=palette[name])
        if "train_loss" in history:
            ax_loss.plot(history["epoch"], history["train_loss"], label=name, color=palette[name])
    ax_miou.set_xlabel("epoch")
    ax_miou.set_ylabel("validation mIoU")
    ax_miou.set_ylim(-0.02, 1.02)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    if any("train_loss" in h and (h["train_loss"] > 0).all() for h in histories.values()):
        ax_loss.set_yscale("log")
        plain_log_axis(ax_loss.yaxis)
    for ax in (ax_miou, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return to_png(fig)


def timing_plot(rows: pd.DataFrame) -> bytes:
    """Median inference seconds per volume per method (log scale), coloured by device."""
    timed = rows.dropna(subset=["seconds_per_volume"])
    timed = timed[timed["seconds_per_volume"] > 0]
    if timed.empty:
        raise ValueError("no timing values")
    table = (timed.assign(device=timed["device"].fillna("unknown device").astype(str))
             .groupby(["label", "device"], sort=False)["seconds_per_volume"].median()
             .reset_index())
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(table) + 1.4))
    sns.barplot(data=table, y="label", x="seconds_per_volume", hue="device", ax=ax,
                orient="h", palette="Set2")
    ax.set_xscale("log")
    plain_log_axis(ax.xaxis)
    ax.set_xlabel("seconds per volume (median, log scale)")
    ax.set_ylabel("")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3g s", fontsize=7, padding=2)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(title="device", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    return to_png(fig)


def bse_strip(bse: np.ndarray, energies_keV, title: str = "") -> bytes:
    """All BSE images of one sample (E, H, W), one panel per beam energy, each scaled to its
    own min-max (the yield changes a lot with energy); the range is printed under each panel."""
    bse = np.asarray(bse, dtype=float)
    if bse.ndim != 3:
        raise ValueError(f"BSE stack must be (E, H, W), got shape {bse.shape}")
    energies = np.asarray(energies_keV, dtype=float)
    if energies.shape != (bse.shape[0],):
        raise ValueError(f"{bse.shape[0]} BSE images but {energies.size} energies")
    n_cols = min(10, bse.shape[0])
    n_rows = int(np.ceil(bse.shape[0] / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.25 * n_cols, 1.5 * n_rows + 0.3),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (image, energy) in enumerate(zip(bse, energies)):
        ax = axes.ravel()[k]
        ax.imshow(image, cmap="gray", interpolation="nearest")
        ax.set_title(f"{energy:g} keV", fontsize=7)
        ax.text(0.5, -0.06, f"{image.min():.2g}–{image.max():.2g}", transform=ax.transAxes,
                ha="center", va="top", fontsize=6.5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.05, top=0.86 if title else 0.92,
                        wspace=0.08, hspace=0.45)
    return to_png(fig)


def iou_vs_dose_plot(rows: pd.DataFrame) -> bytes:
    """The dose study: mean IoU (test split and named cases) against the electrons per pixel,
    per method, with the 95 % bootstrap interval of each mean as a band."""
    mine = rows[rows["case"].astype(str).str.startswith("dose:")]
    if mine.empty:
        raise ValueError("no rows of the dose study (cases dose:<N>)")
    mine = mine.assign(dose=mine["case"].str[5:].astype(int))
    labels = ordered_labels(mine)
    palette = label_palette(labels)
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label in labels:
        part = mine[mine["label"] == label]
        doses = sorted(part["dose"].unique())
        means, lows, highs = [], [], []
        for dose in doses:
            values = part.loc[part["dose"] == dose, "iou"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            boot = values[rng.integers(0, len(values), size=(1000, len(values)))].mean(axis=1)
            means.append(values.mean())
            lows.append(np.percentile(boot, 2.5))
            highs.append(np.percentile(boot, 97.5))
        ax.plot(doses, means, marker="o", color=palette[label], label=label)
        ax.fill_between(doses, lows, highs, color=palette[label], alpha=0.15)
    ax.set_xscale("log")
    all_doses = sorted(mine["dose"].unique())
    labelled = [d for i, d in enumerate(all_doses)  # a label closer than x1.3 to the previous one is left out
                if i == 0 or d / all_doses[i - 1] >= 1.3 or i == len(all_doses) - 1]
    labelled = [d for i, d in enumerate(labelled) if i == len(labelled) - 1 or labelled[i + 1] / d >= 1.3]
    ax.set_xticks(labelled)
    plain_log_axis(ax.xaxis)
    ax.set_xlabel("electrons per pixel per energy")
    ax.set_ylabel("mean IoU of Cu")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("IoU against dose", fontsize=10)
    fig.tight_layout()
    return to_png(fig)

