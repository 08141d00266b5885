"""``python -m reports RESULTS_DIR [--out FILE]``: rebuild the HTML report from saved results."""

from __future__ import annotations

import argparse
import sys

from reports.html import build_report


def main(argv=None) -> int:
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
