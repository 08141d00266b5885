"""The scaling study's HTML page (``python -m reports scaling RESULTS_DIR [--out FILE]``): one
self-contained file, ``RESULTS_DIR/scaling.html`` by default, made with the main report's
machinery (``reports.html``: its templates' style, embedded PNG figures, atomic writing).

It reads the study folder only (``reports.scaling.load_study``); a figure that cannot be drawn
(e.g. IoU against parameters when one size ran) is listed with its reason instead of failing.
"""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

from datasets.files import write_text_atomic
from reports.html import REPORT_PACKAGES, Figure, _add_figure, _version, template_environment
from reports.paper_tables import load_paper_results
from reports.scaling import PAPER_SETTING, ScalingStudy, load_study, scaling_tables
from reports.scaling_figures import iou_vs_parameters_plot, learning_curves_plot
from reports.scaling_remarks import scaling_remarks, what_ran

PAGE_NAME = "scaling.html"
#: the tables shown open (the rest one click away)
OPEN_TABLES = ("scaling-extrapolation", "scaling-crossings", "scaling-paired")


def scaling_figures(study: ScalingStudy, missing: list[str]) -> list[Figure]:
    """The page's figures; one that cannot be drawn is added to ``missing`` with its reason."""
    out: list[Figure] = []
    _add_figure(out, missing, "learning-curves", "Learning curves",
                "Mean Cu IoU on the evaluation geometries against the number of training geometries N "
                "(log axis), one curve per model: colour = network (as in the main report), marker = "
                "size; bands: 95 % bootstrap intervals of the means. Thin line: the power law "
                "IoU(N) = a − b N^−c fitted over the N run; dashed: the same fit extrapolated to the "
                "paper's N = 10,000, where the open marker and its bar give the extrapolated IoU and "
                "its 95 % interval (the models dodged a little around 10,000). Stars: the "
                f"paper's BSE-VoxNets test mIoU (Table 2); {PAPER_SETTING}.",
                lambda: learning_curves_plot(study))
    _add_figure(out, missing, "iou-parameters", "IoU against model size at fixed N",
                "For each N run at more than one model size: mean Cu IoU against the parameter count "
                "(log axis; ticks at the study's sizes), one line per network, with 95 % bootstrap "
                "intervals as bars.",
                lambda: iou_vs_parameters_plot(study))
    return out


def page_title(study: ScalingStudy) -> str:
    name = study.meta.get("name")
    return f"Scaling study — {'preset ' + name if name else 'results folder ' + study.folder.resolve().name}"


def render_scaling_html(study: ScalingStudy) -> str:
    """The page as one HTML string."""
    missing = list(study.notes)
    figures = scaling_figures(study, missing)
    report = {"report created (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
              "python": platform.python_version(), **{name: _version(name) for name in REPORT_PACKAGES}}
    hashes = ", ".join(sorted(study.rows["dataset_hash"].dropna().astype(str).str[:16].unique())) \
        if "dataset_hash" in study.rows.columns else "—"
    return template_environment().get_template("scaling.html").render(
        title=page_title(study), results_dir=str(study.folder.resolve()), remarks=scaling_remarks(study),
        figures=figures, tables=scaling_tables(study), open_tables=OPEN_TABLES, missing=missing,
        what_ran=what_ran(study), dataset_hash=hashes, report=report,
        paper_source=load_paper_results()["source"])


def build_scaling_report(results_dir, out=None, n_resamples: int = 1000) -> Path:
    """Write the scaling study's page of ``results_dir`` (default ``results_dir/scaling.html``,
    atomically); return its path. ``n_resamples``: for the fits when fits.json is missing."""
    study = load_study(results_dir, n_resamples=n_resamples)
    out = Path(out) if out is not None else study.folder / PAGE_NAME
    write_text_atomic(out, render_scaling_html(study))
    return out
