"""What every report figure shares: the Agg backend and the report's style (``reports.style``),
PNG output, panel grids, legends below the panels and plain-number log axes.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
# Case names, file names and labels are user input: draw them as plain text, never as mathtext
# (a name like "$\\frac{1}{0$" would otherwise fail to render and lose the figure).
matplotlib.rcParams["text.parse_math"] = False

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from reports import style  # noqa: E402

matplotlib.rcParams.update(style.FIGURE_RC)

DPI = style.DPI


def to_png(fig, tight: bool = True) -> bytes:
    """Render a figure to PNG bytes and close it (``tight`` crops the margins)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight" if tight else None,
                metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def plain_log_axis(axis, subs=(1.0,)) -> None:
    """Plain-number tick labels on a log axis: the default ones are math text ("10^{-1}"),
    which the report turns off (names in figures are never parsed as math). ``subs``: ticks
    within each decade, e.g. (1, 2, 5) so that a short range still gets several ticks."""
    if tuple(subs) != (1.0,):
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def label_palette(labels) -> dict[str, tuple]:
    """The fixed colour of each method label (``reports.style.method_color``)."""
    return style.method_palette(labels)


def panel_grid(n_panels: int, panel_width: float = 3.0, panel_height: float = 2.6,
               sharey: bool = True):
    """A figure with ``n_panels`` axes, at most ``style.MAX_PANELS_PER_ROW`` per row; returns
    (figure, the used axes in reading order). Unused grid cells are removed."""
    if n_panels < 1:
        raise ValueError("a panel grid needs at least one panel")
    n_cols = min(n_panels, style.MAX_PANELS_PER_ROW)
    n_rows = -(-n_panels // n_cols)
    fig, grid = plt.subplots(n_rows, n_cols, figsize=(panel_width * n_cols, panel_height * n_rows),
                             squeeze=False, sharey=sharey)
    axes = list(grid.ravel())
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    for ax in axes[:n_panels]:
        ax.yaxis.set_tick_params(labelleft=True)  # every panel keeps its numbers
    return fig, axes[:n_panels]


def legend_below(fig, axes, title: str | None = None) -> None:
    """One legend under all panels with every label once (outside the data)."""
    handles, names = [], []
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.tight_layout()
    if names:
        fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(names), 3), frameon=False, title=title)
