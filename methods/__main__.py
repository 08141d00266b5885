"""Command line of the learned methods: ``python -m methods {train,grid-search,bench,train-bench,list}``.

    python -m methods train --method bsevox --config lite --data outputs/quick/data --preset quick
    python -m methods train ... --resume            # continue from <out>/latest.pt exactly
    python -m methods grid-search --method bsevox --config tiny --data DIR --max-trials 20
    python -m methods bench --device cpu [--json]   # inference volumes/s of every config
    python -m methods train-bench --threads 1       # training samples/s of step variants, side by side
    python -m methods list [--json]                 # parameters and MACs of every config
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from datasets.errors import look_up


def learned_methods() -> list[str]:
    """Registered methods that train and declare network configs (from the registry)."""
    from methods.base import available, get

    return [name for name in available() if get(name).requires_training and get(name).configs()]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="a learned method of the registry (bsevox, unet3d, ...)")
    p.add_argument("--config", required=True, help="network config of the method (`python -m methods list`)")
    p.add_argument("--data", required=True, help="dataset directory (`python -m benchmark data build`)")
    p.add_argument("--train-preset", "--preset", dest="preset", default="quick",
                   help="training preset: smoke | quick | standard | paper | paper-gpu (also --preset)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sope", action="store_true", help="bsevox ablation: plain patch embedding")
    p.add_argument("--no-s2mlp", action="store_true", help="bsevox ablation: channel-MLP blocks")
    p.add_argument("--no-convffn", action="store_true", help="bsevox ablation: plain FFN")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy CPU)")


def _set_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _method_params(args) -> dict:
    from datasets.cli_errors import UsageError, check_positive, check_torch_device

    check_torch_device(args.device)
    check_positive("--epochs", args.epochs)
    check_positive("--batch-size", args.batch_size)
    if not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such dataset directory (build one with "
                         "`python -m datasets build --preset quick --out DIR`)")
    from methods.base import get
    from methods.training import TRAIN_PRESETS

    look_up("learned method", args.method, dict.fromkeys(learned_methods()))
    klass = get(args.method)
    look_up(f"{args.method} config", args.config, dict.fromkeys(klass.configs()))
    look_up("training preset", args.preset, TRAIN_PRESETS)
    params = {"config": args.config, "preset": args.preset, "seed": args.seed}
    switches = {"sope": args.no_sope, "s2mlp": args.no_s2mlp, "convffn": args.no_convffn}
    for key, off in switches.items():
        if off:
            if key not in klass.hyperparams:
                raise UsageError(f"--no-{key} is an ablation switch {args.method} does not declare")
            params[key] = False
    for key in ("epochs", "batch_size", "lr", "weight_decay", "lam"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    return params


def _variant_suffix(method) -> str:
    """'' for a full network, '-no-sope' etc. for a BSE-VoxNets ablation."""
    variant = method.variant() if hasattr(method, "variant") else "full"
    return "" if variant == "full" else f"-{variant}"


def cmd_train(args) -> int:
    from datasets.cli_errors import UsageError
    from datasets.storage import open_dataset
    from methods.base import create

    _set_threads(args)
    params = _method_params(args)
    dataset = open_dataset(args.data)
    method = create(args.method, device=args.device, **params)
    out = Path(args.out) if args.out else (
        Path(args.data).resolve().parent / "models" / f"{args.method}-{args.config}{_variant_suffix(method)}")
    if (out / "latest.pt").exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{out} already holds a training run: pass --resume to continue it, "
                         "--overwrite to start again, or choose another --out")
    print(f"training {args.method} ({args.config}) on {args.data} -> {out}", file=sys.stderr)
    summary = method.fit(dataset, out_dir=out, progress=not args.quiet, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_grid_search(args) -> int:
    from datasets.cli_errors import UsageError
    from datasets.storage import open_dataset
    from methods.grid_search import GRIDS, grid_search
    from methods.training import TRAIN_PRESETS

    _set_threads(args)
    params = _method_params(args)
    dataset = open_dataset(args.data)
    settings = TRAIN_PRESETS[args.preset]
    overrides = {k: params[k] for k in ("epochs", "batch_size") if k in params}
    settings = replace(settings, seed=args.seed, **overrides)
    extra = {k: params[k] for k in ("sope", "s2mlp", "convffn") if k in params}
    out = Path(args.out) if args.out else (
        Path(args.data).resolve().parent / "grid-search" / f"{args.method}-{args.config}")
    grid = dict(GRIDS[args.grid])
    if args.lams:
        try:
            grid["lam"] = [float(v) for v in args.lams.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--lams {args.lams!r}: give comma-separated numbers, e.g. 0.25,0.5,0.75") from None
        if not grid["lam"] or not all(0.0 < lam < 1.0 for lam in grid["lam"]):
            raise UsageError(f"--lams {args.lams!r}: every lambda must lie in (0, 1)")
    for key in ("lr", "weight_decay"):  # a value given on the command line pins that axis
        if key in params:
            grid[key] = [params[key]]
    table = grid_search(args.method, args.config, dataset, grid=grid, settings=settings,
                        out_dir=out, max_trials=args.max_trials, seed=args.seed,
                        progress=not args.quiet, device=args.device, method_params=extra)
    print(table.sort_values("best_val_miou", ascending=False).head(10).to_string(index=False))
    print(f"results: {out / 'grid_results.csv'}; selection: {out / 'best.json'}")
    return 0


def benchmark_inference(device: str = "cpu", batch_size: int = 16, repeats: int = 3,
                        configs=None, seed: int = 0) -> list[dict]:
    """Inference throughput (volumes/s) of every network config with random weights.

    Big configs are skipped when their weights plus activations would not fit the device's
    free memory (CUDA) or when they are over 50M parameters on the CPU.
    """
    import torch

    from methods.base import create, get
    from methods.complexity import network_size

    wanted = configs or [(name, c) for name in learned_methods() for c in get(name).configs()]
    rows = []
    for method_name, config in wanted:
        size = network_size(method_name, config)
        row = {**size, "device": device, "batch_size": batch_size}
        if device == "cpu" and size["parameters"] > 50e6:
            rows.append({**row, "volumes_per_s": None, "skipped": "over 50M parameters on CPU"})
            continue
        if device.startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            if size["parameters"] * 4 * 3 > free:
                rows.append({**row, "volumes_per_s": None, "skipped": "not enough GPU memory"})
                continue
        method = create(method_name, config=config)
        net = method.init_network(20, seed=seed).to(device).eval()
        x = torch.rand(batch_size, 20, 20, 20, generator=torch.Generator().manual_seed(seed)).to(device)
        autocast = torch.autocast(torch.device(device).type, dtype=torch.float16,
                                  enabled=device.startswith("cuda"))
        with torch.no_grad(), autocast:
            net(x)  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            tic = time.perf_counter()
            for _ in range(repeats):
                net(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        seconds = time.perf_counter() - tic
        rows.append({**row, "volumes_per_s": repeats * batch_size / seconds, "skipped": None})
        del net
    return rows


def cmd_bench(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = None
    if args.configs:
        configs = [tuple(item.split(":", 1)) for item in args.configs.split(",")]
    rows = benchmark_inference(args.device, args.batch_size, args.repeats, configs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"inference on {args.device} (torch threads {torch.get_num_threads()}, batch {args.batch_size})")
    for r in rows:
        speed = f"{r['volumes_per_s']:10.1f} volumes/s" if r["volumes_per_s"] else f"skipped ({r['skipped']})"
        print(f"{r['method']:7s} {r['config']:9s} {r['parameters'] / 1e6:8.2f}M "
              f"{r['macs'] / 1e9:6.3f} GMACs  {speed}")
    return 0


def cmd_train_bench(args) -> int:
    import torch

    from methods.train_bench import DEFAULT_CONFIGS, VARIANTS, format_rows, train_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [tuple(item.split(":", 1)) for item in args.configs.split(",")] if args.configs else DEFAULT_CONFIGS
    variants = args.variants.split(",") if args.variants else VARIANTS
    rows = train_bench(configs, variants, args.batch_size, args.steps, args.rounds,
                       progress=(lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr)))
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0


def cmd_list(args) -> int:
    from methods.complexity import list_network_configs

    rows = list_network_configs()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['method']:7s} {r['config']:9s} {r['parameters'] / 1e6:8.2f}M params "
                  f"{r['macs'] / 1e9:7.3f} GMACs/sample")
    return 0


def main(argv=None) -> int:
    from datasets.cli_errors import run_cli, split_debug

    argv, debug = split_debug(argv)
    parser = argparse.ArgumentParser(prog="python -m methods", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="--debug anywhere on the line shows tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network (resumable)")
    _add_common(p)
    p.add_argument("--out", help="model directory (default: <data>/../models/<method>-<config>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/latest.pt")
    p.add_argument("--overwrite", action="store_true", help="start again in an existing <out>")
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--lam", type=float, help="WBCE lambda (eq. 1, weight of the Cu term)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("grid-search", help="lr x weight decay x lambda search on the validation split")
    _add_common(p)
    p.add_argument("--out", help="results directory (default: <data>/../grid-search/<method>-<config>)")
    p.add_argument("--max-trials", type=int, help="a random subset of the grid's points")
    p.add_argument("--grid", choices=("two-sided", "paper"), default="two-sided",
                   help="two-sided: lambda in {1/n} and {1 - 1/n} (486 points, default); paper: the "
                        "paper's {1/n} (252 points)")
    p.add_argument("--lams", help="comma-separated lambdas replacing the grid's (e.g. 0.25,0.5,0.75)")
    p.add_argument("--lr", type=float, help="pin the learning rate (default: the grid's)")
    p.add_argument("--weight-decay", type=float, help="pin the weight decay (default: the grid's)")
    p.set_defaults(func=cmd_grid_search)

    p = sub.add_parser("bench", help="inference throughput of every network config")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--configs", help="comma list of method:config (default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train-bench", help="training samples/s of the networks under step variants, "
                       "side by side (eager, batch x2, channels-last, compile, bf16)")
    p.add_argument("--configs", help="comma list of method:config (default: bsevox:tiny,unet3d:matched)")
    p.add_argument("--variants", help="comma list (default: all; bf16 only on CPUs with bf16 instructions)")
    p.add_argument("--batch-size", type=int, default=32, help="the eager batch (quick preset: 32)")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per timing")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train_bench)

    p = sub.add_parser("list", help="parameters and MACs of every network config")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    args = parser.parse_args(argv)
    return run_cli(args.func, args, debug)


if __name__ == "__main__":
    sys.exit(main())
