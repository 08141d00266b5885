"""``python -m reports RESULTS_DIR [--out FILE]``: rebuild the HTML report from saved results.

``python -m reports readme [RESULTS_DIR] [--check]``: write README.md's results block from a results
folder's snapshot (see :mod:`reports.readme`); ``--check`` fails when README.md disagrees with it.

``python -m reports schema [--check]``: write docs/architecture.md's table of result-row columns
from ``benchmark.schema`` (see :mod:`reports.schema_doc`); ``--check`` fails when the page disagrees.

``python -m reports readme-scaling [STUDY_DIR] [--check]``: the same for README.md's scaling-study
block (snapshot in docs/results/scaling/; see :mod:`reports.scaling_readme`).

``python -m reports scaling RESULTS_DIR [--out FILE]``: the scaling study's page of a study folder
(``scaling.parquet``, ``fits.json``; see :mod:`reports.scaling_page`), default RESULTS_DIR/scaling.html.
"""

from __future__ import annotations

import argparse
import sys

from reports.html import build_report


def _snapshot_command(argv, prog: str, module, source_help: str, what: str) -> int:
    """``python -m reports readme`` / ``readme-scaling``: ``module`` (reports.readme or
    reports.scaling_readme) rewrites README.md's block from its committed snapshot; with a folder,
    it first takes a new snapshot of it; ``--check`` only compares."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Write README.md's {what} block from the committed snapshot "
        f"({module.SNAPSHOT_DIR.relative_to(module.REPO_ROOT)}); with a folder, first take a new snapshot of it.",
    )
    parser.add_argument("source_dir", nargs="?", default=None, help=source_help)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when README.md disagrees with the snapshot")
    args = parser.parse_args(argv)

    def work() -> None:
        if args.check:
            module.check_readme()
            print(f"README.md's {what} block agrees with the snapshot")
            return
        if args.source_dir:
            print(f"snapshot written to {module.write_snapshot(args.source_dir)}")
        print("README.md updated" if module.update_readme() else "README.md already up to date")

    return _run_document_command(work, module.ReadmeOutOfDate)


def readme_main(argv) -> int:
    from reports import readme

    return _snapshot_command(argv, "python -m reports readme", readme, "results folder, e.g. outputs/quick",
                             "results")


def readme_scaling_main(argv) -> int:
    from reports import scaling_readme

    return _snapshot_command(argv, "python -m reports readme-scaling", scaling_readme,
                             "study folder, e.g. outputs/scaling-paper-cpu", "scaling-study")


def schema_main(argv) -> int:
    from reports import schema_doc

    parser = argparse.ArgumentParser(
        prog="python -m reports schema",
        description="Write the table of result-row columns in "
        f"{schema_doc.ARCHITECTURE_PATH.relative_to(schema_doc.REPO_ROOT)} from benchmark/schema.py.",
    )
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when the page disagrees with the schema")
    args = parser.parse_args(argv)

    def work() -> None:
        if args.check:
            schema_doc.check_schema_doc()
            print("docs/architecture.md's result-row columns agree with benchmark/schema.py")
            return
        changed = schema_doc.update_schema_doc()
        print("docs/architecture.md updated" if changed else "docs/architecture.md already up to date")

    return _run_document_command(work, schema_doc.SchemaDocOutOfDate)


def scaling_main(argv) -> int:
    from reports.scaling_page import PAGE_NAME, build_scaling_report

    parser = argparse.ArgumentParser(
        prog="python -m reports scaling",
        description="Write the scaling study's self-contained HTML page (learning curves, power-law "
        "fits and their extrapolation to N = 10,000 beside the paper, paired differences) from a "
        "study folder of `python -m benchmark scaling-study` (scaling.parquet, fits.json).",
    )
    parser.add_argument("results_dir", help="study folder, e.g. outputs/scaling-paper-cpu")
    parser.add_argument("--out", default=None, help=f"page path (default RESULTS_DIR/{PAGE_NAME})")
    args = parser.parse_args(argv)

    try:
        path = build_scaling_report(args.results_dir, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"scaling report written to {path}")
    return 0


def _run_document_command(work, out_of_date: type[Exception]) -> int:
    """Run ``work`` (it prints what it did): exit 0, 1 when the document disagrees with its
    source (``out_of_date``), 2 on a missing or bad input."""
    try:
        work()
    except out_of_date as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["readme"]:
        return readme_main(argv[1:])
    if argv[:1] == ["readme-scaling"]:
        return readme_scaling_main(argv[1:])
    if argv[:1] == ["schema"]:
        return schema_main(argv[1:])
    if argv[:1] == ["scaling"]:
        return scaling_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description="Build the self-contained HTML report of a benchmark results folder "
        "(results.parquet, runs/, models/, data/). Reads saved results only.",
    )
    parser.add_argument("results_dir", help="results folder, e.g. outputs/quick")
    parser.add_argument("--out", default=None, help="report path (default RESULTS_DIR/report.html)")
    args = parser.parse_args(argv)
    try:
        path = build_report(args.results_dir, args.out, progress=True)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
