"""The README's scaling-study block, written from a committed snapshot of a study folder.

``python -m reports readme-scaling outputs/scaling-paper-cpu`` copies the study's rows and fits
(``scaling.parquet``, ``fits.json``) into ``docs/results/scaling/``, draws the learning curves there
(``learning_curves.png``) and rewrites README.md's block between :data:`BEGIN` and :data:`END` from
the snapshot: the power-law fits extrapolated to N = 10,000 beside the paper's Table 2, where the
fitted curves cross, and the paired U-Net − BSE-VoxNets difference at each N (one column per size),
the tables of ``python -m reports scaling``. ``--check`` rebuilds the block from the snapshot and
fails when README.md disagrees (a test runs it), so the README cannot drift from its study.
"""

from __future__ import annotations

from pathlib import Path

from datasets.files import write_bytes_atomic
from reports.readme import README_PATH, REPO_ROOT, ReadmeOutOfDate, block_is_current, write_block
from reports.scaling import FITS_FILE, ROWS_FILE, load_study
from reports.scaling_figures import learning_curves_plot
from reports.scaling_remarks import scaling_markdown

SNAPSHOT_DIR = REPO_ROOT / "docs" / "results" / "scaling"
FIGURE_NAME = "learning_curves.png"
BEGIN = ("<!-- BEGIN GENERATED SCALING: `python -m reports readme-scaling outputs/scaling-paper-cpu` "
         "writes this block -->")
END = "<!-- END GENERATED SCALING -->"


def write_snapshot(study_dir, dest=SNAPSHOT_DIR) -> Path:
    """Copy a study folder's rows and fits into ``dest`` and draw its learning curves there."""
    study_dir, dest = Path(study_dir), Path(dest)
    load_study(study_dir)  # the clear error for a folder that is not a study's
    if not (study_dir / FITS_FILE).is_file():
        raise FileNotFoundError(f"{study_dir / FITS_FILE} does not exist: rerun "
                                f"`python -m benchmark scaling-study --results {study_dir}` to write it")
    for name in (ROWS_FILE, FITS_FILE):
        write_bytes_atomic(dest / name, (study_dir / name).read_bytes())
    write_bytes_atomic(dest / FIGURE_NAME, learning_curves_plot(load_study(dest)))
    return dest


def generated_block(snapshot_dir=SNAPSHOT_DIR, readme=README_PATH) -> str:
    """The block: the study's Markdown tables and, when the snapshot has it, the figure."""
    snapshot_dir = Path(snapshot_dir)
    if not (snapshot_dir / ROWS_FILE).is_file():
        raise FileNotFoundError(f"no scaling-study snapshot in {snapshot_dir}: run "
                                "`python -m reports readme-scaling outputs/scaling-paper-cpu`")
    text = scaling_markdown(load_study(snapshot_dir))
    figure = snapshot_dir / FIGURE_NAME
    if figure.is_file():
        try:
            link = figure.resolve().relative_to(Path(readme).resolve().parent).as_posix()
        except ValueError:
            link = figure.resolve().as_posix()
        text += f"\n![Learning curves of the scaling study]({link})\n"
    return f"{BEGIN}\n\n{text}\n{END}"


def update_readme(readme=README_PATH, snapshot_dir=SNAPSHOT_DIR) -> bool:
    """Rewrite README's scaling block from the snapshot; True when it changed."""
    return write_block(readme, BEGIN, END, lambda: generated_block(snapshot_dir, readme))


def check_readme(readme=README_PATH, snapshot_dir=SNAPSHOT_DIR) -> None:
    """Raise :class:`ReadmeOutOfDate` when README's scaling block is not what the snapshot gives."""
    if not block_is_current(readme, BEGIN, END, lambda: generated_block(snapshot_dir, readme)):
        raise ReadmeOutOfDate(f"{readme}'s scaling study disagrees with {snapshot_dir}: run `python -m reports "
                              "readme-scaling` (or with the study folder to take new results)")
