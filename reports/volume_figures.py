"""The report's views of saved volumes (PNG bytes): 3D reconstructions and their errors, the
error per depth layer and the BSE input stack.

Volumes are ``[z, y, x]`` arrays over the 20 nm Si block, z = depth below the block top (1 nm
per voxel). 3D views are drawn as an isometric projection of the exposed faces of the voxels
(painter's algorithm) on ordinary 2D axes: all panels of a figure share one axes, which is
tens of times faster than one ``mplot3d`` axes per panel and looks the same.
"""

from __future__ import annotations

import io

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.patches import Patch
from PIL import Image

from reports import style
from reports.plotting import label_palette, legend_below, panel_grid, to_png
from reports.results import RunVolumes

CU_COLOR = "#c8742c"
FALSE_POSITIVE_COLOR = "#d62728"
FALSE_NEGATIVE_COLOR = "#1f77b4"
SURFACE_COLOR = "#7fb3d5"
VIEW_AZIMUTH_DEG = -55.0  # camera direction around the vertical axis
VIEW_ELEVATION_DEG = 30.0  # camera height above the block's top plane
#: the unit of the stored BSE images: the backscatter yield
BSE_UNIT = "BSE yield (detected e⁻ per primary e⁻)"

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
    """Panels of voxel volumes drawn side by side in one 2D axes (rows x columns).

    Every panel shows the block's wire frame with the Si surface (depth 0) shaded; the first
    column also carries nm scales along x, y and depth.
    """

    def __init__(self, n_rows: int, n_cols: int, shape_zyx, panel_inches: float = 2.4,
                 left_inches: float = 0.5, bottom_inches: float = 0.0, title_lines: int = 2):
        self.depth, self.height, self.width = shape_zyx
        self.right, self.up, self.toward = _view_basis()
        box = np.array([[x, y, z] for x in (0, self.width) for y in (0, self.height)
                        for z in (0, self.depth)], dtype=float)
        self.box = _to_height(box, self.depth)
        uv = self._project(self.box)
        self.low = uv.min(axis=0)
        size = uv.max(axis=0) - self.low
        # room for titles above and for the nm scales left of and below each box
        self.cell = size * np.array([1.3, 1.22 + 0.1 * title_lines])
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
            + np.array([0.16 * self.cell[0], 0.1 * self.cell[1]])

    def _scales(self, offset: np.ndarray) -> None:
        """nm ticks along the front x edge, the right y edge and the left depth edge."""
        step = 10 if max(self.width, self.height, self.depth) >= 15 else 5
        text = {"fontsize": style.SMALL_FONT_PT, "zorder": 3, "color": "0.25"}
        gap = 0.035 * self.cell[1]
        for x in range(step, self.width + 1, step):  # along y = 0 at the bottom (height 0); 0 is the depth scale's corner
            u, v = self._project(np.array([x, 0.0, 0.0])) + offset
            self.ax.text(u, v - gap, f"{x}", ha="center", va="top", **text)
        u, v = self._project(np.array([self.width / 2, 0.0, 0.0])) + offset
        self.ax.text(u - 0.1 * self.cell[0], v - 3.2 * gap, "x (nm)", ha="center", va="top", **text)
        for y in range(step, self.height + 1, step):  # along x = width at the bottom
            u, v = self._project(np.array([self.width, y, 0.0])) + offset
            self.ax.text(u + gap, v - 0.5 * gap, f"{y}", ha="left", va="top", **text)
        u, v = self._project(np.array([self.width, self.height / 2, 0.0])) + offset
        self.ax.text(u + 2.5 * gap, v - 1.5 * gap, "y (nm)", ha="left", va="top", **text)
        for z in range(0, self.depth + 1, step):  # depth along the left vertical edge
            u, v = self._project(np.array([0.0, 0.0, self.depth - z])) + offset
            self.ax.text(u - gap, v, f"{z}", ha="right", va="center", **text)
        u, v = self._project(np.array([0.0, 0.0, self.depth / 2])) + offset
        self.ax.text(u - 4.2 * gap, v, "depth (nm)", ha="right", va="center", rotation=90, **text)

    def panel(self, row: int, col: int, layers: list[tuple[np.ndarray, str]],
              title: str = "") -> None:
        """Draw the block's wire box with the Si surface shaded, then the exposed faces of each
        (mask, colour) layer; the first column gets nm scales."""
        offset = self._offset(row, col)
        edges = [self.box[[a, b]] for a in range(8) for b in range(a + 1, 8)
                 if np.count_nonzero(self.box[a] != self.box[b]) == 1]
        self.ax.add_collection(LineCollection(
            [self._project(e) + offset for e in edges], colors="0.65", linewidths=0.5, zorder=1))
        surface = np.array([[0, 0, self.depth], [self.width, 0, self.depth],
                            [self.width, self.height, self.depth], [0, self.height, self.depth]],
                           dtype=float)
        self.ax.add_collection(PolyCollection(
            [self._project(surface) + offset], facecolors=[(*matplotlib.colors.to_rgb(SURFACE_COLOR), 0.3)],
            edgecolors=SURFACE_COLOR, linewidths=1.0, zorder=0.5))
        if col == 0:
            self._scales(offset)
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
            self.ax.text(offset[0] + self.low[0] + 0.4 * self.cell[0], top + 0.03 * self.cell[1],
                         title, ha="center", va="bottom", fontsize=style.SMALL_FONT_PT, zorder=3)

    def row_label(self, row: int, text: str) -> None:
        """Bold label left of a row of panels (the method's name)."""
        y = 1 - (1 - self.bottom) * (row + 0.5) / self.n_rows
        self.fig.text(0.01, y, text, rotation=90, va="center",
                      ha="left", fontsize=style.FONT_PT, fontweight="bold")

    def surface_legend(self, extra: list | None = None) -> None:
        """Legend under the panels: the shaded Si surface (depth 0) and any ``extra`` patches."""
        handles = [Patch(facecolor=(*matplotlib.colors.to_rgb(SURFACE_COLOR), 0.3),
                         edgecolor=SURFACE_COLOR, label="Si surface (depth 0 nm, beam side)")]
        self.fig.legend(handles=handles + list(extra or []), loc="upper center",
                        bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False)

    def png(self) -> bytes:
        """The figure as a 256-colour palette PNG: the shaded faces look the same and the file
        is about four times smaller than full colour (there are ten such views per report)."""
        full = Image.open(io.BytesIO(to_png(self.fig, tight=True))).convert("RGB")
        buffer = io.BytesIO()
        full.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(buffer, format="png", optimize=True)
        return buffer.getvalue()


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
    canvas.surface_legend([Patch(color=CU_COLOR, label="Cu voxel (1 nm³)")])
    return canvas.png()


def render_errors(runs: list[RunVolumes], max_samples: int = 5) -> bytes:
    """Absolute error |binary - gt| per method and sample, like the paper's Fig. 7 and 10:
    red = false Cu (predicted, not there), blue = missed Cu."""
    if not runs:
        raise ValueError("render_errors needs at least one run")
    ids = runs[0].ids[:max_samples]
    canvas = IsometricCanvas(len(runs), len(ids), runs[0].gt.shape[1:])
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
    canvas.surface_legend([Patch(color=FALSE_POSITIVE_COLOR, label="false Cu (|error| = 1)"),
                           Patch(color=FALSE_NEGATIVE_COLOR, label="missed Cu (|error| = 1)")])
    return canvas.png()


def error_depth_plot(runs_by_case: dict[str, list[RunVolumes]]) -> bytes:
    """Mean absolute error |binary - gt| per depth layer (fraction of the layer's voxels that
    are wrong), averaged over each case's samples; one panel per case, one line per method."""
    cases = [c for c, runs in runs_by_case.items() if runs]
    if not cases:
        raise ValueError("error_depth_plot needs at least one run")
    palette = label_palette(r.label for c in cases for r in runs_by_case[c])
    fig, axes = panel_grid(len(cases))
    for ax, case in zip(axes, cases):
        for run in runs_by_case[case]:
            error = np.abs(run.binary.astype(np.int8) - run.gt.astype(np.int8)).mean(axis=(0, 2, 3))
            ax.plot(np.arange(len(error)) + 0.5, error, marker=".", label=run.label,
                    color=palette[run.label])
        ax.set_title(case)
        ax.set_xlabel("depth below Si surface (nm)")
        ax.set_ylabel("wrong voxels in the layer")
        ax.grid(alpha=0.3)
    legend_below(fig, axes)
    return to_png(fig)


def bse_strip(bse: np.ndarray, energies_keV, title: str = "") -> bytes:
    """All BSE images of one sample (E, H, W), one panel per beam energy (at most four per
    row), each on its own colour scale (the yield changes a lot with energy) with a colour bar
    in backscattered electrons per primary electron."""
    bse = np.asarray(bse, dtype=float)
    if bse.ndim != 3:
        raise ValueError(f"BSE stack must be (E, H, W), got shape {bse.shape}")
    energies = np.asarray(energies_keV, dtype=float)
    if energies.shape != (bse.shape[0],):
        raise ValueError(f"{bse.shape[0]} BSE images but {energies.size} energies")
    fig, axes = panel_grid(bse.shape[0], panel_width=3.0, panel_height=2.5, sharey=False)
    for ax, image, energy in zip(axes, bse, energies):
        shown = ax.imshow(image, cmap="gray", interpolation="nearest")
        ax.set_title(f"{energy:g} keV")
        ax.set_xticks([])
        ax.set_yticks([])
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=style.SMALL_FONT_PT)
        bar.set_label("e⁻ per primary", fontsize=style.SMALL_FONT_PT)
    fig.suptitle(f"{title}: {BSE_UNIT}, one colour scale per energy" if title else BSE_UNIT)
    fig.tight_layout()
    return to_png(fig)
