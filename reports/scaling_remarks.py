"""The scaling report's words: remarks generated from the numbers (the leader at the largest N
run, the crossings, the extrapolation beside the paper, fits at a bound), the statement of what
ran, and the README-ready Markdown of the extrapolation, crossing and paired-difference tables.
"""

from __future__ import annotations

import math

import pandas as pd

from benchmark.scaling_fit import BOUNDS, PAIR, PAPER_N
from reports.paper_tables import load_paper_results
from reports.readme import table_markdown
from reports.scaling import (
    CROSSING_SEARCH_MAX,
    PAPER_SETTING,
    ScalingStudy,
    ci_text,
    crossing_frames,
    excludes_zero,
    extrapolation_frames,
    pair_summaries,
    paired_frames,
)
from reports.table_base import Table


def scaling_remarks(study: ScalingStudy) -> list[str]:
    """Plain-language remarks from the numbers: the leader at the largest N run per size, the
    crossings, the extrapolation beside the paper, fits at a bound of the power law."""
    return [*_leader_remarks(study), *_crossing_remarks(study), *_extrapolation_remarks(study),
            *_fit_warnings(study)]


def _leader_remarks(study: ScalingStudy) -> list[str]:
    remarks = []
    differences = pd.DataFrame(study.analysis.get("paired_differences") or [])
    for size in study.sizes():
        mine = differences[differences["size"] == size] if len(differences) else differences
        if mine.empty:
            continue
        last = mine.loc[mine["n_train"].idxmax()]
        names = {m.network: m.short for m in study.models() if m.size == size}
        first, second = names.get(PAIR[0], PAIR[0]), names.get(PAIR[1], PAIR[1])
        d, low, high = float(last["difference"]), float(last["low"]), float(last["high"])
        head = f"At the largest N run for size {size} (N = {int(last['n_train']):,})"
        if d == 0:
            remarks.append(f"{head}, {first} and {second} score the same mean IoU.")
            continue
        leader, other = (first, second) if d > 0 else (second, first)
        remarks.append(f"{head}, {leader} leads {other} by {abs(d):.3f} IoU; the paired 95 % interval of "
                       f"{first} − {second} ({ci_text(d, low, high, signed=True)}) "
                       + ("excludes 0." if excludes_zero(low, high) else "includes 0: no clear leader."))
    return remarks


def _crossing_remarks(study: ScalingStudy) -> list[str]:
    remarks = []
    for pair in pair_summaries(study):
        at = (f"at N = {PAPER_N:,} the fits put {pair.first} − {pair.second} at "
              f"{ci_text(pair.difference, pair.low, pair.high, signed=True)} (the interval "
              + ("excludes 0)" if excludes_zero(pair.low, pair.high) else "includes 0)"))
        if pair.crossings:
            remarks.append(f"Size {pair.size}: the fitted curves cross at N {pair.crossing_text()}, "
                           f"{pair.ahead} ahead past the last crossing; {at}.")
        else:
            remarks.append(f"Size {pair.size}: the fitted curves do not cross between N = {min(pair.n_fitted):,} "
                           f"and {CROSSING_SEARCH_MAX:,.0f}: {pair.ahead} stays ahead in the fitted and the "
                           f"extrapolated range; {at}.")
    return remarks


def _extrapolation_remarks(study: ScalingStudy) -> list[str]:
    fits = study.analysis.get("fits") or {}
    ours = [f"{m.name} {ci_text(fits[m.key]['extrapolated']['iou'], *fits[m.key]['extrapolated']['interval'])}"
            for m in study.models() if m.key in fits]
    if not ours:
        return []
    paper = load_paper_results()["table2_configs"]["configs"]
    values = [p["miou"] for p in paper.values()]
    return [f"Extrapolated to the paper's N = {PAPER_N:,}: " + "; ".join(ours) + ". The paper reports "
            f"{min(values):.3f}-{max(values):.3f} for BSE-VoxNets {', '.join(paper)}; {PAPER_SETTING}."]


def _fit_warnings(study: ScalingStudy) -> list[str]:
    fits, remarks = study.analysis.get("fits") or {}, []
    (a_min, _, c_min), (a_max, _, c_max) = BOUNDS
    for model in study.models():
        fit = fits.get(model.key)
        if fit is None:
            run = sorted(study.rows.loc[(study.rows["network"] == model.network)
                                        & (study.rows["size"] == model.size), "n_train"].unique())
            remarks.append(f"No power-law fit for {model.name}: it needs at least 3 training-set sizes "
                           f"(N run: {', '.join(f'{int(n):,}' for n in run)}).")
            continue
        at_bound = [f"{k} = {fit[k]['value']:.3g}" for k, low, high in (("a", a_min, a_max), ("c", c_min, c_max))
                    if math.isclose(fit[k]["value"], low, abs_tol=1e-3) or math.isclose(fit[k]["value"], high,
                                                                                     abs_tol=1e-3)]
        if at_bound:
            remarks.append(f"The fit of {model.name} sits at a bound of the power law ({', '.join(at_bound)}): "
                           "the points do not determine the curve, so its extrapolation says little.")
    return remarks


# ---------------------------------------------------------------------------- what ran
def what_ran(study: ScalingStudy) -> list[str]:
    """What the rows hold: jobs, the N and sizes with rows (and the planned ones without), seeds,
    the step rule, the doses, that selection uses validation only, where the fits come from."""
    rows, jobs = study.rows, study.rows.drop_duplicates("job_key")
    lines = [f"{len(jobs)} finished jobs, {len(rows):,} rows: {rows['sample'].nunique()} evaluation "
             "geometries, every one scored by every model."]
    for size in study.sizes():
        seeds = jobs[jobs["size"] == size].groupby("n_train")["seed"].nunique()
        names = ", ".join(m.short for m in study.models() if m.size == size)
        lines.append(f"Size {size} ({names}): N = " + ", ".join(
            f"{int(n):,} ({s} seed{'s' if s != 1 else ''})" for n, s in seeds.items()) + ".")
    lines += _plan_lines(study)
    for rule in rows["step_rule"].dropna().astype(str).unique():
        lines.append(f"Training-step rule: {rule}.")
    if {"epochs", "steps"} <= set(jobs.columns):
        per_n = jobs.groupby("n_train")[["epochs", "steps"]].first()
        lines.append("Epochs and optimiser steps per N: " + "; ".join(
            f"N = {int(n):,}: {int(r.epochs)} epochs, {int(r.steps):,} steps" for n, r in per_n.iterrows()) + ".")
    lines.append("Selection uses the validation split only: each job's checkpoint and binarisation "
                 "threshold are chosen on the pool's validation geometries; the evaluation geometries "
                 "score every model, and no model trains on them or is selected on them.")
    if {"simulated_electrons_per_pixel", "read_electrons_per_pixel"} <= set(rows.columns):
        doses = rows[["simulated_electrons_per_pixel", "read_electrons_per_pixel"]].drop_duplicates()
        lines.append("Dose: " + "; ".join(f"simulated at {int(s):,}, read at {int(r):,} e-/pixel"
                                          for s, r in doses.itertuples(index=False)) + ".")
    if "train_seconds" in jobs.columns:
        lines.append(f"Training time: {jobs['train_seconds'].sum() / 3600:.2f} h in all (the jobs' train_seconds).")
    analysis = study.analysis
    lines.append(f"Fits: {analysis.get('model', 'IoU(N) = a - b N^-c')}, {analysis.get('n_resamples')} bootstrap "
                 f"resamples of the evaluation geometries, confidence {analysis.get('confidence')}, seed "
                 f"{analysis.get('seed')}; " + ("; ".join(study.notes) if study.notes else "read from fits.json") + ".")
    return lines


def _plan_lines(study: ScalingStudy) -> list[str]:
    """The preset's grid (from fits.json) and the points of it without rows yet."""
    meta = study.meta
    if not meta.get("n_values") or not meta.get("sizes"):
        return []
    have = set(zip(study.rows["size"].astype(str), study.rows["n_train"].astype(int)))
    lacking = {size: [n for n in meta["n_values"] if (size, int(n)) not in have] for size in meta["sizes"]}
    lacking = {size: ns for size, ns in lacking.items() if ns}
    state = {True: "complete", False: "incomplete"}.get(study.analysis.get("complete"), "of unknown state")
    line = (f"Planned by preset '{meta.get('name', '?')}': N = {', '.join(f'{int(n):,}' for n in meta['n_values'])} "
            f"at sizes {', '.join(meta['sizes'])}; the study is {state}")
    if lacking:
        line += "; without rows yet: " + "; ".join(
            f"{size} at N = {', '.join(f'{int(n):,}' for n in ns)}" for size, ns in lacking.items())
    return [line + "."]


# ---------------------------------------------------------------------------- Markdown
def _markdown(title: str, shown: pd.DataFrame) -> str:
    """``**title**`` and a text frame as a Markdown table (a two-level index joined into one cell)."""
    frame = shown.copy()
    if isinstance(frame.index, pd.MultiIndex):
        frame.index = pd.Index([f"{size}, N = {n:,}" for size, n in frame.index], name="size, N")
    plain = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    return f"**{title}**\n\n" + table_markdown(Table("", title, "", frame, plain, ""))


def paired_wide(study: ScalingStudy) -> pd.DataFrame:
    """The paired differences as text, one row per N and one column per size (the README's form)."""
    shown = paired_frames(study)[1]
    if not len(shown):
        return shown
    first, second = (study.network_name(n) for n in PAIR)
    cells = shown.iloc[:, 0].rename("cell").reset_index()
    wide = cells.pivot(index="N", columns="size", values="cell").reindex(
        columns=[size for size in study.sizes() if size in set(cells["size"])]).fillna("—")
    wide.columns = [f"{size}: {first} − {second} [95 % CI]" for size in wide.columns]
    wide.index = pd.Index([f"{int(n):,}" for n in wide.index], name="N")
    return wide


def scaling_markdown(study: ScalingStudy) -> str:
    """README-ready Markdown: the extrapolation table, the crossings and the paired differences
    (one row per N, one column per size)."""
    parts = [_markdown(f"Scaling study: power-law fits and IoU extrapolated to N = {PAPER_N:,}",
                       extrapolation_frames(study)[1]),
             f"IoU(N) = a − b N^−c per model, 95 % bootstrap intervals over the evaluation geometries; {PAPER_SETTING}."]
    crossings = crossing_frames(study)[1]
    if len(crossings):
        parts.append(_markdown("Scaling study: where the fitted curves cross", crossings))
    paired = paired_wide(study)
    if len(paired):
        parts.append(_markdown("Scaling study: paired IoU difference on the evaluation geometries", paired))
    return "\n\n".join(parts) + "\n"
