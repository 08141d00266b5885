"""Simulator speed benchmark: ``python -m datasets bench [--device cpu|cuda] [--json] [--against PRESET]``.

Simulates full 20-energy stacks of the paper scene (random Cu-in-Si geometries of the training
generator) with the fused kernel, with the chosen physics and, on the same geometries in the same
run, with the CSDA physics of the same elastic model (the cost of the inelastic physics) and
optionally with a second preset (``--against``). Reported per run: primary electrons per second
(all primaries over the wall time), free flights and elastic events per primary, nanoseconds of
one thread per flight and per elastic event, and the peak resident memory (CPU) or the arrays
held on the GPU. The kernel runs in this process with all Numba threads (``--threads``).
``--acquisition`` times the acquisition models instead of the CSDA twin (same geometries, same
run): the plane detector (default), the annular diode, the low-loss energy filter and the
Gaussian probe with an energy spread; ``--energies`` shortens the energy list.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time

import numpy as np

from datasets.physics import PhysicsConfig
from datasets.provenance import DeviceError, check_device
from datasets.simulate import physics_from_args
from datasets.transport import TransportStats


def bench_geometries(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random paper-scene geometries of the training generator (seeds ``seed .. seed+n-1``)."""
    from datasets.geometry import random_geometry

    return np.stack([random_geometry(seed + i)[0] for i in range(n)])


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        from numba import cuda

        index = int(device.split(":")[1]) if ":" in device else 0
        name = cuda.gpus[index].name
        return name.decode() if isinstance(name, bytes) else str(name)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({os.cpu_count()} cores)"


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB; ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rates(engine: str, stats: TransportStats, seconds: float, threads: int, **extra) -> dict:
    return {
        "engine": engine,
        "primaries": stats.primaries,
        "seconds": seconds,
        "electrons_per_s": stats.primaries / seconds,
        "flights_per_electron": stats.flights / stats.primaries,
        "events_per_electron": stats.elastic_events / stats.primaries,
        "events_per_s": stats.elastic_events / seconds,
        "ns_per_flight_thread": seconds * threads / max(stats.flights, 1) * 1e9,
        "ns_per_event_thread": seconds * threads / max(stats.elastic_events, 1) * 1e9,
        "threads": threads,
        **extra,
    }


def bench_kernel(geometries: np.ndarray, simulated_electrons_per_pixel: int, device: str, physics: PhysicsConfig,
                 seed: int = 0, threads: int | None = None, **options) -> dict:
    """Time the fused kernel on ``geometries`` after a small compile/warm-up run; ``options``:
    keywords of :func:`~datasets.simulate.simulate_stacks` (energies, probe, detector)."""
    from datasets.kernel import drivers
    from datasets.simulate import simulate_stacks

    simulate_stacks(geometries[:1], simulated_electrons_per_pixel=1, seed=seed, device=device, physics=physics,
                    threads=threads, **options)
    stats = TransportStats()
    t0 = time.perf_counter()
    simulate_stacks(geometries, simulated_electrons_per_pixel=simulated_electrons_per_pixel, seed=seed, device=device, physics=physics,
                    stats=stats, threads=threads, **options)
    seconds = time.perf_counter() - t0
    n_threads = drivers.set_cpu_threads(threads) if device == "cpu" else 1
    extra = {"parallelism": f"1 process x {n_threads} Numba threads" if device == "cpu" else "CUDA, 1 thread per primary"}
    if device.startswith("cuda"):
        extra["device_memory_mib"] = stats.device_bytes / 2**20  # every array the run put on the GPU
    else:
        extra["peak_rss_mib"] = _peak_rss_mib()
    return _rates("fused kernel (numba)", stats, seconds, n_threads, **extra)


def run_bench(device: str = "cpu", simulated_electrons_per_pixel: int = 100, geometries: int = 4,
              physics: PhysicsConfig | None = None, seed: int = 0, threads: int | None = None,
              against: PhysicsConfig | None = None, energies_keV=None, acquisition: bool = False) -> dict:
    """The kernel on ``geometries`` random geometries x 20 energies x 400 pixels with ``physics``,
    with its CSDA twin and, with ``against``, with that physics too (same geometries, same run).
    ``acquisition``: the acquisition models (:data:`ACQUISITION_OPTIONS`) instead of the twin."""
    device = check_device(device, backend="numba")
    if acquisition:
        return bench_acquisition(device, simulated_electrons_per_pixel, geometries, physics or PhysicsConfig(), seed,
                                 threads, energies_keV)
    physics = physics or PhysicsConfig()
    # the same elastic model without inelastic physics ('none' stopping is Penn's: its CSDA twin is 'tabulated')
    csda = PhysicsConfig.preset("csda", elastic=physics.elastic,
                                stopping="tabulated" if physics.stopping == "none" else physics.stopping)
    geoms = bench_geometries(geometries, seed)

    def timed(config):
        engine = bench_kernel(geoms, simulated_electrons_per_pixel, device, config, seed, threads)
        engine["engine"] += f", {config.label()}"
        return engine

    engines = [timed(physics)]
    compared = timed(against) if against is not None and against != physics else None
    if csda != physics:  # the cost of the inelastic physics: the same kernel without it
        engines.append(timed(csda))
    result = {
        "device": device,
        "device_name": device_name(device),
        "geometries": geometries,
        "energies": 20,
        "electrons_per_pixel": simulated_electrons_per_pixel,
        "physics": physics.label(),
        "engines": engines,
        "electrons_per_s": engines[0]["electrons_per_s"],
    }
    if csda != physics:
        result["physics_cost"] = engines[1]["electrons_per_s"] / engines[0]["electrons_per_s"]
    if compared is not None:
        engines.append(compared)
        result["against"] = against.label()
        result["speed_against"] = engines[0]["electrons_per_s"] / compared["electrons_per_s"]
    return result


def acquisition_options() -> dict[str, dict]:
    """The acquisition models timed by ``--acquisition``, by label: keywords of ``simulate_stacks``."""
    from datasets.detectors import AnnularDetector, WindowDetector

    return {"plane detector (default)": {},
            "annular diode 20-70 deg, E_t 200 eV": {"detector": AnnularDetector(20.0, 70.0, 200.0)},
            "low-loss window 200 eV": {"detector": WindowDetector(200.0)},
            "probe FWHM 2 nm, spread 0.7 eV": {"probe_fwhm_nm": 2.0, "energy_spread_eV": 0.7}}


def bench_acquisition(device: str, simulated_electrons_per_pixel: int, geometries: int, physics: PhysicsConfig,
                      seed: int, threads: int | None, energies_keV=None) -> dict:
    """Primaries/s of each of :func:`acquisition_options` on the same geometries in one run."""
    from datasets.scene import DEFAULT_ENERGIES_KEV

    energies = list(DEFAULT_ENERGIES_KEV if energies_keV is None else energies_keV)
    geoms = bench_geometries(geometries, seed)
    engines = []
    for label, options in acquisition_options().items():
        engine = bench_kernel(geoms, simulated_electrons_per_pixel, device, physics, seed, threads,
                              energies_keV=energies, **options)
        engine["engine"] = label
        engines.append(engine)
    base = engines[0]["electrons_per_s"]
    return {"device": device, "device_name": device_name(device), "geometries": geometries, "energies": len(energies),
            "electrons_per_pixel": simulated_electrons_per_pixel, "physics": physics.label(), "engines": engines,
            "electrons_per_s": base, "load_average": os.getloadavg(),
            "acquisition_cost": {e["engine"]: base / e["electrons_per_s"] for e in engines[1:]}}


def format_bench(r: dict) -> str:
    lines = [f"{r['device_name']} [{r['device']}], {r['geometries']} random geometries x {r['energies']} energies x "
             f"400 pixels x {r['electrons_per_pixel']} e-/pixel, physics {r['physics']}"]
    for e in r["engines"]:
        memory = (f"peak RSS {e['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in e
                  else f"device arrays {e['device_memory_mib']:.1f} MiB")
        lines.append(f"  {e['engine']:<36s} {e['electrons_per_s']:9.3g} primaries/s  {e['events_per_s']:9.3g} events/s  "
                     f"{e['flights_per_electron']:5.1f} flights and {e['events_per_electron']:5.1f} events per primary  "
                     f"{e['ns_per_flight_thread']:6.1f} ns per flight and {e['ns_per_event_thread']:6.1f} per event per thread  ({e['parallelism']}; {e['seconds']:.1f} s; {memory})")
    if "physics_cost" in r:
        lines.append(f"  cost of the {r['physics']} physics: the kernel is {r['physics_cost']:.2f}x slower with it "
                     f"than with CSDA physics (same geometries, same run)")
    for label, cost in r.get("acquisition_cost", {}).items():
        lines.append(f"  {label}: {cost:.3f}x the plane detector's time per primary (same geometries, same run)")
    if "load_average" in r:
        lines.append(f"  load average at the end: {' '.join(f'{x:.2f}' for x in r['load_average'])}")
    if "speed_against" in r:
        lines.append(f"  the kernel with {r['physics']} physics runs at {r['speed_against']:.2f}x the primaries/s it "
                     f"makes with {r['against']} (same geometries, same run)")
    return "\n".join(lines)


def available_devices() -> list[str]:
    """``cpu``, and ``cuda`` where the kernel can use a GPU here."""
    try:
        return ["cpu", check_device("cuda", backend="numba")]
    except DeviceError:
        return ["cpu"]


def _cmd_bench(args) -> int:
    devices = [args.device] if args.device else available_devices()
    results = []
    for device in devices:
        epp = args.electrons_per_pixel or (1000 if device.startswith("cuda") else 100)
        geoms = args.geometries or (64 if device.startswith("cuda") else 4)
        against = PhysicsConfig.preset(args.against) if args.against else None
        energies = None if args.energies is None else [float(e) for e in args.energies.split(",")]
        results.append(run_bench(device, epp, geoms, physics_from_args(args), args.seed, threads=args.threads,
                                 against=against, energies_keV=energies, acquisition=args.acquisition))
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0]))
    else:
        print("\n".join(format_bench(r) for r in results))
    return 0


def register_cli(subparsers) -> None:
    from datasets.simulate import add_physics_arguments

    parser = subparsers.add_parser("bench", help="simulator speed: the fused kernel with the chosen physics and its CSDA twin")
    parser.add_argument("--electrons-per-pixel", type=int, default=None, help="default 100 on CPU, 1000 on CUDA")
    parser.add_argument("--geometries", type=int, default=None, help="random geometries (default 4 on CPU, 64 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="CPU: Numba threads of the kernel (default: all cores)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--against", default=None,
                        help="also time the kernel with this physics preset (e.g. nebula-like) and print the ratio")
    parser.add_argument("--acquisition", action="store_true",
                        help="time the detectors and the probe against the plane detector (same geometries, same run)")
    parser.add_argument("--energies", default=None, help="with --acquisition: comma-separated keV (default the 20)")
    add_physics_arguments(parser)
    parser.set_defaults(func=_cmd_bench, device=None)
