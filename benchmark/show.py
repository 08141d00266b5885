"""``python -m benchmark show VOLUME [-o out.png]``: slices of a reconstruction as one PNG.

The figure has xy slices at several depths and one xz cut through the row (y) holding the most
Cu (of the mask, when the file has one), axes in nm in the scene frame (z down from the detector plane), the Si surface
marked on the xz cut, and one colour bar (Cu probability, or the Cu mask with ``--binary``).
Its size is exactly ``FIGURE_SIZE_IN`` x ``dpi`` pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import BenchmarkError, UsageError
from benchmark.reconstruct import load_volume, volume_stem
from datasets.files import atomic_path

#: figure size in inches (width, height); the PNG is this times ``dpi`` pixels
FIGURE_SIZE_IN = (13.0, 3.2)
N_DEPTHS = 4


def slice_depths(depth: int, n: int = N_DEPTHS) -> list[int]:
    """``n`` layer indices spread evenly over ``depth`` layers (centres of n equal bands)."""
    return sorted({min(depth - 1, int((2 * k + 1) * depth / (2 * n))) for k in range(n)})


def draw_volume(volume_path, out_png=None, binary: bool = False, dpi: int = 100) -> Path:
    """Draw ``volume_path`` (any format of :mod:`benchmark.reconstruct`) to ``out_png``
    (default ``VOLUME.png`` beside it); returns the PNG's path."""
    if dpi < 10 or dpi > 1000:
        raise UsageError(f"--dpi must be between 10 and 1000, got {dpi}")
    probability, mask, meta = load_volume(volume_path)
    volume = probability
    if binary:
        if mask is None:
            raise BenchmarkError(f"{volume_path} holds no binary mask")
        volume = mask
    volume = np.asarray(volume, dtype=float)
    if volume.ndim != 3:
        raise BenchmarkError(f"{volume_path}: expected a (D, H, W) volume, got shape {volume.shape}")
    volume_path = Path(volume_path)
    out_png = Path(out_png) if out_png else volume_path.with_name(volume_stem(volume_path) + ".png")
    if out_png.suffix.lower() != ".png":
        raise UsageError(f"-o {out_png}: the figure is a PNG; give a name ending in .png")
    if out_png.is_dir():
        raise UsageError(f"-o {out_png} is a directory; give a file name such as {out_png / 'volume.png'}")
    figure = volume_figure(volume, mask, meta, binary, dpi)
    with atomic_path(out_png) as tmp, tmp.open("wb") as handle:
        figure.savefig(handle, dpi=dpi, format="png")
    return out_png


def volume_figure(volume: np.ndarray, mask, meta: dict, binary: bool, dpi: int):
    """The figure: xy slices at :func:`slice_depths`, the xz cut through the row holding the
    most Cu, one colour bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    (dz, dy, dx), (oz, oy, ox) = meta["voxel_size_nm"], meta["origin_nm"]
    depth, height, width = volume.shape
    edges = {"x": (ox - dx / 2, ox - dx / 2 + width * dx), "y": (oy - dy / 2, oy - dy / 2 + height * dy),
             "z": (oz - dz / 2, oz - dz / 2 + depth * dz)}
    label = "Cu mask (1 = Cu)" if binary else "Cu probability"
    depths = slice_depths(depth)

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=dpi)
    FigureCanvasAgg(fig)
    *axes, colour_axis = fig.subplots(1, len(depths) + 2,
                                      gridspec_kw={"width_ratios": [1] * len(depths) + [1.4, 0.07]})
    style = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0, "interpolation": "nearest"}
    for ax, k in zip(axes, depths):
        image = ax.imshow(volume[k], origin="upper", extent=(*edges["x"], edges["y"][1], edges["y"][0]), **style)
        ax.set_title(f"xy at z = {oz + k * dz:.1f} nm", fontsize=9)
        ax.set_xlabel("x (nm)")
    axes[0].set_ylabel("y (nm)")
    _draw_xz(axes[-1], volume, mask, meta, edges, style)
    fig.colorbar(image, cax=colour_axis, label=label)
    threshold = meta.get("threshold")
    fig.suptitle(f"{meta.get('method', '?')}: {label}" + ("" if threshold is None else f" (threshold {threshold:.2f})"),
                 fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.94, bottom=0.18, top=0.8, wspace=0.35)
    return fig


def _draw_xz(xz, volume: np.ndarray, mask, meta: dict, edges: dict, style: dict) -> None:
    """The xz cut through the row holding the most Cu voxels of the mask (a diffuse probability
    volume's largest row sum can lie far from the Cu), else the largest probability sum; the
    vacuum above the block in grey and the Si surface as a red line."""
    (dz, dy, dx), (_, oy, _) = meta["voxel_size_nm"], meta["origin_nm"]
    x_edges, z_edges = edges["x"], edges["z"]
    cu = np.asarray(mask, dtype=float) if mask is not None and np.any(mask) else volume
    row = int(np.argmax(cu.sum(axis=(0, 2))))
    xz.imshow(volume[:, row, :], origin="upper", extent=(*x_edges, z_edges[1], z_edges[0]), aspect="auto", **style)
    surface = meta.get("si_surface_z_nm")
    if surface is not None:
        top = min(z_edges[0], surface) - 3 * dz
        xz.axhspan(top, surface, color="0.85")
        xz.axhline(surface, color="red", linestyle="--", linewidth=1.2)
        xz.text(x_edges[0] + 0.5 * dx, surface - 0.3 * dz, f"Si surface z = {surface:g} nm", color="red",
                fontsize=8, va="bottom")
        xz.set_ylim(z_edges[1], top)
    xz.set_title(f"xz at y = {oy + row * dy:.1f} nm", fontsize=9)
    xz.set_xlabel("x (nm)")
    xz.set_ylabel("z (nm, down)")
