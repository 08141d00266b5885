"""Read a benchmark results folder (layout: benchmark/cache.py and docs/architecture.md).

Only saved files are read; no method is ever run here. Every part is optional: what is absent
or unreadable is listed in ``ReportInputs.missing`` so the report can say so. The rows follow
the one result-row schema (``benchmark.schema.ResultRow``); each result is counted once
(``benchmark.schema.RESULT_IDENTITY``): the report refuses rows that hold a result twice.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.schema import RESULT_IDENTITY, RUN_IDENTITY, empty_rows, normalise_rows
from datasets.cases import split_repeat
from datasets.realism import IDEAL, realism_levels
from methods.base import label_of
from reports.table_base import natural_key

NUMERIC_COLUMNS = (
    "iou", "class_mean_iou", "mre", "precision", "recall", "threshold", "seconds_per_volume", "parameters", "macs",
)
VOLUME_KEYS = ("ids", "gt", "prob", "binary", "bse", "energies_keV")
#: the dose study's case: its rows differ by ``read_electrons_per_pixel``
DOSE_CASE = "dose"
#: the realism study's case: its rows differ by ``acquisition`` (a level of ``datasets.realism``)
REALISM_CASE = "realism"
#: the studies that have their own figure: left out of the per-case overview and 3D views
STUDY_CASES = (DOSE_CASE, REALISM_CASE)


class DuplicateResultsError(ValueError):
    """The result rows hold a result more than once (``RESULT_IDENTITY``)."""


@dataclass
class RunVolumes:
    """Saved volumes of one run: ``gt``/``binary`` (N, D, H, W) uint8, ``prob`` in [0, 1],
    ``bse`` (N, E, H, W) and the beam energies in keV."""

    run_key: str
    label: str
    method: str
    case: str
    ids: list[str]
    gt: np.ndarray
    prob: np.ndarray
    binary: np.ndarray
    bse: np.ndarray
    energies_keV: np.ndarray


@dataclass
class ReportInputs:
    """Everything a report is built from."""

    results_dir: Path
    #: rows of each label's first (lowest) training seed: what every table and figure shows
    rows: pd.DataFrame
    runs: list[RunVolumes] = field(default_factory=list)
    #: rows of every seed (the seed table: mean and spread over training seeds)
    seed_rows: pd.DataFrame | None = None
    summaries: dict[str, dict] = field(default_factory=dict)
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)
    dataset_meta: dict | None = None
    missing: list[str] = field(default_factory=list)

    def cases(self) -> list[str]:
        """Case names present in the rows, paper cases first."""
        return order_cases(self.rows["case"].dropna().unique())


def order_cases(cases) -> list[str]:
    """Sort case names: nanocube, nanowire, test, ablation, then the rest alphabetically, digit
    runs by value (``custom:a2`` before ``custom:a10``)."""
    import re

    first = ["nanocube", "nanowire", "test", "ablation"]
    cases = list(dict.fromkeys(str(c) for c in cases))

    def natural(text: str) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]

    return [c for c in first if c in cases] + sorted((c for c in cases if c not in first), key=natural)


def case_title(case, read_electrons_per_pixel, acquisition=IDEAL) -> str:
    """How the report names the rows of a case: the case, for the dose study its read dose
    (``dose 25 e-/pixel``), for the realism study its level (``realism: drift-0.5nm``)."""
    if str(case) == DOSE_CASE:
        return f"{DOSE_CASE} {int(read_electrons_per_pixel)} e-/pixel"
    if str(case) == REALISM_CASE:
        return f"{REALISM_CASE}: {acquisition}"
    return str(case)


def level_rank(name) -> tuple:
    """Sort key of a realism level name: the catalogue's plot order (``ideal`` first), names
    not in the catalogue after it in natural order."""
    order = {level.name: i for i, level in enumerate(realism_levels())}
    return (order.get(str(name), len(order)), natural_key(name))


def case_groups(rows: pd.DataFrame, cases) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) of each of ``cases`` in the given order (:func:`case_title`): the dose
    study's rows one group per read dose, lowest dose first, the realism study's one group per
    level in the catalogue's order; cases without rows left out."""
    groups = []
    for case in cases:
        mine = rows[rows["case"] == case]
        if mine.empty:
            continue
        if case == DOSE_CASE:
            doses = mine["read_electrons_per_pixel"]
            groups += [(case_title(case, dose), mine[doses == dose]) for dose in sorted(doses.unique())]
        elif case == REALISM_CASE:
            levels = mine["acquisition"].astype(str)
            groups += [(case_title(case, None, level), mine[levels == level])
                       for level in sorted(levels.unique(), key=level_rank)]
        else:
            groups.append((str(case), mine))
    return groups


def method_label(method: str, config=None, variant=None, threshold_rule=None, name=None) -> str:
    """Human-readable name, e.g. ``BSE-VoxNets (lite)``, ``BSE-VoxNets (lite, no-sope)`` or
    ``MED-SEM (oracle threshold)``, from the
    method's own label (``name``: the ``label`` column its runs wrote; else the method's id); the
    harness's placeholders ``default`` (no config) and ``full`` (no ablation) are left out."""
    name = str(name) if _present(name) else label_of(method)
    details = [str(x) for x in (config, variant)
               if _present(x) and str(x) not in ("full", "default")]
    if _present(threshold_rule):
        details.append(f"{threshold_rule} threshold")
    return f"{name} ({', '.join(details)})" if details else name


def add_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Add a ``label`` column naming each (method, config, variant); the threshold rule is
    added to the name only where one method was scored with several rules."""
    rows = rows.copy()
    keys = ["method", "config", "variant"]
    rules_per_method = rows.groupby(keys, dropna=False)["threshold_rule"].transform(
        lambda s: s.dropna().nunique()
    )
    names = rows["label"] if "label" in rows.columns else [None] * len(rows)
    rows["method_label"] = [name if _present(name) else label_of(m) for m, name in zip(rows["method"], names)]
    rows["label"] = [
        method_label(m, c, v, rule if n > 1 else None, name)
        for m, c, v, rule, n, name in zip(
            rows["method"], rows["config"], rows["variant"], rows["threshold_rule"],
            rules_per_method, rows["method_label"],
        )
    ]
    return rows


def parse_depth_iou(value) -> np.ndarray:
    """Per-depth IoU stored as a JSON list (NaN where a layer is empty in both) -> float array."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.array([], dtype=float)
    if isinstance(value, str):
        value = json.loads(value.replace("NaN", "null"))
    return np.array([np.nan if v is None else float(v) for v in value], dtype=float)


def load_rows(results_dir: Path, missing: list[str]) -> pd.DataFrame:
    """Rows of results.parquet, or of runs/*/rows.parquet when it is absent or unreadable."""
    frames = []
    combined = results_dir / "results.parquet"
    source = "runs/*/rows.parquet"
    if combined.exists():
        try:
            frames = [pd.read_parquet(combined)]
            source = "results.parquet"
        except Exception as err:  # a corrupt file is reported, not fatal
            missing.append(f"results.parquet is unreadable ({err}); used runs/*/rows.parquet")
    else:
        missing.append("results.parquet is missing; used runs/*/rows.parquet")
    if not frames:
        for path in sorted(p for p in results_dir.glob("runs/*/rows.parquet") if not p.parent.name.startswith(".")):
            try:
                frames.append(pd.read_parquet(path))
            except Exception as err:
                missing.append(f"{path.relative_to(results_dir)} is unreadable ({err})")
    frames = [f for f in frames if len(f)]
    rows = normalise_rows(pd.concat(frames, ignore_index=True)) if frames else empty_rows()
    check_unique_results(rows, results_dir, source)
    for column in NUMERIC_COLUMNS:
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    rows["case"] = rows["case"].astype(str)
    rows["sample"] = rows["sample"].astype(str)
    if not len(rows):
        missing.append("no result rows at all: run `python -m benchmark run` first")
    return add_labels(rows)


def check_unique_results(rows: pd.DataFrame, results_dir: Path, source: str = "results.parquet") -> None:
    """Raise :class:`DuplicateResultsError` when ``rows`` hold a result (``RESULT_IDENTITY``) more
    than once, naming each doubled run identity (``RUN_IDENTITY``), its runs, and the command that
    rebuilds results.parquet with the newest run of each result."""
    if rows.empty:
        return
    doubled = rows[rows.duplicated(RESULT_IDENTITY, keep=False)]
    if doubled.empty:
        return
    lines = []
    for identity, group in doubled.groupby(RUN_IDENTITY, dropna=False, sort=True):
        named = ", ".join(f"{column} {value}" for column, value in zip(RUN_IDENTITY, identity))
        runs = sorted(group["run_key"].dropna().astype(str).unique())
        lines.append(f"{named}: {len(group)} rows for {group['sample'].nunique()} samples"
                     + (f" (runs {', '.join(runs)})" if runs else ""))
    shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
    raise DuplicateResultsError(
        f"{source} in {results_dir} counts {len(lines)} result set(s) more than once ({shown}); the report "
        f"would count them twice. Remove the extra rows (the newest run of each result is kept) with: "
        f"python -m benchmark doctor --results {results_dir} --fix")


def _run_identity(run_key: str, rows: pd.DataFrame, summary: dict) -> tuple[str, str, str]:
    """(label, method, case) of a run, from its rows or else from its summary.json."""
    mine = rows[rows["run_key"].astype(str) == run_key] if len(rows) else rows
    if len(mine):
        first = mine.iloc[0]
        return str(first["label"]), str(first["method"]), str(first["case"])
    params = summary.get("params") or {}
    method = str(summary.get("method", run_key))
    label = method_label(method, params.get("config"), params.get("variant"))
    return label, method, str(summary.get("case", "unknown"))


def load_runs(results_dir: Path, rows: pd.DataFrame, missing: list[str]):
    """Volumes and summaries of every run folder."""
    runs, summaries = [], {}
    run_dirs = sorted(p for p in results_dir.glob("runs/*") if p.is_dir() and not p.name.startswith("."))  # not set aside
    if not run_dirs:
        missing.append("no runs/*/ folders: 3D renders, error views and the BSE strip need them")
    for run_dir in run_dirs:
        key = run_dir.name
        summary = {}
        if (run_dir / "summary.json").exists():
            try:
                summary = json.loads((run_dir / "summary.json").read_text())
            except (OSError, json.JSONDecodeError) as err:
                missing.append(f"runs/{key}/summary.json is unreadable ({err})")
        summaries[key] = summary
        path = run_dir / "volumes.npz"
        if not path.exists():
            missing.append(f"runs/{key}/volumes.npz is missing")
            continue
        try:
            with np.load(path, allow_pickle=False) as data:
                absent = [k for k in VOLUME_KEYS if k not in data.files]
                if absent:
                    raise ValueError(f"lacks arrays {absent}")
                arrays = {k: data[k] for k in VOLUME_KEYS}
        except Exception as err:
            missing.append(f"runs/{key}/volumes.npz is unreadable ({err})")
            continue
        label, method, case = _run_identity(key, rows, summary)
        runs.append(
            RunVolumes(
                run_key=key, label=label, method=method, case=case,
                ids=[str(i) for i in arrays["ids"]],
                gt=arrays["gt"].astype(np.uint8), prob=arrays["prob"].astype(np.float32),
                binary=arrays["binary"].astype(np.uint8), bse=arrays["bse"].astype(np.float32),
                energies_keV=arrays["energies_keV"].astype(float),
            )
        )
    return runs, summaries


def load_histories(results_dir: Path, missing: list[str]) -> dict[str, pd.DataFrame]:
    """Training histories (epoch, train_loss, val_miou, lr, seconds) per model folder."""
    histories = {}
    for path in sorted(p for p in results_dir.glob("models/*/history.csv")
                       if not p.parent.name.startswith(".")):  # .stale-* folders are set aside
        try:
            history = pd.read_csv(path)
        except Exception as err:
            missing.append(f"{path.relative_to(results_dir)} is unreadable ({err})")
            continue
        if "epoch" not in history.columns or history.empty:
            missing.append(f"{path.relative_to(results_dir)} has no epochs")
            continue
        histories[path.parent.name] = history
    if not histories:
        missing.append("no models/*/history.csv: no training curves")
    return histories


def load_inputs(results_dir) -> ReportInputs:
    """Read everything a report needs from ``results_dir``; raise if the folder does not exist."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    missing: list[str] = []
    seed_rows = with_repeats(load_rows(results_dir, missing))
    rows = first_seed_rows(seed_rows)
    runs, summaries = load_runs(results_dir, rows, missing)
    kept = set(rows["run_key"].dropna().astype(str)) if len(rows) else set()
    runs = [first_repeat(run) for run in runs if run.run_key in kept or not kept]
    histories = load_histories(results_dir, missing)
    dataset_meta = None
    dataset_json = results_dir / "data" / "dataset.json"
    if dataset_json.exists():
        try:
            dataset_meta = json.loads(dataset_json.read_text())
        except (OSError, json.JSONDecodeError) as err:
            missing.append(f"data/dataset.json is unreadable ({err})")
    else:
        missing.append("data/dataset.json is missing: dataset provenance comes from the rows only")
    return ReportInputs(
        results_dir=results_dir, rows=rows, seed_rows=seed_rows, runs=runs, summaries=summaries,
        histories=histories, dataset_meta=dataset_meta, missing=missing,
    )


def with_repeats(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``sample`` = the case sample and ``repeat`` = which simulation of it (0 for all
    but the repeats of a named case, ``position4@r2`` -> ``position4``, 2); ``sample_id`` keeps
    the stored id. Tables average a sample over its repeats; the repeat table gives their spread."""
    if rows.empty:
        return rows.assign(sample_id=pd.Series(dtype=object), repeat=pd.Series(dtype=int))
    parts = [split_repeat(s) for s in rows["sample"].astype(str)]
    return rows.assign(sample_id=rows["sample"], sample=[p[0] for p in parts], repeat=[p[1] for p in parts])


def first_repeat(run: RunVolumes) -> RunVolumes:
    """The run's volumes without the repeats of named-case samples (figures show each sample once)."""
    keep = [i for i, sid in enumerate(run.ids) if split_repeat(sid)[1] == 0]
    if len(keep) == len(run.ids):
        return run
    return RunVolumes(run.run_key, run.label, run.method, run.case, [run.ids[i] for i in keep],
                      run.gt[keep], run.prob[keep], run.binary[keep], run.bse[keep], run.energies_keV)


def first_seed_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of each label's lowest training seed (other seeds feed the seed table only)."""
    if rows.empty or "seed" not in rows.columns or rows["seed"].isna().all():
        return rows
    seeds = pd.to_numeric(rows["seed"], errors="coerce")
    first = seeds.groupby(rows["label"]).transform("min")
    keep = (seeds == first) | seeds.isna()
    return rows[keep].reset_index(drop=True)


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return str(value) not in ("", "None", "nan")


def quiet_mean(values) -> float:
    """Mean ignoring NaN, NaN (without a warning) when nothing is left."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))
