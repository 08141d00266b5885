"""Simulator speed benchmark: ``python -m datasets bench [--device cpu|cuda] [--json]``.

Simulates a full 20-energy stack of the paper scene (a random Cu-in-Si geometry) and reports
primary electrons per second (all primaries of the stack divided by its wall time) and elastic
scattering events per second, after one small warm-up run.
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
import torch

from datasets.physics import PhysicsConfig
from datasets.scene import paper_block
from datasets.transport import TransportStats


def bench_geometries(n: int, seed: int = 0) -> np.ndarray:
    """Paper-scene geometries with random Cu boxes (the geometry generator when available)."""
    try:
        from datasets.geometry import random_geometry

        return np.stack([random_geometry(seed + i)[0] for i in range(n)])
    except ImportError:  # pragma: no cover - geometry module ships with the suite
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            mask = np.zeros((20, 20, 20), bool)
            lo = rng.integers(0, 15, 3)
            hi = lo + rng.integers(3, 8, 3)
            mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
            out.append(paper_block(mask))
        return np.stack(out)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"


def run_bench(device="cpu", electrons_per_pixel: int = 100, geometries: int = 1, physics: PhysicsConfig | None = None,
              seed: int = 0) -> dict:
    from datasets.simulate import resolve_device, simulate_stacks

    device = resolve_device(device)
    geoms = bench_geometries(geometries, seed)
    simulate_stacks(geoms[:1], electrons_per_pixel=1, seed=seed, device=device, physics=physics)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    stats = TransportStats()
    t0 = time.perf_counter()
    stacks = simulate_stacks(geoms, electrons_per_pixel=electrons_per_pixel, seed=seed, device=device,
                             physics=physics, stats=stats)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "device": str(device),
        "device_name": device_name(device),
        "geometries": geometries,
        "energies": int(stacks[0].energies_keV.size),
        "electrons_per_pixel": electrons_per_pixel,
        "primaries": stats.primaries,
        "seconds": seconds,
        "electrons_per_s": stats.primaries / seconds,
        "events_per_s": stats.elastic_events / seconds,
        "flights_per_electron": stats.flights / stats.primaries,
        "events_per_electron": stats.elastic_events / stats.primaries,
        "physics": (physics or PhysicsConfig()).describe()["elastic"],
        "torch": torch.__version__,
    }


def _cmd_bench(args) -> int:
    devices = [args.device] if args.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = []
    for device in devices:
        epp = args.electrons_per_pixel or (1000 if device == "cuda" else 100)
        geoms = args.geometries or (64 if device == "cuda" else 1)
        results.append(run_bench(device, epp, geoms, PhysicsConfig(elastic=args.elastic, stopping=args.stopping), args.seed))
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0]))
    else:
        for r in results:
            print(f"{r['device_name']} [{r['device']}]: {r['electrons_per_s']:.3g} primaries/s, "
                  f"{r['events_per_s']:.3g} elastic events/s  ({r['primaries']} primaries = {r['geometries']} geometries x "
                  f"{r['energies']} energies x 400 pixels x {r['electrons_per_pixel']} e-, {r['seconds']:.1f} s; "
                  f"{r['events_per_electron']:.1f} events and {r['flights_per_electron']:.1f} flights per primary)")
    return 0


def register_cli(subparsers) -> None:
    from datasets.simulate import add_physics_arguments

    parser = subparsers.add_parser("bench", help="simulator speed: primaries/s and events/s")
    parser.add_argument("--electrons-per-pixel", type=int, default=None, help="default 100 on CPU, 1000 on CUDA")
    parser.add_argument("--geometries", type=int, default=None, help="geometries per batch (default 1 CPU, 64 CUDA)")
    parser.add_argument("--json", action="store_true")
    add_physics_arguments(parser)
    parser.set_defaults(func=_cmd_bench, device=None)
