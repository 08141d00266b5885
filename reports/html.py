"""Build the single-file HTML report (Jinja2 template, figures embedded as base64 PNG).

``build_report`` reads saved results only (``reports.results.load_inputs``); it never runs a
method. Anything absent is listed in the report instead of failing.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.metadata
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
from tqdm.auto import tqdm

from datasets.files import write_text_atomic
from reports import figures, paper_tables, realism, tables, volume_figures
from reports.results import (
    DOSE_CASE,
    REALISM_CASE,
    STUDY_CASES,
    ReportInputs,
    RunVolumes,
    case_title,
    level_rank,
    load_inputs,
    method_label,
    order_cases,
)
from reports.summary import summary_remarks, verdict_remarks
from reports.table_base import Table, ordered_labels

TEMPLATE_DIR = Path(__file__).parent / "templates"
MAX_SAMPLES_PER_FIGURE = 5
REPORT_PACKAGES = ("pandas", "matplotlib", "seaborn", "jinja2", "numpy")
#: tables and figures shown open; everything else is a closed <details> (one click away) so
#: that the page stays short: the paper's Tables 3 and 4 and their figures
OPEN_KEYS = ("table3", "table4", "iou-depth", "iou-radius")


@dataclass
class Figure:
    """One embedded figure: anchor id, title, caption and a ``data:`` URL of the PNG."""

    key: str
    title: str
    caption: str
    data_url: str


def png_data_url(png: bytes) -> str:
    """``data:image/png;base64,...`` URL of PNG bytes (checks the PNG signature)."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("figure bytes are not a PNG image")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _add_figure(out: list[Figure], missing: list[str], key: str, title: str, caption: str,
                draw: Callable[[], bytes]) -> None:
    """Draw one figure; a failure is listed among the missing parts instead of stopping."""
    try:
        out.append(Figure(key, title, caption, png_data_url(draw())))
    except Exception as err:  # a broken input must not lose the rest of the report
        missing.append(f"figure '{title}' could not be drawn: {type(err).__name__}: {err}")


def runs_by_case(inputs: ReportInputs) -> dict[str, list[RunVolumes]]:
    """Runs with saved volumes per case, one per method label (the first run found when a
    label has several, e.g. seeds), in table order."""
    order = {label: i for i, label in enumerate(ordered_labels(inputs.rows))} \
        if len(inputs.rows) else {}
    grouped: dict[str, dict[str, RunVolumes]] = {}
    for run in inputs.runs:
        grouped.setdefault(run.case, {}).setdefault(run.label, run)
    return {
        case: sorted(grouped[case].values(), key=lambda r: (order.get(r.label, len(order)),
                                                             r.label))
        for case in order_cases(grouped)
    }


def build_tables(inputs: ReportInputs) -> tuple[list[Table], list[Table]]:
    """(summary tables, paper-style tables) for the rows present."""
    rows = inputs.rows
    cases = inputs.cases()
    summary = [tables.best_per_case_table(rows, cases),
               tables.miou_table(rows, inputs.summaries),
               tables.seed_table(inputs.seed_rows if inputs.seed_rows is not None else rows),
               tables.stratified_table(rows, inputs.runs),
               realism.realism_table(rows), realism.robust_table(rows)]
    summary = [t for t in summary if len(t.frame)]
    paper_style = [
        paper_tables.per_sample_table(rows, "nanocube"),
        paper_tables.per_sample_table(rows, "nanowire"),
        *[t for t in [tables.repeat_table(rows)] if len(t.frame)],
        paper_tables.ablation_table(rows),
        paper_tables.config_table(rows),
    ]
    if len(rows) and (rows["case"] == "nebula").any():
        paper_style += [paper_tables.nebula_table(rows), paper_tables.per_sample_table(rows, "nebula")]
    paper_style += [paper_tables.per_sample_table(rows, case) for case in cases
                    if case.startswith("custom:")]
    return summary, paper_style


def history_label(results_dir: Path, folder: str) -> str:
    """The method label (as in the tables) of the model trained in ``models/<folder>``: from
    its method.json (method, config, switched-off modules), else from the folder name
    ``<method>-<config>[-<variant>]``; the folder name itself when neither tells."""
    try:
        saved = json.loads((Path(results_dir) / "models" / folder / "method.json").read_text())
        method, params = str(saved["method"]), dict(saved.get("params") or {})
    except (OSError, ValueError, KeyError, TypeError):
        method, _, rest = folder.partition("-")
        config, _, variant = rest.partition("-")
        if method_label(method) == method:  # not a registered method: keep the folder name
            return folder
        return method_label(method, config or None, variant or None)
    off = [f"no-{module}" for module in paper_tables.MODULES if params.get(module) is False]
    variant = params.get("variant") or (off[0] if len(off) == 1 else "-".join(off) or None)
    return method_label(method, params.get("config"), variant)


def report_title(inputs: ReportInputs) -> str:
    """'BSE reconstruction benchmark — preset quick' (the presets of the rows; the results
    folder's name only when the rows name no preset)."""
    presets = sorted(inputs.rows["preset"].dropna().astype(str).unique()) if len(inputs.rows) else []
    presets = [p for p in presets if p not in ("", "None", "nan")]
    if presets:
        return f"BSE reconstruction benchmark — preset{'s' if len(presets) > 1 else ''} {', '.join(presets)}"
    return f"BSE reconstruction benchmark — results folder {inputs.results_dir.resolve().name}"


def key_table(summary_tables: list[Table]) -> Table | None:
    """The table shown at the top: the test-split mIoU, else the best method per case."""
    by_key = {t.key: t for t in summary_tables}
    return by_key.get("test-miou") or by_key.get("best-per-case")


def build_figures(inputs: ReportInputs, progress: bool = False) -> list[Figure]:
    """All figures that the saved results allow, in report order: the summary plots, then the
    3D views per case, the input stack last."""
    by_case = {case: runs for case, runs in runs_by_case(inputs).items()
               if case not in STUDY_CASES}  # the dose and realism studies have their own figures
    jobs = [*_summary_jobs(inputs, by_case), *_context_jobs(inputs), *_volume_jobs(by_case),
            *_bse_strip_jobs(inputs.runs)]
    out: list[Figure] = []
    for key, title, caption, draw in tqdm(jobs, desc="report figures", disable=not progress):
        _add_figure(out, inputs.missing, key, title, caption, draw)
    return out


def _summary_jobs(inputs: ReportInputs, by_case: dict[str, list[RunVolumes]]) -> list[tuple]:
    """(key, title, caption, draw) of the plots of IoU and error per case, depth and dose."""
    rows, jobs = inputs.rows, []
    paper = paper_tables.load_paper_results()
    overview_cases = [c for c in inputs.cases() if c not in STUDY_CASES]
    if overview_cases:
        jobs.append(("overview", "Mean IoU per case",
                     "Mean IoU of Cu over each case's samples, one bar per method (the same colour "
                     "for a method in every figure; lighter: oracle threshold or ablated variant).",
                     lambda: figures.case_overview_plot(rows, overview_cases)))
    if by_case:
        jobs.append(("error-depth", "Error versus depth",
                     "Fraction of wrong voxels in each 1 nm layer, averaged over each case's "
                     "samples: where in depth each method errs.",
                     lambda: volume_figures.error_depth_plot(by_case)))
    present = set(rows["case"].astype(str)) if len(rows) else set()
    if "nanocube" in present:
        jobs.append(("iou-depth", "IoU versus nanocube depth",
                     "IoU per core position (deeper to the right); dashed: the paper's Table 3.",
                     lambda: figures.iou_by_sample_plot(rows, "nanocube", paper["table3_nanocube"])))
    if "nanowire" in present:
        jobs.append(("iou-radius", "IoU versus nanowire radius",
                     "IoU per Cu core radius; dashed: the paper's Table 4.",
                     lambda: figures.iou_by_sample_plot(rows, "nanowire", paper["table4_nanowire"])))
    if DOSE_CASE in present:
        jobs.append(("iou-dose", "IoU against dose",
                     "The dose study: every method on the test split and the named cases, "
                     "thinned by hypergeometric draws of the recorded electrons from the electrons "
                     "per pixel the data were simulated at (the highest point: the data as stored); "
                     "bands: 95 % bootstrap intervals of the means.",
                     lambda: figures.iou_vs_dose_plot(rows)))
    if REALISM_CASE in present:
        jobs.append(("iou-realism", "IoU under realistic acquisition",
                     "The realism study: every method on the same samples (test split and named cases) "
                     "read under one degradation at a time, every model trained on ideal data: a "
                     "Gaussian probe (FWHM), another detector (annular diode, low-loss filter), drift, "
                     "gain noise, readout noise and brightness/contrast spread; x = 0: the ideal "
                     "acquisition. Dashed: robust variants (trained with the image degradations as "
                     "augmentation); bands: 95 % bootstrap intervals of the means; dotted: IoU 0.5.",
                     lambda: figures.iou_vs_realism_plot(rows)))
    depth_cases = [c for c in inputs.cases() if c != REALISM_CASE  # 19 levels: the realism figure
                   and rows.loc[rows["case"] == c, "per_depth_iou"].notna().any()] if len(rows) else []
    if depth_cases:
        jobs.append(("per-depth-iou", "IoU per depth layer",
                     "Mean IoU of each 1 nm layer (layers empty in both volumes left out): the "
                     "depth resolution of each method.",
                     lambda: figures.per_depth_iou_plot(rows, depth_cases)))
    return jobs


def _context_jobs(inputs: ReportInputs) -> list[tuple]:
    """(key, title, caption, draw) of the training curves and the inference times."""
    rows, jobs = inputs.rows, []
    if inputs.histories:
        labelled = {history_label(inputs.results_dir, name): history
                    for name, history in inputs.histories.items()}
        jobs.append(("training", "Training curves",
                     "Validation mIoU and training loss per epoch from models/*/history.csv "
                     "(like the paper's Fig. 4). The dashed line marks the switch from the weighted "
                     "BCE loss to the Lovász hinge for the last epochs: the loss value jumps there "
                     "because it is a different loss with a different scale, not because the model "
                     "got worse (the validation mIoU shows that).",
                     lambda: figures.training_curves_plot(labelled)))
    if len(rows) and rows["seconds_per_volume"].notna().any():
        jobs.append(("timing", "Inference time",
                     "Median seconds per reconstructed volume (method only, after warm-up), linear "
                     "axis. MED-SEM appears once per threshold rule: the rule changes the threshold, "
                     "not the work.",
                     lambda: figures.timing_plot(rows)))
    return jobs


def _volume_jobs(by_case: dict[str, list[RunVolumes]]) -> list[tuple]:
    """(key, title, caption, draw) of the 3D reconstructions and their errors, per case."""
    jobs = []
    for case, runs in by_case.items():
        shown = min(MAX_SAMPLES_PER_FIGURE, len(runs[0].ids))
        more = f" (first {shown} of {len(runs[0].ids)} samples)" if shown < len(runs[0].ids) else ""
        jobs.append((f"render-{case}", f"3D reconstructions — {case}",
                     "Cu voxels of the ground truth (top row) and of each method's binary "
                     f"reconstruction, one column per sample{more}; depth increases downwards "
                     "(like the paper's Fig. 5 and Fig. 8).",
                     lambda runs=runs: volume_figures.render_reconstructions(runs, MAX_SAMPLES_PER_FIGURE)))
        jobs.append((f"errors-{case}", f"Absolute error — {case}",
                     "|binary − ground truth| per method and sample: red = Cu predicted where "
                     f"there is none, blue = Cu missed{more} (like the paper's Fig. 7 and 10).",
                     lambda runs=runs: volume_figures.render_errors(runs, MAX_SAMPLES_PER_FIGURE)))
    return jobs


def _bse_strip_jobs(runs: list[RunVolumes]) -> list[tuple]:
    """The job drawing one sample's BSE input stack, where a run saved one."""
    strip_run = _bse_strip_run(runs)
    if strip_run is None:
        return []
    return [("bse-stack", "BSE input stack",
             f"All {strip_run.bse.shape[1]} beam energies of sample {strip_run.ids[0]} "
             f"(case {strip_run.case}): the backscatter yield, detected BSE electrons per "
             "primary electron, each image on its own colour scale (colour bars).",
             lambda: volume_figures.bse_strip(strip_run.bse[0], strip_run.energies_keV,
                                              f"{strip_run.case} / {strip_run.ids[0]}"))]


def _bse_strip_run(runs: list[RunVolumes]) -> RunVolumes | None:
    """A run whose first sample shows the input stack: nanowire first, then any other."""
    usable = [r for r in runs if r.bse.ndim == 4 and len(r.ids)]
    preferred = [r for r in usable if r.case == "nanowire"] + usable
    return preferred[0] if preferred else None


def provenance(inputs: ReportInputs) -> dict:
    """Where the results came from (rows, dataset.json) and how the report was made."""
    rows = inputs.rows

    def unique(column) -> str:
        if not len(rows):
            return "—"
        values = sorted(rows[column].dropna().astype(str).unique())
        return ", ".join(values) if values else "—"

    versions: dict[str, set] = {}
    for text in rows["versions"].dropna().unique() if len(rows) else []:
        try:
            parsed = json.loads(text) if isinstance(text, str) else dict(text)
        except (json.JSONDecodeError, TypeError, ValueError):
            continue
        for name, version in parsed.items():
            versions.setdefault(str(name), set()).add(str(version))
    created = pd.to_datetime(rows["created_utc"], errors="coerce", utc=True).dropna() \
        if len(rows) else pd.Series([], dtype="datetime64[ns, UTC]")
    results = {
        "results folder": str(inputs.results_dir.resolve()),
        "git commit(s)": unique("git_commit"),
        "device(s)": unique("device"),
        "preset(s)": unique("preset"),
        "seed(s)": unique("seed"),
        "dataset hash(es)": unique("dataset_hash"),
        "threshold rule(s)": unique("threshold_rule"),
        "results created (UTC)": (f"{created.min():%Y-%m-%d %H:%M} – {created.max():%Y-%m-%d %H:%M}"
                                  if len(created) else "—"),
        "result rows": str(len(rows)),
        "library versions": "; ".join(f"{k} {', '.join(sorted(v))}"
                                      for k, v in sorted(versions.items())) or "—",
    }
    dataset = {}
    if inputs.dataset_meta:
        dataset = {k: _short(v) for k, v in _flatten(inputs.dataset_meta).items()}
    report = {
        "report created (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        **{name: _version(name) for name in REPORT_PACKAGES},
    }
    return {"results": results, "dataset": dataset, "report": report, "runs_html": runs_table_html(rows)}


def runs_table_html(rows: pd.DataFrame) -> str:
    """The provenance's table of runs, one line per run: cases in report order, the dose
    study's runs by read dose (lowest first), the realism study's by level (catalogue order),
    then method and run key."""
    run_rows = []
    for key, group in rows.groupby(rows["run_key"].astype(str), sort=True) if len(rows) else []:
        first = group.iloc[0]
        run_rows.append({
            "run": key, "method": first["label"],
            "case": case_title(first["case"], first["read_electrons_per_pixel"], first["acquisition"]),
            "samples": group["sample"].nunique(), "seed": first["seed"],
            "preset": first["preset"], "device": first["device"],
            "threshold": f"{first['threshold_rule']}" + (
                f" ({group['threshold'].iloc[0]:.2f})" if group["threshold"].notna().all()
                and group["threshold"].nunique() == 1 else ""),
            "_order": (str(first["case"]), int(first["read_electrons_per_pixel"]), level_rank(first["acquisition"])),
        })
    case_rank = {case: i for i, case in enumerate(order_cases(r["_order"][0] for r in run_rows))}
    run_rows.sort(key=lambda r: (case_rank[r["_order"][0]], *r["_order"][1:], str(r["method"]), r["run"]))
    if not run_rows:
        return ""
    return pd.DataFrame([{k: v for k, v in r.items() if k != "_order"} for r in run_rows]).to_html(
        index=False, classes="runs", border=0, na_rep="—", table_id="runs")



def _flatten(meta: dict, prefix: str = "", depth: int = 0) -> dict:
    flat = {}
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 1:
            flat.update(_flatten(value, f"{name}.", depth + 1))
        elif isinstance(value, list) and len(value) > 8:
            flat[name] = f"list of {len(value)}"
        else:
            flat[name] = value
    return flat


def _short(value, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main_job_status(results_dir: Path) -> dict | None:
    """``main_job.json`` of a results folder (the stages of ``benchmark main``), for the report."""
    path = Path(results_dir) / "main_job.json"
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
        items = [dict(item) for item in status["items"]]
    except (ValueError, KeyError, TypeError):
        return {"budget": "unreadable main_job.json", "verdict": "unknown", "items": []}
    budget = status.get("time_budget_s")
    return {
        "budget": "no time budget" if budget is None else f"time budget {budget:g} s, used {status.get('seconds', 0):.0f} s",
        "verdict": "complete" if status.get("complete") else "INCOMPLETE",
        "items": items,
    }


def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates (``reports/templates``; HTML autoescaped)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def render_html(inputs: ReportInputs, progress: bool = False) -> str:
    """The report as one HTML string."""
    summary_tables, paper_style_tables = build_tables(inputs)
    figure_list = build_figures(inputs, progress=progress)
    template = template_environment().get_template("report.html")
    top_table = key_table(summary_tables)
    top_figure = next((f for f in figure_list if f.key == "overview"), None)
    return template.render(
        title=report_title(inputs),
        results_dir=str(inputs.results_dir.resolve()),
        verdict=verdict_remarks(inputs),
        remarks=summary_remarks(inputs),
        key_table=top_table,
        key_figure=top_figure,
        summary_tables=[t for t in summary_tables if t is not top_table],
        paper_tables=paper_style_tables,
        figures=[f for f in figure_list if f is not top_figure],
        missing=inputs.missing,
        main_job=main_job_status(inputs.results_dir),
        provenance=provenance(inputs),
        paper_source=paper_tables.load_paper_results()["source"],
        open_keys=OPEN_KEYS,
    )


def build_report(results_dir, out=None, progress: bool = False) -> Path:
    """Build the self-contained HTML report of ``results_dir``; return its path.

    ``out`` defaults to ``results_dir/report.html``. Written atomically
    (``datasets.files.write_text_atomic``), so a half-written report never replaces a good one.
    """
    inputs = load_inputs(results_dir)
    out = Path(out) if out is not None else inputs.results_dir / "report.html"
    write_text_atomic(out, render_html(inputs, progress=progress))
    return out
