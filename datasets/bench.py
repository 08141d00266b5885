"""Simulator speed benchmark: ``python -m datasets bench [--device cpu|cuda] [--workers N] [--json]``.

Simulates full 20-energy stacks of the paper scene (random Cu-in-Si geometries) and reports
primary electrons per second (all primaries divided by the wall time) and elastic scattering
events per second, after a small warm-up run. On CPU one single-threaded process per core
simulates at once (torch's intra-op threads gain little on these element-wise kernels and
collapse when another process shares the cores); on CUDA one process runs a batch of geometries.
"""

from __future__ import annotations

import json
import multiprocessing
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
    return f"{cpu} ({os.cpu_count()} cores)"


def _simulate_for_bench(geoms, electrons_per_pixel, seed, device, physics, threads, compile=False):
    from datasets.simulate import simulate_stacks

    if threads:
        torch.set_num_threads(threads)
    simulate_stacks(geoms[:1], electrons_per_pixel=1, seed=seed, device=device, physics=physics, compile=compile)  # warm-up
    stats = TransportStats()
    t0 = time.perf_counter()
    simulate_stacks(geoms, electrons_per_pixel=electrons_per_pixel, seed=seed, device=device, physics=physics, stats=stats,
                    compile=compile)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return stats, time.perf_counter() - t0


def run_bench(device="cpu", electrons_per_pixel: int = 100, geometries: int = 1, physics: PhysicsConfig | None = None,
              seed: int = 0, workers: int = 1, compile: bool = True) -> dict:
    """Throughput of full 20-energy stacks of the paper scene.

    On CPU with ``workers > 1`` each of ``workers`` single-threaded processes simulates its own
    ``geometries`` geometries at the same time (how the dataset builder uses a CPU); the rate is
    all their primaries divided by the wall time of the slowest. ``compile``: the transport fused
    by ``torch.compile`` (what large runs use by default), compiled during the warm-up.
    """
    from datasets.simulate import resolve_device

    device = resolve_device(device)
    physics = physics or PhysicsConfig()
    if device.type == "cpu" and workers > 1:
        context = multiprocessing.get_context("spawn")
        jobs = [(bench_geometries(geometries, seed + 1000 * w), electrons_per_pixel, seed + w, "cpu", physics, 1, compile)
                for w in range(workers)]
        with context.Pool(workers) as pool:
            t0 = time.perf_counter()
            results = pool.starmap(_simulate_for_bench, jobs)
            wall = time.perf_counter() - t0
        seconds = max(max(r[1] for r in results), 1e-9)
        seconds = min(seconds, wall)
        primaries = sum(r[0].primaries for r in results)
        events = sum(r[0].elastic_events for r in results)
        flights = sum(r[0].flights for r in results)
        threads_desc = f"{workers} processes x 1 thread"
    else:
        stats, seconds = _simulate_for_bench(bench_geometries(geometries, seed), electrons_per_pixel, seed, device, physics, None, compile)
        primaries, events, flights = stats.primaries, stats.elastic_events, stats.flights
        threads_desc = "1 process x 1 thread" if device.type == "cpu" else "GPU"
    return {
        "device": str(device),
        "device_name": device_name(device),
        "parallelism": threads_desc,
        "geometries": geometries * (workers if device.type == "cpu" else 1),
        "energies": 20,
        "electrons_per_pixel": electrons_per_pixel,
        "primaries": primaries,
        "seconds": seconds,
        "electrons_per_s": primaries / seconds,
        "events_per_s": events / seconds,
        "flights_per_electron": flights / primaries,
        "events_per_electron": events / primaries,
        "physics": physics.describe()["elastic"],
        "compiled": bool(compile),
        "torch": torch.__version__,
    }


def _cmd_bench(args) -> int:
    devices = [args.device] if args.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = []
    for device in devices:
        epp = args.electrons_per_pixel or (1000 if device == "cuda" else 100)
        geoms = args.geometries or (64 if device == "cuda" else 1)
        workers = args.workers or (os.cpu_count() or 1 if device == "cpu" else 1)
        results.append(run_bench(device, epp, geoms, PhysicsConfig(elastic=args.elastic, stopping=args.stopping), args.seed,
                                 workers=workers, compile=not args.no_compile))
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0]))
    else:
        for r in results:
            print(f"{r['device_name']} [{r['device']}, {r['parallelism']}, {'compiled' if r['compiled'] else 'eager'}]: {r['electrons_per_s']:.3g} primaries/s, "
                  f"{r['events_per_s']:.3g} elastic events/s  ({r['primaries']} primaries = {r['geometries']} geometries x "
                  f"{r['energies']} energies x 400 pixels x {r['electrons_per_pixel']} e-, {r['seconds']:.1f} s; "
                  f"{r['events_per_electron']:.1f} events and {r['flights_per_electron']:.1f} flights per primary)")
    return 0


def register_cli(subparsers) -> None:
    from datasets.simulate import add_physics_arguments

    parser = subparsers.add_parser("bench", help="simulator speed: primaries/s and events/s")
    parser.add_argument("--electrons-per-pixel", type=int, default=None, help="default 100 on CPU, 1000 on CUDA")
    parser.add_argument("--geometries", type=int, default=None, help="geometries per batch (default 1 CPU, 64 CUDA)")
    parser.add_argument("--workers", type=int, default=None,
                        help="CPU: single-threaded simulation processes (default: one per core)")
    parser.add_argument("--no-compile", action="store_true", help="eager torch instead of torch.compile")
    parser.add_argument("--json", action="store_true")
    add_physics_arguments(parser)
    parser.set_defaults(func=_cmd_bench, device=None)
