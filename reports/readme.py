"""The README's results, written from saved results: one source for the README and the report.

``python -m reports readme outputs/quick`` copies the rows and run summaries of a results folder
into a small snapshot (``docs/results/quick/``: ``results.parquet``, ``summaries.json``,
``provenance.json``; committed, a few hundred KiB) and rewrites the block of README.md between
:data:`BEGIN` and :data:`END` with the report's own tables (the functions of
:mod:`reports.tables`, the same numbers as the HTML report), rendered as Markdown.
``python -m reports readme --check`` rebuilds the block from the committed snapshot and fails when
README.md disagrees (a test runs it), so the README cannot drift from the data it quotes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from datasets.files import write_bytes_atomic, write_text_atomic
from reports import paper_tables, tables
from reports.realism import realism_table
from reports.results import ReportInputs, first_seed_rows, load_rows, with_repeats
from reports.summary import paired_remarks
from reports.table_base import Table, best_mask

REPO_ROOT = Path(__file__).resolve().parents[1]
README_PATH = REPO_ROOT / "README.md"
SNAPSHOT_DIR = REPO_ROOT / "docs" / "results" / "quick"
BEGIN = "<!-- BEGIN GENERATED RESULTS: `python -m reports readme outputs/quick` writes this block -->"
END = "<!-- END GENERATED RESULTS -->"
#: the README's realism columns: the ideal level and one telling level of each degradation
README_REALISM_LEVELS = ("ideal", "probe-2nm", "detector-annular", "drift-0.5nm", "gain-10pct", "readout-0.02",
                         "brightness-20pct")


class ReadmeOutOfDate(ValueError):
    """README.md's generated block differs from what the snapshot gives."""


def write_snapshot(results_dir, dest=SNAPSHOT_DIR) -> Path:
    """Copy what the README's tables need from ``results_dir`` into ``dest``: the rows, the run
    summaries of the rows' runs (their saved bootstrap intervals) and the main job's provenance."""
    results_dir, dest = Path(results_dir), Path(dest)
    source = results_dir / "results.parquet"
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: run `python -m benchmark main` first")
    rows = pd.read_parquet(source)
    summaries = {}
    for key in sorted(rows["run_key"].dropna().astype(str).unique()):
        path = results_dir / "runs" / key / "summary.json"
        if path.is_file():
            summaries[key] = json.loads(path.read_text())
    provenance = {}
    for name in ("main_job.json", "data/dataset.json"):
        path = results_dir / name
        if path.is_file():
            provenance[name] = json.loads(path.read_text())
    write_bytes_atomic(dest / "results.parquet", source.read_bytes())
    write_text_atomic(dest / "summaries.json", json.dumps(summaries, indent=1, sort_keys=True) + "\n")
    write_text_atomic(dest / "provenance.json", json.dumps(_slim(provenance), indent=1, sort_keys=True) + "\n")
    return dest


def _slim(provenance: dict) -> dict:
    """Provenance without the per-file checksums (long and of no use to a README reader)."""
    dataset = dict(provenance.get("data/dataset.json") or {})
    for key in ("files", "sha256"):
        dataset.pop(key, None)
    return {**provenance, "data/dataset.json": dataset} if dataset else provenance


def load_snapshot(snapshot_dir=SNAPSHOT_DIR) -> ReportInputs:
    """The report inputs of a snapshot (rows, seed rows, summaries; no volumes)."""
    snapshot_dir = Path(snapshot_dir)
    if not (snapshot_dir / "results.parquet").is_file():
        raise FileNotFoundError(f"no results snapshot in {snapshot_dir}: run `python -m reports readme outputs/quick`")
    missing: list[str] = []
    seed_rows = with_repeats(load_rows(snapshot_dir, missing))
    summaries_path = snapshot_dir / "summaries.json"
    summaries = json.loads(summaries_path.read_text()) if summaries_path.is_file() else {}
    return ReportInputs(results_dir=snapshot_dir, rows=first_seed_rows(seed_rows), seed_rows=seed_rows,
                        summaries=summaries, missing=missing)


def _cell(value, column: str) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if column.split(" ")[0] in ("samples", "n"):
            return f"{value:.0f}"
        return f"{value:.1f}" if "(%)" in column else f"{value:.3f}"
    return "—" if value is None or (isinstance(value, str) and not value) else str(value)


def table_markdown(table: Table, drop: tuple[str, ...] = ()) -> str:
    """One report table as a Markdown table; the report's best cells in bold."""
    frame = table.frame.drop(columns=[c for c in drop if c in table.frame.columns])
    names = [" ".join(str(p) for p in c) if isinstance(c, tuple) else str(c) for c in frame.columns]
    head = frame.index.name or ""
    lines = ["| " + " | ".join([head, *names]) + " |", "|" + "---|" * (len(names) + 1)]
    for label, row in frame.iterrows():
        cells = []
        for column, name in zip(frame.columns, names):
            text = _cell(row[column], name)
            bold = column in table.best.columns and bool(table.best.loc[label, column])
            cells.append(f"**{text}**" if bold and text != "—" else text)
        lines.append("| " + " | ".join([str(label), *cells]) + " |")
    return "\n".join(lines)


def realism_markdown(rows: pd.DataFrame) -> str:
    """The README's realism table (one table, its title in the first header cell to stay short):
    mean IoU of the ideal-trained models at :data:`README_REALISM_LEVELS`; "" without realism rows."""
    table = realism_table(rows)
    full = rows.loc[rows["variant"].astype(str) == "full", "label"] if len(rows) else []
    labels = [label for label in table.frame.index if label in set(full)]
    levels = [level for level in README_REALISM_LEVELS if level in table.frame.columns]
    if not labels or not levels:
        return ""
    frame = table.frame.loc[labels, levels].rename_axis("realism: mean IoU, trained on ideal data")
    best = best_mask(frame, {level: "max" for level in levels})
    return table_markdown(Table(table.key, table.title, table.caption, frame, best, ""))


def results_markdown(inputs: ReportInputs) -> str:
    """The README's generated results: the report's key tables and its paired comparisons (the
    named cases' spread over repeated simulations, the dose study and the strata stay in the report)."""
    rows = inputs.rows
    parts = []
    main = tables.miou_table(rows, inputs.summaries)
    if len(main.frame):
        parts += [f"**{main.title}**", "", table_markdown(main, drop=("interval from",)), ""]
    pairs = paired_remarks(rows)
    if pairs:
        parts += ["Paired on the same test samples (bootstrap of the per-sample IoU difference, first seed):", ""]
        parts += [f"- {remark}" for remark in pairs] + [""]
    seeds = tables.seed_table(inputs.seed_rows if inputs.seed_rows is not None else rows)
    if len(seeds.frame):
        parts += [f"**{seeds.title}**", "", table_markdown(seeds), ""]
    for case in ("nanocube", "nanowire"):
        table = paper_tables.per_sample_table(rows, case)
        if len(table.frame):
            parts += [f"**{table.title}**", "", table_markdown(table), ""]
    if len(rows) and (rows["case"] == "nebula").any():
        nebula = paper_tables.nebula_table(rows)
        parts += [f"**{nebula.title}**", "", table_markdown(nebula), ""]
    ablation = paper_tables.ablation_table(rows)
    if len(ablation.frame):
        parts += [f"**{ablation.title}**", "", table_markdown(ablation), ""]
    realism = realism_markdown(rows)
    if realism:
        parts += [realism, ""]
    return "\n".join(parts).rstrip() + "\n"


def generated_block(snapshot_dir=SNAPSHOT_DIR) -> str:
    return f"{BEGIN}\n\n{results_markdown(load_snapshot(snapshot_dir))}\n{END}"


def _split(text: str, readme: Path, begin: str = BEGIN, end: str = END) -> tuple[str, str]:
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{readme} must hold exactly one generated block ({begin} ... {end})")
    head, rest = text.split(begin, 1)
    return head, rest.split(end, 1)[1]


def write_block(readme: Path, begin: str, end: str, block) -> bool:
    """Replace README's block between ``begin`` and ``end`` (markers included) by ``block()``
    (called once the markers are found); True when the file changed."""
    readme = Path(readme)
    text = readme.read_text()
    head, tail = _split(text, readme, begin, end)
    new = head + block() + tail
    if new != text:
        write_text_atomic(readme, new)
    return new != text


def block_is_current(readme: Path, begin: str, end: str, block) -> bool:
    """Whether README's block between ``begin`` and ``end`` is ``block()``."""
    readme = Path(readme)
    text = readme.read_text()
    head, tail = _split(text, readme, begin, end)
    return head + block() + tail == text


def update_readme(readme=README_PATH, snapshot_dir=SNAPSHOT_DIR) -> bool:
    """Rewrite README's generated block from the snapshot; True when it changed."""
    return write_block(readme, BEGIN, END, lambda: generated_block(snapshot_dir))


def check_readme(readme=README_PATH, snapshot_dir=SNAPSHOT_DIR) -> None:
    """Raise :class:`ReadmeOutOfDate` when README's generated block is not what the snapshot gives."""
    if not block_is_current(readme, BEGIN, END, lambda: generated_block(snapshot_dir)):
        raise ReadmeOutOfDate(f"{readme}'s results disagree with {snapshot_dir}: run "
                              "`python -m reports readme` (or with outputs/quick to take new results)")
