"""The report's summary tables: test-split mIoU with its bootstrap interval, the named cases
over repeated simulations, training seeds, strata of the test split and the best method per case.

Each table is a numeric ``pandas.DataFrame`` (NaN = not run) plus a boolean mask of the best
value per column (bold in the report): :class:`reports.table_base.Table`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from datasets.stats import bootstrap_mean_interval
from reports.results import case_groups, quiet_mean
from reports.table_base import (
    Table,
    best_mask,
    fmt,
    is_nan,
    natural_key,
    ordered_labels,
    render_table,
    sample_title,
)


def saved_interval(group: pd.DataFrame, summaries: dict) -> tuple | None:
    """(mean, low, high, n) from the run's summary.json ``metrics.miou`` when the group is one
    run whose summary has it (the harness's own bootstrap), else None."""
    keys = group["run_key"].dropna().astype(str).unique()
    if len(keys) != 1:
        return None
    miou = ((summaries.get(keys[0]) or {}).get("metrics") or {}).get("miou")
    try:
        values = tuple(float(miou[k]) for k in ("mean", "low", "high")) + (int(miou["n"]),)
    except (TypeError, KeyError, ValueError):
        return None
    return values


def miou_table(rows: pd.DataFrame, summaries: dict | None = None) -> Table:
    """mIoU over the held-out test split per method with a 95 % bootstrap interval: the one
    saved in the run's summary.json when there is one, else computed here from the rows."""
    mine = rows[rows["case"] == "test"]
    index, records = [], []
    for label in ordered_labels(mine) if len(mine) else []:
        group = mine[mine["label"] == label]
        saved = saved_interval(group, summaries or {})
        if saved is None:
            mean, low, high, n = bootstrap_mean_interval(group.groupby("sample")["iou"].mean()).as_tuple()
        else:
            mean, low, high, n = saved
        index.append(label)
        records.append({"mIoU": mean, "95% CI low": low, "95% CI high": high,
                        "class-mean IoU": quiet_mean(group["class_mean_iou"]),
                        "MRE (%)": 100 * quiet_mean(group["mre"]), "samples": float(n),
                        "threshold rule": ", ".join(sorted(group["threshold_rule"].dropna()
                                                           .astype(str).unique())) or "—",
                        "interval from": "summary.json" if saved else "rows (here)"})
    frame = pd.DataFrame.from_records(
        records, index=pd.Index(index, name="method"),
        columns=["mIoU", "95% CI low", "95% CI high", "class-mean IoU", "MRE (%)", "samples",
                 "threshold rule", "interval from"],
    )
    best = best_mask(frame, {"mIoU": "max", "class-mean IoU": "max", "MRE (%)": "min"})
    formatters = {"mIoU": fmt(3), "95% CI low": fmt(3), "95% CI high": fmt(3), "class-mean IoU": fmt(3),
                  "MRE (%)": fmt(1), "samples": fmt(0)}
    html = render_table("test-miou", frame, best, formatters)
    return Table(
        "test-miou", "mIoU on the held-out test split",
        "mIoU: the per-sample Cu IoU averaged over the test samples, with a 95 % percentile "
        "bootstrap interval: the run's own (summary.json, metrics.miou) where saved, else computed "
        "from the rows (2000 resamples of the samples, numpy seed 0). Class-mean IoU: the mean of "
        "the Cu and the Si IoU of each sample, averaged (the paper's two-channel 'mIoU' may be "
        "this one). Bold: best value in each column.",
        frame, best, html,
    )


def repeat_table(rows: pd.DataFrame) -> Table:
    """The named cases simulated several times (independent noise draws of each geometry): IoU
    mean ± standard deviation over the repeats, per method and case sample."""
    mine = rows[rows["case"].isin(["nanocube", "nanowire"])] if len(rows) and "repeat" in rows else rows.iloc[:0]
    repeated = mine.groupby(["case", "sample"])["repeat"].nunique() if len(mine) else pd.Series(dtype=int)
    repeated = repeated[repeated > 1]
    columns, records, index = [], [], []
    if len(repeated):
        mine = mine.set_index(["case", "sample"]).loc[repeated.index].reset_index()
        order = [(c, s) for c in ("nanocube", "nanowire")
                 for s in sorted(mine.loc[mine["case"] == c, "sample"].unique(), key=natural_key)]
        columns = [f"{c}: {sample_title(s)}" for c, s in order]
        stats = mine.groupby(["label", "case", "sample"])["iou"].agg(["mean", "std", "count"])
        for label in ordered_labels(mine):
            record = {}
            for (c, s), column in zip(order, columns):
                if (label, c, s) in stats.index:
                    m, sd, n = stats.loc[(label, c, s)]
                    record[column] = f"{m:.3f} ± {sd:.3f}"
            index.append(label)
            records.append(record)
    frame = pd.DataFrame.from_records(records, index=pd.Index(index, name="method"), columns=columns)
    best = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    n = int(repeated.max()) if len(repeated) else 0
    return Table(
        "repeats", "Named cases over independent simulations",
        f"Each nanocube and nanowire geometry simulated {n} times with independent seeds (new "
        "electrons, same geometry): IoU mean ± standard deviation (n - 1) over the simulations, "
        "the case tables above show the mean. The spread is what one noise draw alone can move a "
        "named-case number.",
        frame, best, render_table("repeats", frame, best, lambda v: "—" if is_nan(v) else str(v)),
    )


def seed_table(seed_rows: pd.DataFrame) -> Table:
    """Test mIoU of each learned method's training seeds: each seed's, their mean, standard
    deviation (ddof 1) and range. Only labels trained with more than one seed appear."""
    mine = seed_rows[(seed_rows["case"] == "test") & (seed_rows["variant"].astype(str) == "full")] \
        if len(seed_rows) else seed_rows
    mine = mine.assign(seed=pd.to_numeric(mine["seed"], errors="coerce")) if len(mine) else mine
    index, records = [], []
    for label in ordered_labels(mine) if len(mine) else []:
        group = mine[mine["label"] == label]
        per_seed = group.groupby("seed")["iou"].mean()
        if len(per_seed) < 2:
            continue
        per_seed_class = group.groupby("seed")["class_mean_iou"].mean()
        index.append(label)
        records.append({"seeds": ", ".join(str(int(k)) for k in per_seed.index),
                        "per-seed mIoU": ", ".join(f"{v:.3f}" for v in per_seed),
                        "mean mIoU": float(per_seed.mean()), "sd": float(per_seed.std(ddof=1)),
                        "min": float(per_seed.min()), "max": float(per_seed.max()),
                        "mean class-mean IoU": float(per_seed_class.mean())})
    columns = ["seeds", "per-seed mIoU", "mean mIoU", "sd", "min", "max", "mean class-mean IoU"]
    frame = pd.DataFrame.from_records(records, index=pd.Index(index, name="method"), columns=columns)
    best = best_mask(frame, {"mean mIoU": "max", "sd": "min", "mean class-mean IoU": "max"})
    formatters = {c: fmt(3) for c in ("mean mIoU", "sd", "min", "max", "mean class-mean IoU")}
    return Table(
        "seeds", "Test mIoU over training seeds",
        "Each learned method trained with several seeds (weight initialisation, batch order, "
        "augmentation and noise draws) on the same data and scored on the same test split: the "
        "per-seed mIoU, their mean, standard deviation (n - 1) and range. The seed-to-seed spread "
        "is a source of error the per-sample bootstrap intervals (one trained model) do not "
        "contain. Other tables show the first seed.",
        frame, best, render_table("seeds", frame, best, formatters),
    )


#: strata of the test samples: Cu volume (voxels = nm^3) and depth of the Cu's top below the Si surface (nm)
CU_VOLUME_BINS_NM3 = (0, 1, 200, 800, 2000, 8001)
CU_TOP_BINS_NM = (0, 1, 5, 10, 20)


def sample_strata(labels: np.ndarray) -> pd.DataFrame:
    """Per label volume (N, D, H, W) over the Si block (1 nm voxels, depth index = nm below the
    surface): ``cu_volume_nm3`` and ``cu_top_nm`` (depth of the first layer with Cu; NaN without Cu)."""
    labels = np.asarray(labels) > 0
    volume = labels.reshape(len(labels), -1).sum(1)
    has_layer = labels.reshape(len(labels), labels.shape[1], -1).any(2)
    top = np.where(volume > 0, has_layer.argmax(1), np.nan).astype(float)
    return pd.DataFrame({"cu_volume_nm3": volume.astype(float), "cu_top_nm": top})


def _bin_labels(edges, unit: str) -> list[str]:
    return [f"{lo} {unit}" if hi - 1 == lo else f"{lo}-{hi - 1} {unit}" for lo, hi in zip(edges[:-1], edges[1:])]


def stratified_table(rows: pd.DataFrame, runs) -> Table:
    """Test mIoU per stratum of Cu volume and of the Cu's top depth, per method (full variants):
    where each method fails. Strata come from the saved ground-truth volumes (runs/*/volumes.npz)."""
    mine = rows[(rows["case"] == "test") & (rows["variant"].astype(str) == "full")] if len(rows) else rows
    strata = []
    for run in runs:
        if run.case != "test":
            continue
        frame = sample_strata(run.gt).assign(sample=run.ids, run_key=run.run_key)
        strata.append(frame)
    volume_names = _bin_labels(CU_VOLUME_BINS_NM3, "nm³")
    volume_names[0] = "no Cu"
    top_names = [f"top {name}" for name in _bin_labels(CU_TOP_BINS_NM, "nm")]
    columns = volume_names + top_names
    index, records, counts = [], [], {}
    if strata and len(mine):
        strata = pd.concat(strata, ignore_index=True)
        joined = mine.merge(strata, on=["run_key", "sample"], how="inner")
        joined["volume_bin"] = pd.cut(joined["cu_volume_nm3"], CU_VOLUME_BINS_NM3, right=False, labels=volume_names)
        joined["top_bin"] = pd.cut(joined["cu_top_nm"], CU_TOP_BINS_NM, right=False, labels=top_names)
        for label in ordered_labels(joined) if len(joined) else []:
            group = joined[joined["label"] == label]
            record = {**group.groupby("volume_bin", observed=False)["iou"].mean().to_dict(),
                      **group.groupby("top_bin", observed=False)["iou"].mean().to_dict()}
            index.append(label)
            records.append({c: record.get(c, np.nan) for c in columns})
            if not counts:
                counts = {**group["volume_bin"].value_counts().to_dict(), **group["top_bin"].value_counts().to_dict()}
    frame = pd.DataFrame.from_records(records, index=pd.Index(index, name="method"), columns=columns)
    frame.columns = [f"{c} (n={counts.get(c, 0)})" for c in columns]
    best = best_mask(frame, {c: "max" for c in frame.columns})
    return Table(
        "strata", "Test mIoU by Cu volume and by the depth of the Cu's top",
        "Mean per-sample Cu IoU of the test samples in each stratum: Cu volume in nm³ (1 nm voxels) "
        "and the depth of the topmost Cu voxel below the Si surface (nm). A sample without Cu counts "
        "IoU 1 when nothing is predicted, else 0. n: test samples in the stratum. Bold: best per column.",
        frame, best, render_table("strata", frame, best, fmt(3)),
    )


def best_per_case_table(rows: pd.DataFrame, cases: list[str]) -> Table:
    """For every case (the dose study: every read dose, ``reports.results.case_groups``): the
    method with the highest mean IoU, its mean IoU and the runner-up."""
    index, records = [], []
    for case, mine in case_groups(rows, cases):
        means = mine.groupby("label")["iou"].mean().dropna().sort_values(ascending=False)
        if means.empty:
            continue
        index.append(case)
        records.append({
            "best method": means.index[0],
            "mean IoU": float(means.iloc[0]),
            "runner-up": means.index[1] if len(means) > 1 else "—",
            "runner-up IoU": float(means.iloc[1]) if len(means) > 1 else np.nan,
            "samples": float(mine["sample"].nunique()),
            "methods": float(len(means)),
        })
    frame = pd.DataFrame.from_records(
        records, index=pd.Index(index, name="case"),
        columns=["best method", "mean IoU", "runner-up", "runner-up IoU", "samples", "methods"],
    )
    best = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    best["best method"] = True
    formatters = {"mean IoU": fmt(3), "runner-up IoU": fmt(3), "samples": fmt(0),
                  "methods": fmt(0)}
    html = render_table("best-per-case", frame, best, formatters)
    return Table("best-per-case", "Best method per case",
                 "Method with the highest mean IoU over the samples of each case.",
                 frame, best, html)
