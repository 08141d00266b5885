"""``python -m benchmark`` (or ``bse-bench``): the benchmark's one command line.

Subcommands: see :data:`COMMANDS` (``run``, ``list``, ``report``, ``reconstruct``, ``show``,
``doctor``, ``main``, ``design-study``, ``scaling-study``, ``pack``), plus the lower layers' commands ``data ...``
(``python -m datasets``) and ``train ...`` (``python -m methods``).

The same flag means the same thing everywhere: ``--results`` a results folder, ``--data`` a
dataset folder, ``--preset`` a benchmark preset, ``--data-preset`` a dataset preset,
``--train-preset`` a training preset.

Messages and progress bars go to stderr; stdout carries the results (a table, or with
``--json`` exactly one JSON document). Exit codes (``datasets.cli_errors``): bad names and
values 2, with a message listing the known ones; other errors 1, in one line (``--debug`` shows
the traceback); an interrupted command exits with 130 and keeps every finished run (rerun it to
resume).

Heavy modules (pandas, torch, the methods) are imported inside the commands that need them, so
``--help`` and ``list`` start quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from benchmark.errors import BenchmarkError, UsageError
from benchmark.presets import BENCHMARK_PRESETS, get_preset

#: columns shown by ``run`` and ``main`` in the text table
TABLE_COLUMNS = ["method", "config", "variant", "case", "read_electrons_per_pixel", "acquisition", "sample", "iou",
                 "mre", "threshold", "threshold_rule", "seconds_per_volume"]
#: what one summary line of the text table stands for (a run; the dose and realism cases: one per level)
SUMMARY_KEYS = ["method", "config", "variant", "case", "read_electrons_per_pixel", "acquisition", "threshold_rule"]


def build_parser(prog: str = "python -m benchmark") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The bse-bench command line (python -m benchmark, or the console script bse-bench): "
                    f"{', '.join(COMMANDS)}; `{prog} COMMAND --help` for each.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_list_report_and_doctor, _add_reconstruct_and_show, _add_main_and_studies):
        add(sub)
    sub.add_parser("data", add_help=False, help=COMMANDS["data"])
    sub.add_parser("train", add_help=False, help=COMMANDS["train"])
    sub.add_parser("scaling-study", add_help=False, help=COMMANDS["scaling-study"])
    return parser


def _common(p, preset_default="quick") -> None:
    """The flags of every command that runs a benchmark."""
    p.add_argument("--preset", default=preset_default,
                   help=f"benchmark preset: {', '.join(BENCHMARK_PRESETS)} (default {preset_default})")
    p.add_argument("--results", type=Path, default=None,
                   help="results folder (default outputs/<preset>/)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the preset's)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is best on a busy machine)")


def _add_run(sub) -> None:
    from benchmark.cases import CUSTOM_CASE_PATTERN, DOSE_CASE, REALISM_CASE, named_cases
    from datasets.presets import get_preset as get_dataset_preset
    from methods.binarize import THRESHOLD_RULES

    quick_cases = named_cases(get_dataset_preset(get_preset("quick").dataset_preset).cases)
    p = sub.add_parser("run", help=COMMANDS["run"])
    p.add_argument("--method", action="append", required=True,
                   help="method name or 'all' (repeatable; `list` shows the methods)")
    p.add_argument("--case", action="append", required=True,
                   help=f"{', '.join(quick_cases)} (the quick preset's; `list --preset P` for others), "
                        f"a geometry file {CUSTOM_CASE_PATTERN}, or 'all' (repeatable)")
    p.add_argument("--read-dose", type=int, action="append", default=None, metavar="N",
                   help=f"with --case {DOSE_CASE}: run only the dose level N e-/pixel (repeatable; default "
                        "every level, listed in the error for a level that is not one)")
    p.add_argument("--level", action="append", default=None, metavar="NAME",
                   help=f"with --case {REALISM_CASE}: run only the acquisition level NAME (repeatable; default "
                        "every level of datasets/realism.py: ideal, probe-1nm, detector-annular, drift-0.5nm, ...)")
    p.add_argument("--config", default=None, help="network config (default: the preset's configs)")
    p.add_argument("--threshold-rule", default=DEFAULT_THRESHOLD_RULE,
                   help=f"{', '.join(THRESHOLD_RULES)} (default {DEFAULT_THRESHOLD_RULE})")
    p.add_argument("--json", action="store_true", help="print the result rows as one JSON list")
    _common(p)


def _add_list_report_and_doctor(sub) -> None:
    p = sub.add_parser("list", help=COMMANDS["list"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--preset", default="quick", help="preset whose stored cases are listed")

    p = sub.add_parser("report", help=COMMANDS["report"])
    p.add_argument("results_dir", nargs="?", type=Path, default=None,
                   help="results folder (default outputs/<preset>/; or --results)")
    p.add_argument("--results", type=Path, default=None, help="results folder (the same as the positional one)")
    p.add_argument("--preset", default="quick")

    p = sub.add_parser("doctor", help=COMMANDS["doctor"])
    p.add_argument("--results", type=Path, default=None, help="results folder (default outputs/<preset>/)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON list")
    p.add_argument("--fix", action="store_true",
                   help="first rebuild results.parquet from the run folders (the newest run of each result "
                        "counted; removes results counted twice)")


def _add_reconstruct_and_show(sub) -> None:
    p = sub.add_parser("reconstruct", help=COMMANDS["reconstruct"])
    p.add_argument("--method", required=True)
    p.add_argument("--config", default=None, help="network config (default: the preset's first)")
    p.add_argument("--stack", type=Path, required=True,
                   help="BSE stack .npz (datasets.stack.BseStack); its optional 'labels' (D, H, W) Cu mask "
                        "is scored (IoU printed)")
    p.add_argument("--out", type=Path, required=True,
                   help="VOLUME.npz (default format: probability, binary, voxel size, origin, metadata), "
                        "VOLUME.nii.gz (NIfTI + VOLUME_binary.nii.gz + VOLUME.json) or VOLUME.npy "
                        "(+ VOLUME_binary.npy + VOLUME.json)")
    p.add_argument("--threshold-rule", default="saved",
                   help="saved (the validation threshold saved with the model, else 0.5; default), "
                        "validation (choose it now on the validation split: builds the data if missing) "
                        "or fixed-0.5")
    p.add_argument("--electrons-per-pixel", type=int, default=None,
                   help="the stack's bse holds raw counts of this many primaries per pixel (divided here)")
    p.add_argument("--probe-fwhm-nm", type=float, default=None,
                   help="the beam's FWHM (nm) the stack was acquired with (0: point beam; default: its metadata)")
    p.add_argument("--detector", default=None, help="the detector the stack was acquired with (e.g. plane, "
                                                    "annular; default: its metadata)")
    p.add_argument("--pixel-nm", type=float, default=None,
                   help="the stack's pixel size (nm; default: its metadata). Any of the three differing from "
                        "the model's training conditions is warned about and recorded in the metadata")
    _common(p)

    p = sub.add_parser("show", help=COMMANDS["show"])
    p.add_argument("volume", type=Path, help="a file written by `reconstruct` (.npz, .nii.gz, .nii or .npy)")
    p.add_argument("-o", "--out", type=Path, default=None, help="PNG to write (default VOLUME.png beside it)")
    p.add_argument("--binary", action="store_true", help="draw the Cu mask instead of the probability")
    p.add_argument("--dpi", type=int, default=100, help="pixels per inch (default 100: a 1300 x 320 px PNG)")


def _add_main_and_studies(sub) -> None:
    p = sub.add_parser("main", help=COMMANDS["main"])
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly (work saved, rerun continues) so the whole job ends within this many "
                        "seconds; the report shows what ran (default: no limit)")
    _common(p)

    p = sub.add_parser("design-study", help=COMMANDS["design-study"])
    p.add_argument("--designs", default=None,
                   help="comma-separated GEOMETRIESxELECTRONS[-once] (default: benchmark.design_study."
                        "DEFAULT_DESIGNS, 1000x60,500x120,250x240; -once: no fresh noise)")
    p.add_argument("--read-dose", type=int, default=60, metavar="N",
                   help="e-/pixel every design is read at (default 60)")
    p.add_argument("--method", default="bsevox")
    p.add_argument("--config", default="tiny")
    p.add_argument("--results", type=Path, default=Path("outputs/design-study"))

    p = sub.add_parser("pack", help=COMMANDS["pack"])
    p.add_argument("results_dir", type=Path, help="results folder, e.g. outputs/paper")
    p.add_argument("--max-mib", type=float, default=60.0, help="size limit of the archive (default 60)")
    p.add_argument("--out", type=Path, default=None, help="archive path (default <results>.pack.tar.gz)")
    p.add_argument("--model", action="append", default=None,
                   help="model folder name whose best weights go in, in half precision "
                        "(repeatable; default: the smallest BSE-VoxNets model trained)")


#: every subcommand and its one-line help (the parser's and the README's source)
COMMANDS = {
    "run": "run methods on cases (cached)",
    "list": "methods (parameters, network sizes), cases, presets, threshold rules",
    "report": "rebuild the HTML report from saved results",
    "reconstruct": "reconstruct your own BSE stack file with a trained method (volume + metadata)",
    "show": "draw slices of a reconstructed volume to a PNG",
    "doctor": "check a results folder and its dataset; say what would be rebuilt",
    "main": "the main job: data, training, every method on every case, report",
    "design-study": "the quick dataset's design study: geometries x e-/pixel at a fixed simulation "
                    "budget, scored on validation data",
    "scaling-study": "the scaling study: IoU vs training-set size and model size for both networks, "
                     "power-law fits and extrapolation (python -m benchmark.scaling_study)",
    "pack": "pack a results folder (results, report, histories, a small model) into one .tar.gz of at "
            "most --max-mib",
    "data": "dataset commands (python -m datasets): build, simulate, validate, compare-nebula, bench, "
            "export-case, nebula-export, nebula-import",
    "train": "learned-method commands (python -m methods): train, grid-search, bench, list; "
             "`bse-bench train --method bsevox --config tiny --data DIR` trains",
}
#: the default of ``run --threshold-rule`` (``benchmark.specs.DEFAULT_THRESHOLD_RULE``; a test keeps them equal)
DEFAULT_THRESHOLD_RULE = "validation"


#: commands with their own command line, forwarded whole: ``python -m benchmark data ...`` =
#: ``python -m datasets ...``; ``train ...`` = ``python -m methods ...``; ``scaling-study ...`` =
#: ``python -m benchmark.scaling_study ...``
FORWARDED_COMMANDS = {"data": "datasets.__main__", "train": "methods.__main__",
                      "scaling-study": "benchmark.scaling_study"}
METHODS_SUBCOMMANDS = ("train", "grid-search", "bench", "list", "-h", "--help")


def main(argv=None, prog: str = "python -m benchmark") -> int:
    from datasets.cli_errors import run_cli, split_debug

    argv, debug = split_debug(argv)
    if argv and argv[0] in FORWARDED_COMMANDS:  # commands with their own command line
        import importlib

        forwarded = argv[1:] + (["--debug"] if debug else [])
        if argv[0] == "train" and (not forwarded or forwarded[0] not in METHODS_SUBCOMMANDS):
            forwarded = ["train", *forwarded]  # `bse-bench train --method ...` trains
        return importlib.import_module(FORWARDED_COMMANDS[argv[0]]).main(forwarded)
    args = build_parser(prog).parse_args(argv)
    return run_cli(command_functions()[args.command], args, debug)


def command_functions() -> dict:
    """Subcommand name -> the function that runs it (``data`` and ``train`` are forwarded)."""
    return {"run": cmd_run, "list": cmd_list, "report": cmd_report, "reconstruct": cmd_reconstruct,
            "show": cmd_show, "doctor": cmd_doctor, "main": cmd_main, "design-study": cmd_design_study,
            "pack": cmd_pack}


def _benchmark(args):
    from benchmark.runner import Benchmark

    return Benchmark(get_preset(args.preset), results_dir=args.results, device=args.device, seed=args.seed,
                     threads=args.threads)


# ------------------------------------------------------------------------------------------ run
def cmd_run(args) -> int:
    bench = _benchmark(args)
    specs = bench.plan(args.method, args.case, config=args.config, threshold_rule=args.threshold_rule,
                       read_doses=args.read_dose, acquisitions=args.level)
    # Training and libraries may print; keep stdout for the JSON document alone.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        rows = bench.run_all(specs)
    if args.json:
        print(json.dumps(rows_to_records(rows), indent=1))
    else:
        print_table(rows)
        print(f"\nresults: {bench.store.results_path}")
    return 0


def rows_to_records(rows) -> list[dict]:
    """Result rows as JSON-ready dicts: NaN/NA -> null, per_depth_iou and versions as lists/objects."""
    records = []
    for row in rows.to_dict(orient="records"):
        record = {key: _json_value(value) for key, value in row.items()}
        for key in ("per_depth_iou", "versions"):
            if isinstance(record.get(key), str):
                record[key] = _json_value(json.loads(record[key]))
        records.append(record)
    return records


def _json_value(value):
    import pandas as pd

    from benchmark.listing import json_value as plain_json_value

    if value is pd.NA:
        return None
    return plain_json_value(value)


def print_table(rows, per_sample: bool = True) -> None:
    """Per-sample rows (optional) and one summary line per run: mIoU, mean MRE, time."""
    import pandas as pd

    if rows.empty:
        print("no results")
        return
    with pd.option_context("display.max_rows", 500, "display.width", 200,
                           "display.float_format", "{:.4g}".format):
        if per_sample:
            print(rows[TABLE_COLUMNS].to_string(index=False))
            print()
        summary = (rows.groupby(SUMMARY_KEYS, sort=False)
                   .agg(mIoU=("iou", "mean"), MRE=("mre", "mean"), n=("sample", "nunique"),
                        seconds_per_volume=("seconds_per_volume", "first"))
                   .reset_index())
        print(summary.to_string(index=False))


# ------------------------------------------------------------------------------------------ list
def cmd_list(args) -> int:
    from benchmark.listing import format_listing, listing

    everything = listing(args.preset)
    print(json.dumps(everything, indent=1) if args.json else format_listing(everything))
    return 0


# ------------------------------------------------------------------------------------------ report
def cmd_report(args) -> int:
    from benchmark.cache import DEFAULT_OUTPUTS

    results_dir = args.results_dir or args.results or DEFAULT_OUTPUTS / get_preset(args.preset).name
    print(build_report(results_dir))
    return 0


def build_report(results_dir: Path) -> Path:
    """The HTML report of ``results_dir`` (``reports.build_report``, the layer above)."""
    results_dir = Path(results_dir)
    if not (results_dir / "results.parquet").is_file():
        raise BenchmarkError(
            f"no results in {results_dir} (results.parquet missing); run "
            "`python -m benchmark main --preset quick` or `python -m benchmark run ...` first"
        )
    from reports import build_report as build_html_report

    return Path(build_html_report(results_dir))


# ------------------------------------------------------------------------------------------ reconstruct
def cmd_reconstruct(args) -> int:
    """Reconstruct one stack (``benchmark.reconstruct``): flags and output checked before any work."""
    from benchmark.reconstruct import check_request, reconstruct_stack

    check_request(args)
    return reconstruct_stack(args, _benchmark(args))


def cmd_show(args) -> int:
    from benchmark.show import draw_volume

    print(draw_volume(args.volume, args.out, binary=args.binary, dpi=args.dpi))
    return 0


# ------------------------------------------------------------------------------------------ doctor
def cmd_doctor(args) -> int:
    """Exit 0 when everything checks out, 1 when something would be rebuilt or must be fixed."""
    from benchmark.cache import DEFAULT_OUTPUTS
    from benchmark.doctor import diagnose, report

    results_dir = args.results or DEFAULT_OUTPUTS / get_preset(args.preset).name
    if not Path(results_dir).is_dir():
        raise BenchmarkError(f"no results folder at {results_dir}")
    if args.fix:
        from benchmark.doctor import fix_results

        print(fix_results(results_dir), file=sys.stderr if args.json else sys.stdout)
    findings = diagnose(results_dir)
    print(report(findings, as_json=args.json))
    return 0 if all(f.ok for f in findings) else 1


# ------------------------------------------------------------------------------------------ main
def cmd_main(args) -> int:
    from benchmark.main_job import format_status, run_main_job
    from datasets.budget import TimeBudget

    if args.time_budget is not None and args.time_budget <= 0:
        raise UsageError(f"--time-budget must be a positive number of seconds, got {args.time_budget:g}")
    budget = TimeBudget(args.time_budget)  # counted from here: the whole command fits in it
    bench = _benchmark(args)
    bench.log(f"main job, preset '{bench.preset.name}': results in {bench.store.root}"
              + ("" if args.time_budget is None else f", time budget {args.time_budget:g} s"))
    status = run_main_job(bench, budget)
    if bench.store.results_path.is_file():
        rows = bench.store.read_results()  # refuses results counted twice
        rows = rows[rows["seed"] == bench.seed]  # the extra seeds: in the report's seed table
        if len(rows):
            print_table(rows, per_sample=False)
        report = build_report(bench.store.root)
        print(f"\nresults: {bench.store.results_path}")
        print(f"report: {report}")
    print(format_status(status))
    return 0


# ------------------------------------------------------------------------------------------ pack
def cmd_pack(args) -> int:
    from benchmark.pack import pack_results

    manifest = pack_results(args.results_dir, max_mib=args.max_mib, out=args.out, models=args.model)
    print(f"packed {manifest['archive']}: {manifest['archive_mib']:.2f} MiB of at most {args.max_mib:g}, "
          f"{len(manifest['included'])} files; left out: {len(manifest['left_out'])}"
          + (f" ({', '.join(manifest['left_out'][:5])}{' ...' if len(manifest['left_out']) > 5 else ''})"
             if manifest["left_out"] else ""))
    print(f"dataset: {manifest['dataset']['note']}")
    return 0


def cmd_design_study(args) -> int:
    from benchmark.design_study import DEFAULT_DESIGNS, markdown, run_design_study

    designs = DEFAULT_DESIGNS if args.designs is None else [d.strip() for d in args.designs.split(",") if d.strip()]
    table = run_design_study(args.results, list(designs),
                             read_electrons_per_pixel=args.read_dose, method=args.method, config=args.config)
    print(markdown(table))
    return 0


def main_entry() -> None:
    """The ``bse-bench`` console script (``[project.scripts]``): ``python -m benchmark``."""
    sys.exit(main(prog="bse-bench"))
