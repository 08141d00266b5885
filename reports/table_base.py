"""The parts every report table is made of: :class:`Table` (numbers, best-value mask, HTML),
the best-value mask, HTML rendering with ``pandas.Styler``, number formats and the paper's order
of methods, configs and variants.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

OURS, PAPER = "ours", "paper"
METHOD_ORDER = ("medsem", "unet3d", "bsevox")
CONFIG_ORDER = ("tiny", "matched", "lite", "small", "base", "medium", "moderate")
VARIANT_ORDER = ("full", "no-sope", "no-s2mlp", "no-convffn")


@dataclass
class Table:
    """One report table: numbers, best-value mask and rendered HTML."""

    key: str
    title: str
    caption: str
    frame: pd.DataFrame
    best: pd.DataFrame
    html: str


def best_mask(frame: pd.DataFrame, directions: dict) -> pd.DataFrame:
    """True where a cell holds its column's best value (``"max"`` or ``"min"``); ties all win.

    Columns missing from ``directions`` are never marked.
    """
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for column, direction in directions.items():
        if direction not in ("max", "min"):
            raise ValueError(f"direction for {column!r} must be 'max' or 'min', got {direction!r}")
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().any():
            best = values.max() if direction == "max" else values.min()
            mask[column] = np.isclose(values, best, rtol=0, atol=1e-12) & values.notna()
    return mask


def render_table(key: str, frame: pd.DataFrame, best: pd.DataFrame,
                 formatters: dict | Callable, na_rep: str = "—") -> str:
    """HTML of ``frame`` with best cells given the CSS class ``best`` (bold in the template)."""
    classes = best.replace({True: "best", False: ""}).astype(str)
    styler = (
        frame.style.format(formatters, na_rep=na_rep, escape="html")  # names are user input: escape
        .format_index(escape="html", axis=0)
        .format_index(escape="html", axis=1)
        .set_td_classes(classes)
        .set_uuid(key)
        .set_table_attributes(f'class="results" data-table="{key}"')
        .hide(axis="index", names=True)
    )
    return styler.to_html()


def fmt(decimals: int) -> Callable:
    return lambda v: "—" if is_nan(v) else f"{v:.{decimals}f}"


def fmt_si(v) -> str:
    """16000000 -> '16.0M', 1.1e9 -> '1.10G'."""
    if is_nan(v):
        return "—"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def sample_title(sample: str) -> str:
    """'position1' -> 'Position 1', 'radius2nm' -> 'r = 2 nm', anything else unchanged."""
    if m := re.fullmatch(r"position(\d+)", sample):
        return f"Position {m.group(1)}"
    if m := re.fullmatch(r"radius(\d+(?:\.\d+)?)nm", sample):
        return f"r = {m.group(1)} nm"
    return sample


def label_order_key(method: str, config, variant) -> tuple:
    m = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    c = CONFIG_ORDER.index(config) if config in CONFIG_ORDER else len(CONFIG_ORDER)
    v = VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)
    return (m, method, c, str(config), v, str(variant))


def ordered_labels(rows: pd.DataFrame) -> list[str]:
    """Labels of ``rows`` in paper order: MED-SEM, 3D U-Net, BSE-VoxNets, then others."""
    first = rows.drop_duplicates("label")
    keyed = sorted(
        zip(first["method"], first["config"], first["variant"], first["label"]),
        key=lambda t: label_order_key(str(t[0]), t[1], t[2]),
    )
    return [label for *_, label in keyed]


def first_value(group, column) -> float:
    """The first number of ``column`` in ``group`` (NaN when there is none or no group)."""
    if group is None:
        return np.nan
    values = pd.to_numeric(group[column], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else np.nan


def is_nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def natural_key(text) -> list:
    """'radius10nm' after 'radius2nm': digit runs compare as numbers."""
    return [(0, float(part), "") if part.isdigit() else (1, 0.0, part) for part in re.split(r"(\d+)", str(text)) if part]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
