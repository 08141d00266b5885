"""One look for every report figure: method colours, font sizes and resolution.

Every figure takes a method's colour from :func:`method_color`, so a method has the same colour
in all figures of a report and across reports. The colour depends on the method's label only
(the name shown in tables and legends, e.g. ``BSE-VoxNets (tiny, no-sope)``): the base colour
comes from the method's name (the text before the parentheses), the details in parentheses
(threshold rule, ablation variant) only lighten it.
"""

from __future__ import annotations

import re
import zlib

import matplotlib.colors

#: PNG resolution (dots per inch). The page is about 1400 px wide: a figure up to
#: MAX_FIGURE_WIDTH_INCHES wide is shown at its own size, never scaled down.
DPI = 100
MAX_FIGURE_WIDTH_INCHES = 13.0
#: smallest font in a figure (points); at DPI 100, 8 pt = 11 px on the page
SMALL_FONT_PT = 8.0
FONT_PT = 9.5
#: at most this many panels side by side (more wrap into further rows)
MAX_PANELS_PER_ROW = 4

#: base colour per method name as shown in the report (the paper's names)
METHOD_COLORS = {
    "MED-SEM": "#3a6ea5",      # blue
    "3D U-Net": "#e07b39",     # orange
    "BSE-VoxNets": "#2e9e5b",  # green
}
#: colours for methods not in METHOD_COLORS, picked by a stable hash of the name
OTHER_COLORS = ("#8e5fb8", "#8c564b", "#d4589c", "#9a9a2e", "#2aa7b8", "#6b6b6b")
#: how far each detail lightens the base colour (0 = base colour, 1 = white)
DETAIL_LIGHTENING = {
    "oracle threshold": 0.45,
    "no-sope": 0.3,
    "no-s2mlp": 0.5,
    "no-convffn": 0.65,
}
#: details that keep the base colour: the main variant of a method
PLAIN_DETAILS = ("validation threshold", "full", "default")

FIGURE_RC = {
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT + 0.5,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": SMALL_FONT_PT + 0.5,
    "ytick.labelsize": SMALL_FONT_PT + 0.5,
    "legend.fontsize": SMALL_FONT_PT + 0.5,
    "legend.title_fontsize": SMALL_FONT_PT + 0.5,
    "figure.titlesize": FONT_PT + 1,
}


def split_label(label: str) -> tuple[str, list[str]]:
    """``'BSE-VoxNets (tiny, no-sope)'`` -> ``('BSE-VoxNets', ['tiny', 'no-sope'])``."""
    match = re.fullmatch(r"(.*?)\s*\((.*)\)\s*", str(label))
    if not match:
        return str(label).strip(), []
    return match.group(1), [part.strip() for part in match.group(2).split(",") if part.strip()]


def base_color(name: str) -> str:
    """The colour of a method name (``METHOD_COLORS``, else a stable pick from ``OTHER_COLORS``)."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    return OTHER_COLORS[zlib.crc32(name.encode("utf-8")) % len(OTHER_COLORS)]


def method_color(label: str) -> tuple[float, float, float]:
    """RGB colour of a method label: its method's base colour, lightened by the label's
    details (oracle threshold, ablation variant); a config name (``tiny``) changes nothing."""
    name, details = split_label(label)
    lighten = 0.0
    for detail in details:
        if detail in DETAIL_LIGHTENING:
            lighten = max(lighten, DETAIL_LIGHTENING[detail])
        elif detail.startswith("no-") or detail.endswith("threshold") and detail not in PLAIN_DETAILS:
            lighten = max(lighten, 0.2 + 0.15 * (zlib.crc32(detail.encode("utf-8")) % 3))
    rgb = matplotlib.colors.to_rgb(base_color(name))
    return tuple(c + (1.0 - c) * lighten for c in rgb)


def method_palette(labels) -> dict[str, tuple[float, float, float]]:
    """``{label: colour}`` for the given labels (see :func:`method_color`)."""
    return {label: method_color(label) for label in dict.fromkeys(labels)}


__all__ = ["DPI", "FIGURE_RC", "MAX_PANELS_PER_ROW", "METHOD_COLORS", "method_color", "method_palette",
           "split_label"]
