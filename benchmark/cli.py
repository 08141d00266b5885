"""``python -m benchmark`` (or ``bse-bench``): run, list, report, reconstruct, doctor, main, pack,
and the lower layers' commands ``data ...`` (``python -m datasets``) and ``train ...`` (``python -m
methods``).

The same flag means the same thing everywhere: ``--results`` a results folder, ``--data`` a
dataset folder, ``--preset`` a benchmark preset, ``--data-preset`` a dataset preset,
``--train-preset`` a training preset.

Messages and progress bars go to stderr; stdout carries the results (a table, or with
``--json`` exactly one JSON document). Exit codes (``datasets.cli_errors``): bad names and
values 2, with a message listing the known ones; other errors 1, in one line (``--debug`` shows
the traceback); an interrupted command exits with 130 and keeps every finished run (rerun it to
resume).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.cache import DEFAULT_OUTPUTS
from benchmark.cases import CASE_DESCRIPTIONS, CUSTOM_CASE_PATTERN, NEBULA_CASE
from benchmark.design_study import DEFAULT_DESIGNS
from benchmark.errors import BenchmarkError, UsageError
from benchmark.presets import BENCHMARK_PRESETS, get_preset
from benchmark.runner import (
    DEFAULT_THRESHOLD_RULE,
    THRESHOLD_RULES,
    Benchmark,
    ModelSpec,
    method_class,
    method_names,
    network_configs,
)
from methods.binarize import binarize

#: columns shown by ``run`` and ``main`` in the text table
TABLE_COLUMNS = ["method", "config", "variant", "case", "sample", "iou", "mre", "threshold",
                 "threshold_rule", "seconds_per_volume"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, preset_default="quick"):
        p.add_argument("--preset", default=preset_default,
                       help=f"benchmark preset: {', '.join(BENCHMARK_PRESETS)} (default {preset_default})")
        p.add_argument("--results", type=Path, default=None,
                       help="results folder (default outputs/<preset>/)")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
        p.add_argument("--seed", type=int, default=None, help="seed (default: the preset's)")
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice; 1 is best on a busy machine)")

    p = sub.add_parser("run", help="run methods on cases (cached)")
    p.add_argument("--method", action="append", required=True,
                   help="method name or 'all' (repeatable)")
    p.add_argument("--case", action="append", required=True,
                   help="nanocube, nanowire, test, ablation, a geometry file path, or 'all' (repeatable)")
    p.add_argument("--config", default=None, help="network config (default: the preset's configs)")
    p.add_argument("--threshold-rule", default=DEFAULT_THRESHOLD_RULE,
                   help=f"{', '.join(THRESHOLD_RULES)} (default {DEFAULT_THRESHOLD_RULE})")
    p.add_argument("--json", action="store_true", help="print the result rows as one JSON list")
    common(p)

    p = sub.add_parser("list", help="methods (parameters, network sizes), cases, presets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--preset", default="quick", help="preset whose stored cases are listed")

    p = sub.add_parser("report", help="rebuild the HTML report from saved results")
    p.add_argument("results_dir", nargs="?", type=Path, default=None,
                   help="results folder (default outputs/<preset>/; or --results)")
    p.add_argument("--results", type=Path, default=None, help="results folder (the same as the positional one)")
    p.add_argument("--preset", default="quick")

    p = sub.add_parser("reconstruct", help="reconstruct your own BSE stack file with a trained method")
    p.add_argument("--method", required=True)
    p.add_argument("--config", default=None, help="network config (default: the preset's first)")
    p.add_argument("--stack", type=Path, required=True, help="BSE stack .npz (datasets.stack.BseStack)")
    p.add_argument("--out", type=Path, required=True,
                   help="output VOLUME.npy (probabilities); VOLUME_binary.npy gets the Cu mask")
    p.add_argument("--threshold-rule", default="saved",
                   help="saved (the validation threshold saved with the model, else 0.5; default), "
                        "validation (choose it now on the validation split: builds the data if missing) "
                        "or fixed-0.5")
    p.add_argument("--electrons-per-pixel", type=int, default=None,
                   help="the stack's bse holds raw counts of this many primaries per pixel (divided here)")
    common(p)

    p = sub.add_parser("doctor", help="check a results folder and its dataset; say what would be rebuilt")
    p.add_argument("--results", type=Path, default=None, help="results folder (default outputs/<preset>/)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON list")
    p.add_argument("--fix", action="store_true",
                   help="first rebuild results.parquet from the run folders (the newest run of each result "
                        "counted; removes results counted twice)")

    p = sub.add_parser("main", help="the main job: data, training, every method on every case, report")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly (work saved, rerun continues) so the whole job ends within this many "
                        "seconds; the report shows what ran (default: no limit)")
    common(p)

    p = sub.add_parser("design-study", help="the quick dataset's design study: geometries x e-/pixel at a "
                                            "fixed simulation budget, scored on validation data (README table)")
    p.add_argument("--designs", default=",".join(DEFAULT_DESIGNS),
                   help="comma-separated GEOMETRIESxELECTRONS[-once] (default %(default)s; -once: no fresh noise)")
    p.add_argument("--dose", type=int, default=60, help="e-/pixel every design is read at (default 60)")
    p.add_argument("--method", default="bsevox")
    p.add_argument("--config", default="tiny")
    p.add_argument("--results", type=Path, default=Path("outputs/design-study"))

    sub.add_parser("data", add_help=False, help="dataset commands: build, simulate, validate, compare-nebula, "
                   "bench, export-case, nebula-export/import (python -m datasets)")
    sub.add_parser("train", add_help=False, help="learned-method commands: train, grid-search, bench, list "
                   "(python -m methods); e.g. `train train --method bsevox --config tiny --data DIR`")

    p = sub.add_parser("pack", help="pack a results folder (results, report, histories, a small model) "
                                    "into one .tar.gz of at most --max-mib")
    p.add_argument("results_dir", type=Path, help="results folder, e.g. outputs/paper")
    p.add_argument("--max-mib", type=float, default=60.0, help="size limit of the archive (default 60)")
    p.add_argument("--out", type=Path, default=None, help="archive path (default <results>.pack.tar.gz)")
    p.add_argument("--model", action="append", default=None,
                   help="model folder name whose best weights go in, in half precision "
                        "(repeatable; default: the smallest BSE-VoxNets model trained)")
    return parser


#: ``python -m benchmark data ...`` = ``python -m datasets ...``; ``train ...`` = ``python -m methods ...``
LOWER_LAYER_COMMANDS = {"data": "datasets.__main__", "train": "methods.__main__"}
METHODS_SUBCOMMANDS = ("train", "grid-search", "bench", "list", "-h", "--help")


def main(argv=None) -> int:
    from datasets.cli_errors import run_cli, split_debug

    argv, debug = split_debug(argv)
    if argv and argv[0] in LOWER_LAYER_COMMANDS:  # the lower layers' own command lines
        import importlib

        forwarded = argv[1:] + (["--debug"] if debug else [])
        if argv[0] == "train" and (not forwarded or forwarded[0] not in METHODS_SUBCOMMANDS):
            forwarded = ["train", *forwarded]  # `bse-bench train --method ...` trains
        return importlib.import_module(LOWER_LAYER_COMMANDS[argv[0]]).main(forwarded)
    args = build_parser().parse_args(argv)
    commands = {"run": cmd_run, "list": cmd_list, "report": cmd_report,
                "reconstruct": cmd_reconstruct, "main": cmd_main, "doctor": cmd_doctor, "pack": cmd_pack,
                "design-study": cmd_design_study}
    return run_cli(commands[args.command], args, debug)


def _benchmark(args) -> Benchmark:
    return Benchmark(get_preset(args.preset), results_dir=args.results, device=args.device, seed=args.seed,
                     threads=args.threads)


# ------------------------------------------------------------------------------------------ run
def cmd_run(args) -> int:
    bench = _benchmark(args)
    specs = bench.plan(args.method, args.case, config=args.config, threshold_rule=args.threshold_rule)
    # Training and libraries may print; keep stdout for the JSON document alone.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        rows = bench.run_all(specs)
    if args.json:
        print(json.dumps(rows_to_records(rows), indent=1))
    else:
        print_table(rows)
        print(f"\nresults: {bench.store.results_path}")
    return 0


def rows_to_records(rows: pd.DataFrame) -> list[dict]:
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
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_table(rows: pd.DataFrame, per_sample: bool = True) -> None:
    """Per-sample rows (optional) and one summary line per run: mIoU, mean MRE, time."""
    if rows.empty:
        print("no results")
        return
    with pd.option_context("display.max_rows", 500, "display.width", 200,
                           "display.float_format", "{:.4g}".format):
        if per_sample:
            print(rows[TABLE_COLUMNS].to_string(index=False))
            print()
        summary = (rows.groupby(["method", "config", "variant", "case", "threshold_rule"], sort=False)
                   .agg(mIoU=("iou", "mean"), MRE=("mre", "mean"), n=("sample", "nunique"),
                        seconds_per_volume=("seconds_per_volume", "first"))
                   .reset_index())
        print(summary.to_string(index=False))


# ------------------------------------------------------------------------------------------ list
def cmd_list(args) -> int:
    from methods.complexity import list_network_configs

    preset = get_preset(args.preset)
    methods = []
    for name in method_names():
        klass = method_class(name)
        methods.append({
            "method": name,
            "requires_training": bool(klass.requires_training),
            "configs": network_configs(name),
            "parameters": {p: {"default": _json_value(hp.default), "retrain": hp.retrain, "doc": hp.doc}
                           for p, hp in klass.hyperparams.items()},
        })
    listing = {
        "methods": methods,
        "network_configs": [{k: _json_value(v) for k, v in row.items()} for row in list_network_configs()],
        "cases": [{"case": name, "description": text} for name, text in _case_descriptions(preset).items()],
        "presets": [p.describe() for p in BENCHMARK_PRESETS.values()],
        "threshold_rules": list(THRESHOLD_RULES),
    }
    if args.json:
        print(json.dumps(listing, indent=1))
        return 0
    print("methods:")
    for m in methods:
        kind = "learned" if m["requires_training"] else "classical"
        print(f"  {m['method']} ({kind})")
        for p, info in m["parameters"].items():
            retrain = ", needs retraining" if info["retrain"] else ""
            print(f"      {p} = {info['default']!r}{retrain}  {info['doc']}")
    print("network configs:")
    print(f"  {'method':8} {'config':9} {'parameters':>12} {'GMACs/sample':>13}")
    for row in listing["network_configs"]:
        print(f"  {row['method']:8} {row['config']:9} {row['parameters']:>12,} {row['macs'] / 1e9:>13.3f}")
    print("cases:")
    for case in listing["cases"]:
        print(f"  {case['case']:18} {case['description']}")
    print("presets:")
    for p in BENCHMARK_PRESETS.values():
        print(f"  {p.name:6} {p.description}")
    print(f"threshold rules: {', '.join(THRESHOLD_RULES)}")
    return 0


def _case_descriptions(preset) -> dict[str, str]:
    from datasets.presets import get_preset as get_dataset_preset

    stored = get_dataset_preset(preset.dataset_preset).cases
    names = [*stored, "test", "ablation", NEBULA_CASE, CUSTOM_CASE_PATTERN]
    return {name: CASE_DESCRIPTIONS.get(name, "named case stored with the dataset") for name in names}


# ------------------------------------------------------------------------------------------ report
def cmd_report(args) -> int:
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
    """Reconstruct one stack: no data are built and nothing is trained unless asked."""
    from datasets.stack import BseStack, check_yields

    if args.threshold_rule not in ("saved", "validation", "fixed-0.5"):
        raise UsageError(f"threshold rule for a stack must be 'saved', 'validation' or 'fixed-0.5', got "
                         f"'{args.threshold_rule}' (oracle thresholds exist only for the paper's cases)")
    out = args.out if args.out.suffix == ".npy" else args.out.with_name(args.out.name + ".npy")
    for target in (out, binary_path(out)):  # fail before the work, not after it
        if target.is_dir():
            raise UsageError(f"--out {target} is a directory; give a file name such as {target / 'volume.npy'}")
    try:
        stack = BseStack.load(args.stack)
    except (FileNotFoundError, ValueError) as err:
        raise BenchmarkError(str(err)) from err
    bse = stack.bse
    if args.electrons_per_pixel is not None:
        if args.electrons_per_pixel < 1:
            raise UsageError(f"--electrons-per-pixel must be a positive integer, got {args.electrons_per_pixel}")
        bse = bse / float(args.electrons_per_pixel)
    try:
        check_yields(bse, str(args.stack))
    except ValueError as err:
        raise BenchmarkError(str(err)) from err
    bench = _benchmark(args)
    klass = method_class(args.method)
    configs = network_configs(args.method)
    if configs:
        config = args.config or bench.preset.configs_for(args.method)[0]
        if config not in configs:
            raise UsageError(f"unknown config '{config}' for {args.method}; known configs: {', '.join(configs)}")
    else:
        config = "default"
    spec = ModelSpec(args.method, config)
    if klass.requires_training and not bench.is_trained(spec):
        raise BenchmarkError(
            f"{spec.tag()} is not trained in {bench.model_dir(spec)}; train it first with "
            f"`python -m benchmark run --method {args.method} --case test --preset {bench.preset.name}`")
    method = bench.model(spec)
    check_energies(stack.energies_keV, method.energies_keV, spec.tag())
    _check_lateral_size(method, spec, bse.shape[1:])
    threshold, why = _stack_threshold(bench, spec, args.threshold_rule, stack.energies_keV)
    try:
        prob = method.reconstruct(bse[None], stack.energies_keV)[0]
    except ValueError as err:
        raise BenchmarkError(str(err)) from err
    binary = binarize(prob, threshold)
    binary_out = binary_path(out)
    save_npy_atomic(out, prob.astype(np.float32))
    save_npy_atomic(binary_out, binary)
    print(f"{spec.tag()}: probability volume {prob.shape} [z, y, x] -> {out}")
    print(f"Cu mask (threshold {threshold:.2f}: {why}; {int(binary.sum())} Cu voxels) -> {binary_out}")
    return 0


def _check_lateral_size(method, spec: ModelSpec, shape) -> None:
    """Refuse a lateral size a learned method was not trained on; say when a classical method
    reconstructs a size other than the paper scene's (on purpose: its operator works on any size)."""
    from datasets.scene import PAPER_SHAPE_ZYX

    shape = tuple(int(n) for n in shape)
    scene = tuple(PAPER_SHAPE_ZYX[1:])
    trained = method.image_shape or (scene if method.requires_training else None)
    if trained is not None and shape != tuple(trained):
        raise BenchmarkError(f"{spec.tag()} was trained on {trained[0]} x {trained[1]} images; the stack is "
                             f"{shape[0]} x {shape[1]}: simulate or crop it to the trained size")
    if trained is None and shape != scene:
        print(f"note: {spec.tag()} reconstructs the {shape[0]} x {shape[1]} stack as given (its operator works "
              f"on any lateral size; its PSFs come from the {scene[0]} x {scene[1]} nm paper scene)", file=sys.stderr)


def _stack_threshold(bench: Benchmark, spec: ModelSpec, rule: str, energies_keV) -> tuple[float, str]:
    """The threshold for one stack and the reason it was chosen."""
    if rule == "fixed-0.5":
        return 0.5, "fixed-0.5, as asked"
    if rule == "validation":
        return bench.validation_threshold(spec), "chosen now on the validation split"
    saved = bench.saved_threshold(spec)
    if saved is None:
        return 0.5, (f"default 0.5: no validation threshold saved for {spec.tag()} in {bench.store.root}; "
                     "--threshold-rule validation chooses one")
    threshold, info = saved
    trained = info.get("energies_keV")
    if trained is not None and [round(float(e), 6) for e in trained] != [round(float(e), 6) for e in energies_keV]:
        return 0.5, (f"default 0.5: the saved threshold {threshold:.2f} was chosen on stacks of other energies "
                     f"({trained[0]:g}-{trained[-1]:g} keV, {len(trained)} energies)")
    return threshold, f"saved validation threshold ({info.get('n_val', '?')} validation samples)"


def binary_path(volume_path: Path) -> Path:
    """``VOLUME.npy`` -> ``VOLUME_binary.npy``."""
    return volume_path.with_name(f"{volume_path.stem}_binary.npy")


def check_energies(given_keV, trained_keV, name: str) -> None:
    """Raise naming the energies that differ between a stack and the trained method."""
    if trained_keV is None:
        return
    given = [round(float(e), 6) for e in given_keV]
    trained = [round(float(e), 6) for e in trained_keV]
    if given == trained:
        return
    missing = [e for e in trained if e not in given]
    extra = [e for e in given if e not in trained]
    parts = []
    if missing:
        parts.append(f"missing from the stack: {missing} keV")
    if extra:
        parts.append(f"not trained on: {extra} keV")
    if not parts:
        parts.append(f"same energies in another order: stack {given}, trained {trained}")
    raise BenchmarkError(f"the stack's energies differ from those {name} was trained on ({'; '.join(parts)})")


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a temporary file that is removed on any failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ doctor
def cmd_doctor(args) -> int:
    """Exit 0 when everything checks out, 1 when something would be rebuilt or must be fixed."""
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
    from benchmark.design_study import markdown, run_design_study

    table = run_design_study(args.results, [d.strip() for d in args.designs.split(",") if d.strip()],
                             dose=args.dose, method=args.method, config=args.config)
    print(markdown(table))
    return 0


def main_entry() -> None:
    """The ``bse-bench`` console script (``[project.scripts]``): ``python -m benchmark``."""
    sys.exit(main())
