"""The scaling study's report (``python -m reports scaling RESULTS_DIR``): a study folder's rows
and fits (``scaling.parquet`` and ``fits.json``, written by ``benchmark/scaling_study.py``) as
tables of the learning-curve points, the paired U-Net - BSE-VoxNets differences, the power-law
extrapolation to N = 10,000 beside the paper's Table 2 and the curve crossings; remarks generated
from the numbers, the statement of what ran, and the same tables as README-ready Markdown.

The figures are in :mod:`reports.scaling_figures`, the HTML page in :mod:`reports.scaling_page`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.scaling_fit import PAIR, PAPER_N, analyse, power_law
from reports.paper_tables import load_paper_results
from reports.results import method_label
from reports.style import method_color
from reports.table_base import METHOD_ORDER, Table, fmt, fmt_si, is_nan, render_table

ROWS_FILE, FITS_FILE = "scaling.parquet", "fits.json"
#: the columns of scaling.parquet the report reads
NEEDED_COLUMNS = ("network", "label", "config", "size", "parameters", "n_train", "seed", "sample", "iou",
                  "step_rule", "job_key")
#: what the paper's Table 2 numbers are: said wherever they stand beside ours
PAPER_SETTING = ("the paper's BSE-VoxNets configurations (Table 2) have 16-179 M parameters and were "
                 "trained on 10,000 geometries at 1,000 e-/pixel: not comparable one to one")
#: the upper end of the crossing search (``benchmark.scaling_fit.crossings``)
CROSSING_SEARCH_MAX = 1e6


@dataclass(frozen=True)
class Model:
    """One learning curve: a network's config at one size of the study."""

    network: str
    config: str
    size: str
    label: str  #: the network's display name (the rows' ``label``)
    parameters: int

    @property
    def key(self) -> str:
        """The model's name in ``fits.json``: ``network/config``."""
        return f"{self.network}/{self.config}"

    @property
    def short(self) -> str:
        return method_label(self.network, self.config, name=self.label)

    @property
    def name(self) -> str:
        return f"{self.label} ({self.config}, {self.size})"

    @property
    def colour(self) -> tuple:
        """The main report's colour of the network (``reports.style``; a config changes nothing)."""
        return method_color(self.short)


@dataclass
class ScalingStudy:
    """One study folder: its rows, the analysis (``fits.json``, or computed here) and notes on
    how it was read."""

    folder: Path
    rows: pd.DataFrame
    analysis: dict
    notes: list[str] = field(default_factory=list)

    @property
    def meta(self) -> dict:
        """The study preset recorded in ``fits.json`` (empty when unknown)."""
        return self.analysis.get("study") or {}

    def models(self) -> list[Model]:
        """Every (network, config, size) with rows: smallest size first, U-Net before BSE-VoxNets."""
        first = self.rows.drop_duplicates(["network", "config", "size"])
        models = [Model(str(r.network), str(r.config), str(r.size), str(r.label), int(r.parameters))
                  for r in first.itertuples()]
        rank = {size: i for i, size in enumerate(self.sizes())}
        return sorted(models, key=lambda m: (rank[m.size], _network_rank(m.network), m.config))

    def sizes(self) -> list[str]:
        """The size labels, fewest parameters first."""
        return list(self.rows.groupby("size")["parameters"].median().sort_values().index.astype(str))

    def model(self, key: str, size: str | None = None) -> Model | None:
        return next((m for m in self.models() if m.key == key and size in (None, m.size)), None)

    def points(self) -> pd.DataFrame:
        """The learning curves' points (mIoU per model and N with its interval)."""
        return pd.DataFrame(self.analysis.get("points") or [],
                            columns=["network", "config", "size", "n_train", "seeds", "miou", "low", "high",
                                     "n_samples"])

    def network_name(self, network: str) -> str:
        named = self.rows.loc[self.rows["network"] == network, "label"]
        return str(named.iloc[0]) if len(named) else method_label(network)


def _network_rank(network: str) -> int:
    return METHOD_ORDER.index(network) if network in METHOD_ORDER else len(METHOD_ORDER)


def load_study(folder, n_resamples: int = 1000) -> ScalingStudy:
    """A scaling-study folder's rows and analysis: ``fits.json``, or ``benchmark.scaling_fit.
    analyse`` of the rows (``n_resamples``) when it is missing or describes other rows."""
    folder = Path(folder)
    path = folder / ROWS_FILE
    if not path.is_file():
        state = "does not exist" if not folder.is_dir() else f"holds no {ROWS_FILE}"
        raise FileNotFoundError(f"scaling-study results folder {folder} {state}: run "
                                f"`python -m benchmark scaling-study --results {folder}` first")
    rows = pd.read_parquet(path)
    lacking = [c for c in NEEDED_COLUMNS if c not in rows.columns]
    if lacking:
        raise ValueError(f"{path} lacks the columns {', '.join(lacking)}: not a scaling study's rows")
    if rows.empty:
        raise ValueError(f"{path} holds no rows: no job of the study in {folder} has finished yet")
    saved, notes = _read_json(folder / FITS_FILE), []
    if saved is not None and _describes(saved, rows):
        return ScalingStudy(folder, rows, saved, notes)
    notes.append(f"{'no readable ' + FITS_FILE if saved is None else FITS_FILE + ' describes other rows'}: "
                 f"the fits were computed here from {ROWS_FILE} ({n_resamples} bootstrap resamples)")
    kept = {k: saved[k] for k in ("study", "complete") if saved and k in saved}
    return ScalingStudy(folder, rows, {**kept, **analyse(rows, n_resamples=n_resamples)}, notes)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _describes(analysis: dict, rows: pd.DataFrame) -> bool:
    """Whether an analysis' points are those of ``rows`` (same models, N and sample count)."""
    try:
        points = {(p["network"], p["config"], p["size"], int(p["n_train"]), int(p["n_samples"]))
                  for p in analysis["points"]}
    except (KeyError, TypeError, ValueError):
        return False
    counts = rows.groupby(["network", "config", "size", "n_train"])["sample"].nunique()
    return points == {(str(n), str(c), str(s), int(t), int(v)) for (n, c, s, t), v in counts.items()}


# ---------------------------------------------------------------------------- formats
def ci_text(value, low, high, signed: bool = False) -> str:
    """``0.812 [0.800, 0.830]`` (``signed``: ``+0.012 [-0.003, +0.027]``); "—" without a value."""
    if is_nan(value) or not np.isfinite(value):
        return "—"
    form = "+.3f" if signed else ".3f"
    if is_nan(low) or is_nan(high) or not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:{form}}"
    return f"{value:{form}} [{low:{form}}, {high:{form}}]"


def n_range(values) -> str:
    values = sorted(int(v) for v in values)
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}–{values[-1]:,}"


def excludes_zero(low, high) -> bool:
    return bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))


def _display(key: str, title: str, caption: str, numbers: pd.DataFrame, shown: pd.DataFrame) -> Table:
    """A table whose numbers are ``numbers`` and whose page shows the text cells of ``shown``."""
    plain = pd.DataFrame(False, index=shown.index, columns=shown.columns)
    return Table(key, title, caption, numbers, pd.DataFrame(False, index=numbers.index, columns=numbers.columns),
                 render_table(key, shown, plain, str))


# ---------------------------------------------------------------------------- tables
def points_table(study: ScalingStudy) -> Table:
    """Table (a): mIoU [95 % CI] and seeds per model and N; bold: the best model at each N."""
    points, index, records = study.points(), [], []
    for model in study.models():
        mine = points[(points["network"] == model.network) & (points["config"] == model.config)
                      & (points["size"] == model.size)].sort_values("n_train")
        for p in mine.itertuples():
            index.append((model.name, int(p.n_train)))
            records.append({"parameters": float(model.parameters), "seeds": float(p.seeds), "mIoU": p.miou,
                            "95% CI low": p.low, "95% CI high": p.high, "samples": float(p.n_samples)})
    columns = ["parameters", "seeds", "mIoU", "95% CI low", "95% CI high", "samples"]
    frame = pd.DataFrame.from_records(records, index=pd.MultiIndex.from_tuples(index, names=["model", "N"]),
                                      columns=columns)
    best = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    if len(frame):
        top = frame.groupby(level="N")["mIoU"].transform("max")
        best["mIoU"] = np.isclose(frame["mIoU"], top, rtol=0, atol=1e-12)
    formatters = {"parameters": fmt_si, "seeds": fmt(0), "mIoU": fmt(3), "95% CI low": fmt(3),
                  "95% CI high": fmt(3), "samples": fmt(0)}
    return Table("scaling-points", "Learning curves: mIoU per model and training-set size N",
                 "Mean Cu IoU over the evaluation geometries (each sample's IoU averaged over the seeds "
                 "first) with its 95 % percentile bootstrap interval over the samples "
                 "(benchmark.scaling_fit.point_table). Bold: the best model at each N.",
                 frame, best, render_table("scaling-points", frame, best, formatters))


def paired_frames(study: ScalingStudy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table (b)'s (numbers, text): the paired U-Net - BSE-VoxNets difference per size and N."""
    first, second = (study.network_name(n) for n in PAIR)
    column = f"{first} − {second}"
    records = sorted(study.analysis.get("paired_differences") or [],
                     key=lambda r: (_rank(study.sizes(), r["size"]), int(r["n_train"])))
    index = pd.MultiIndex.from_tuples([(str(r["size"]), int(r["n_train"])) for r in records], names=["size", "N"])
    numbers = pd.DataFrame({column: [r["difference"] for r in records], "95% CI low": [r["low"] for r in records],
                            "95% CI high": [r["high"] for r in records],
                            "samples": [float(r["n_samples"]) for r in records]}, index=index)
    shown = pd.DataFrame({f"{column} [95 % CI]": [ci_text(r["difference"], r["low"], r["high"], signed=True)
                                                  for r in records],
                          "verdict": [_verdict(r["low"], r["high"], first, second) for r in records],
                          "samples": [f"{int(r['n_samples'])}" for r in records]}, index=index)
    return numbers, shown


def _verdict(low, high, first: str, second: str) -> str:
    if not excludes_zero(low, high):
        return "interval includes 0"
    return f"{first if low > 0 else second} ahead"


def _rank(order: list[str], value) -> int:
    return order.index(value) if value in order else len(order)


def paired_table(study: ScalingStudy) -> Table:
    """Table (b): the paired U-Net - BSE-VoxNets mean IoU difference per size and N."""
    numbers, shown = paired_frames(study)
    return _display("scaling-paired", "Paired difference U-Net − BSE-VoxNets per size and N",
                    "Mean per-sample IoU difference of the two networks of one size on the same evaluation "
                    "geometries (each network's seeds averaged first), with its 95 % paired bootstrap "
                    "interval: positive = U-Net ahead. An interval that excludes 0 separates the two.",
                    numbers, shown)


def extrapolation_frames(study: ScalingStudy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table (c)'s (numbers, text): per model a, c and IoU(N = 10,000) with their intervals, then
    the paper's Table 2 configurations (trained at N = 10,000)."""
    fits, numbers, shown = study.analysis.get("fits") or {}, {}, {}
    for model in study.models():
        fit = fits.get(model.key)
        run = study.rows.loc[(study.rows["network"] == model.network) & (study.rows["config"] == model.config)
                             & (study.rows["size"] == model.size), "n_train"].unique()
        record = {"parameters": float(model.parameters), "N min": float(min(run)), "N max": float(max(run))}
        for name in "ac":
            value = fit[name] if fit else {"value": np.nan, "interval": [np.nan, np.nan]}
            record |= {name: value["value"], f"{name} low": value["interval"][0], f"{name} high": value["interval"][1]}
        at = fit["extrapolated"] if fit else {"iou": np.nan, "interval": [np.nan, np.nan]}
        record |= {"IoU at N=10,000": at["iou"], "low": at["interval"][0], "high": at["interval"][1]}
        numbers[model.name] = record
        shown[model.name] = {"parameters": fmt_si(model.parameters), "N run": n_range(run),
                             "a (plateau) [95 % CI]": ci_text(record["a"], record["a low"], record["a high"]),
                             "c (exponent) [95 % CI]": ci_text(record["c"], record["c low"], record["c high"]),
                             f"IoU at N = {PAPER_N:,} [95 % CI]": ci_text(record["IoU at N=10,000"], record["low"],
                                                                          record["high"]),
                             "source": "ours: power-law fit, extrapolated" if fit else
                             "ours: no fit (fewer than 3 N)"}
    for config, paper in load_paper_results()["table2_configs"]["configs"].items():
        name = f"BSE-VoxNets ({config}), paper"
        numbers[name] = {"parameters": paper["parameters"], "N min": PAPER_N, "N max": PAPER_N,
                         "IoU at N=10,000": paper["miou"]}
        shown[name] = {"parameters": fmt_si(paper["parameters"]), "N run": f"{PAPER_N:,}",
                       "a (plateau) [95 % CI]": "—", "c (exponent) [95 % CI]": "—",
                       f"IoU at N = {PAPER_N:,} [95 % CI]": f"{paper['miou']:.3f}",
                       "source": "paper Table 2: trained at N = 10,000, 1,000 e-/pixel (measured)"}
    numbers = pd.DataFrame.from_dict(numbers, orient="index").rename_axis("model")
    return numbers, pd.DataFrame.from_dict(shown, orient="index").rename_axis("model")


def extrapolation_table(study: ScalingStudy) -> Table:
    """Table (c): the power-law fits and their extrapolation to N = 10,000 beside the paper's Table 2."""
    numbers, shown = extrapolation_frames(study)
    return _display("scaling-extrapolation", f"Power-law fits and the extrapolation to N = {PAPER_N:,}",
                    "IoU(N) = a − b N^−c fitted per model to its mean IoU at each N run "
                    "(benchmark.scaling_fit); a is the plateau the curve tends to, c how fast it gets "
                    "there; intervals: 95 % bootstrap over the evaluation geometries (the fit redone per "
                    f"resample). The paper's rows are its Table 2 test mIoU: {PAPER_SETTING}.",
                    numbers, shown)


@dataclass(frozen=True)
class PairSummary:
    """One size's pair of fitted curves: names, the N fitted, the crossings, who leads past the
    last one (or everywhere, without one) and the difference at N = 10,000 [interval]."""

    size: str
    first: str
    second: str
    n_fitted: list[int]
    crossings: list[float]
    ahead: str
    difference: float
    low: float
    high: float

    def crossing_text(self) -> str:
        return "; ".join(f"≈ {n:,.0f} ({crossing_place(n, min(self.n_fitted), max(self.n_fitted))})"
                         for n in self.crossings) or f"nowhere in {min(self.n_fitted):,}–{CROSSING_SEARCH_MAX:,.0f}"


def pair_summaries(study: ScalingStudy) -> list[PairSummary]:
    """The pairs of ``fits.json`` per size (smallest first) in words and numbers."""
    fits, out = study.analysis.get("fits") or {}, []
    for pair in sorted(study.analysis.get("pairs") or [], key=lambda p: _rank(study.sizes(), p["size"])):
        size, at = str(pair["size"]), pair["difference_at_target"]
        names = [m.short if (m := study.model(pair[k], size)) else pair[k] for k in ("first", "second")]
        params = [[fits[pair[k]][p]["value"] for p in "abc"] for k in ("first", "second")]
        run = sorted({int(n) for k in ("first", "second") for n in fits[pair[k]]["n_train"]})
        past = min(CROSSING_SEARCH_MAX, 1.1 * max(pair["crossings_n"], default=run[0]))
        ahead = names[0] if power_law(past, *params[0]) > power_law(past, *params[1]) else names[1]
        out.append(PairSummary(size, names[0], names[1], run, [float(n) for n in pair["crossings_n"]], ahead,
                               at["value"], *at["interval"]))
    return out


def crossing_frames(study: ScalingStudy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pairs' (numbers, text) per size: where the two fitted curves cross and their
    difference at N = 10,000 with its interval."""
    numbers, shown = {}, {}
    for pair in pair_summaries(study):
        numbers[pair.size] = {"first crossing N": pair.crossings[0] if pair.crossings else np.nan,
                              "crossings": float(len(pair.crossings)), "difference at N=10,000": pair.difference,
                              "low": pair.low, "high": pair.high}
        shown[pair.size] = {"compared": f"{pair.first} − {pair.second}", "N fitted": n_range(pair.n_fitted),
                            "fitted curves cross at N": pair.crossing_text(),
                            f"difference at N = {PAPER_N:,} [95 % CI]": ci_text(pair.difference, pair.low, pair.high,
                                                                                signed=True)}
    return (pd.DataFrame.from_dict(numbers, orient="index").rename_axis("size"),
            pd.DataFrame.from_dict(shown, orient="index").rename_axis("size"))


def crossing_place(n: float, n_min: float, n_max: float) -> str:
    """Where a crossing lies: in the fitted range, extrapolated up to N = 10,000, or beyond it."""
    if n <= n_max:
        return "in the fitted range"
    return f"extrapolated, below N = {PAPER_N:,}" if n <= PAPER_N else f"extrapolated, beyond N = {PAPER_N:,}"


def crossing_table(study: ScalingStudy) -> Table:
    """The crossing N per size where the fits give one, and the extrapolated difference."""
    numbers, shown = crossing_frames(study)
    return _display("scaling-crossings", "Where the fitted curves cross, and the gap at N = 10,000",
                    "Per size, the training-set sizes where the two networks' fitted power laws cross "
                    f"(searched from the smallest N run to {CROSSING_SEARCH_MAX:,.0f}) and the U-Net − "
                    f"BSE-VoxNets difference of the fits at N = {PAPER_N:,} with its 95 % bootstrap "
                    "interval (both fits redone on the same resamples of the evaluation geometries).",
                    numbers, shown)


def scaling_tables(study: ScalingStudy) -> list[Table]:
    """The page's tables in order: extrapolation, crossings, paired differences, points."""
    return [extrapolation_table(study), crossing_table(study), paired_table(study), points_table(study)]
