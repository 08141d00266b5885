"""Simulate multi-energy BSE stacks of voxel geometries, and bulk backscatter coefficients.

Python API::

    from datasets.simulate import simulate_stack, simulate_stacks, simulate_bulk
    stack = simulate_stack(geometry, simulated_electrons_per_pixel=100, seed=0)   # BseStack (E, H, W)
    eta, err = simulate_bulk("Cu", energy_keV=5.0, electrons=100_000)

Command line: ``python -m datasets simulate GEOMETRY.npy --out STACK.npz`` and
``python -m datasets simulate-bulk --material Cu --energy 5``.

The beam rasters every pixel centre (x + 0.5, y + 0.5) nm at normal incidence, starting at
z = 2 nm; a pixel's yield is the fraction of its primaries that cross the detector plane
z = 0 nm moving up with kinetic energy above the cutoff (50 eV by default).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from datasets.cross_sections import ELASTIC_MODELS, STOPPING_MODELS
from datasets.detectors import detector_from_spec, probe_sigmas
from datasets.inelastic_models import INELASTIC_MODELS
from datasets.kernel import drivers
from datasets.materials import MATERIALS, Material, material_by_name
from datasets.physics import BARRIER_MODELS, DEFAULT_PHYSICS, PHYSICS_PRESETS, PhysicsConfig
from datasets.physics_tables import physics_tables
from datasets.provenance import check_device
from datasets.scene import (
    BLOCK_Z_NM,
    DEFAULT_CUTOFF_EV,
    DEFAULT_ENERGIES_KEV,
    Scene,
    block_labels,
    validate_geometry,
)
from datasets.stack import BseStack
from datasets.transport import Transport, TransportStats, material_ids_to_indices

#: The simulator's version in every stack's metadata: the fused Numba kernel with counter-based
#: random numbers, optional hard inelastic collisions with fast secondaries and a surface barrier;
#: counts are detected electrons (a primary's secondaries included).
SIMULATOR_VERSION = "2.1"


def check_energies(energies_keV) -> np.ndarray:
    """Validate beam energies (keV): finite, within 0.05-30 keV, strictly increasing."""
    energies = np.atleast_1d(np.asarray(energies_keV, dtype=np.float64))
    if energies.ndim != 1 or energies.size == 0:
        raise ValueError(f"energies_keV must be a non-empty 1-D list, got shape {energies.shape}")
    if not np.all(np.isfinite(energies)):
        raise ValueError(f"energies_keV contains NaN or infinity: {energies.tolist()}")
    if np.any(energies <= 0):
        raise ValueError(f"beam energies must be positive, got {energies.tolist()} keV")
    if np.any(energies < 0.05) or np.any(energies > 30):
        raise ValueError(f"beam energies must lie within 0.05-30 keV (the physics models' range), got {energies.tolist()} keV")
    if np.any(np.diff(energies) <= 0):
        raise ValueError(f"energies_keV must be strictly increasing, got {energies.tolist()}")
    return energies


def _material_list(materials: dict[int, Material], used_ids) -> tuple[list, dict[int, int]]:
    missing = sorted(set(int(i) for i in used_ids) - {0} - set(materials))
    if missing:
        raise ValueError(f"geometry uses material ids {missing} not in the material table {sorted(materials)}")
    ids = sorted(materials)
    return [None] + [materials[i] for i in ids], {0: 0, **{mid: k + 1 for k, mid in enumerate(ids)}}


def _check_run_settings(simulated_electrons_per_pixel, seed, cutoff_eV) -> None:
    """``ValueError`` naming the first bad setting of a simulation run."""
    if int(simulated_electrons_per_pixel) != simulated_electrons_per_pixel or simulated_electrons_per_pixel < 1:
        raise ValueError(f"simulated_electrons_per_pixel must be a positive integer, got {simulated_electrons_per_pixel}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not math.isfinite(cutoff_eV) or cutoff_eV < 0:
        raise ValueError(f"cutoff_eV must be a non-negative number, got {cutoff_eV}")


def _checked_geometries(geometries, materials, scene: Scene) -> np.ndarray:
    """``geometries`` as a validated (N, Z, Y, X) batch whose layers above the beam are vacuum."""
    geoms = np.asarray(geometries)
    if geoms.ndim == 3:
        geoms = geoms[None]
    if geoms.ndim != 4:
        raise ValueError(f"geometries must have shape (N, Z, Y, X), got {geoms.shape}")
    geoms = np.stack([validate_geometry(g, known_ids=(0, *materials), name=f"geometry[{i}]") for i, g in enumerate(geoms)])
    beam_layer = int(math.floor(scene.beam_z_nm / scene.voxel_nm))
    if beam_layer >= 0 and np.any(geoms[:, : beam_layer + 1] != 0):
        raise ValueError(f"the beam starts at z = {scene.beam_z_nm} nm inside material: layers above it must be vacuum")
    return geoms


def simulate_stacks(geometries, energies_keV=DEFAULT_ENERGIES_KEV, simulated_electrons_per_pixel: int = 100,
                    seed: int = 0, device="cpu", physics: PhysicsConfig | None = None,
                    cutoff_eV: float = DEFAULT_CUTOFF_EV, scene: Scene | None = None,
                    materials: dict[int, Material] | None = None, progress: bool = False,
                    stats: TransportStats | None = None, threads: int | None = None, probe_fwhm_nm=0.0,
                    energy_spread_eV=0.0, detector=None) -> list[BseStack]:
    """Simulate BSE stacks for a batch of geometries ``(N, Z, Y, X)`` in one kernel run.

    Returns one :class:`BseStack` per geometry, ``bse`` of shape (E, Y, X). Primary ``n`` of
    pixel ``p`` at energy index ``e`` of geometry ``g`` draws from its own counter-based random
    stream keyed by ``(seed, g, e, p, n)``, so the same seed gives identical counts for any
    number of CPU ``threads`` (default: all cores) and statistically identical ones on CUDA.

    Acquisition (all off by default, recorded in ``meta`` only when set): ``probe_fwhm_nm``, the
    Gaussian probe's FWHM (nm; a number or one per energy); ``energy_spread_eV``, the beam's
    energy FWHM (eV; a number or one per energy); ``detector``, a :mod:`datasets.detectors`
    detector (default the plane). A weighted (annular) detector's stacks have ``bse`` = mean
    weight per primary and no integer ``counts`` (``meta["weighted_counts"]`` says so).
    """
    scene = scene or Scene()
    physics = physics or PhysicsConfig()
    materials = materials or MATERIALS
    energies = check_energies(energies_keV)
    _check_run_settings(simulated_electrons_per_pixel, seed, cutoff_eV)
    geoms = _checked_geometries(geometries, materials, scene)
    device = check_device(device, backend="numba")
    material_list, id_to_index = _material_list(materials, np.unique(geoms))
    tables = physics_tables(material_list, physics, cutoff_eV=cutoff_eV)
    transport = Transport(material_ids_to_indices(geoms, id_to_index), tables, voxel_nm=scene.voxel_nm,
                          cutoff_eV=cutoff_eV, detector=detector)
    probe_sigma, energy_sigma = probe_sigmas(probe_fwhm_nm, energy_spread_eV, energies.size)

    n_geom, _, ny, nx = geoms.shape
    pixel = np.arange(ny * nx)
    beam_x = (pixel % nx + 0.5) * scene.voxel_nm
    beam_y = (pixel // nx + 0.5) * scene.voxel_nm
    total = n_geom * energies.size * pixel.size * int(simulated_electrons_per_pixel)
    if device == "cpu":
        drivers.set_cpu_threads(threads)
    with tqdm(total=total, unit="e-", unit_scale=True, disable=not progress, desc="simulate", file=sys.stderr) as bar:
        counts = transport.run(beam_x, beam_y, energies * 1e3, int(simulated_electrons_per_pixel), int(seed), device,
                               stats=stats, progress=bar.update, probe_sigma_nm=probe_sigma, energy_sigma_eV=energy_sigma)
    counts = counts.reshape(n_geom, energies.size, ny, nx)
    meta = {"seed": int(seed), "device": device, "physics": physics.describe(),
            "simulator_version": SIMULATOR_VERSION, "scene": scene.__dict__,
            **acquisition_meta(probe_fwhm_nm, energy_spread_eV, transport.detector)}
    weighted = transport.detector.weighted
    return [BseStack(bse=(c / float(simulated_electrons_per_pixel)).astype(np.float32), energies_keV=energies,
                     counts=None if weighted else c, simulated_electrons_per_pixel=int(simulated_electrons_per_pixel),
                     cutoff_eV=float(cutoff_eV), meta=dict(meta))
            for c in counts]


def acquisition_meta(probe_fwhm_nm, energy_spread_eV, detector) -> dict:
    """The stack metadata of the acquisition options that differ from the ideal default (none: {})."""
    meta = {}
    if np.any(np.asarray(probe_fwhm_nm) != 0):
        meta["probe_fwhm_nm"] = np.asarray(probe_fwhm_nm, dtype=float).tolist()
    if np.any(np.asarray(energy_spread_eV) != 0):
        meta["energy_spread_eV"] = np.asarray(energy_spread_eV, dtype=float).tolist()
    if detector.describe()["kind"] != "plane":
        meta["detector"] = detector.describe()
        meta["weighted_counts"] = bool(detector.weighted)
    return meta


def simulate_stack(geometry, **kwargs) -> BseStack:
    """Simulate one geometry ``(Z, Y, X)``; keywords as :func:`simulate_stacks`."""
    geometry = np.asarray(geometry)
    if geometry.ndim != 3:
        raise ValueError(f"geometry must be a 3-D [z, y, x] array, got shape {geometry.shape}")
    return simulate_stacks(geometry[None], **kwargs)[0]


def simulate_bulk(material: str | Material, energy_keV: float, electrons: int = 100_000, seed: int = 0,
                  device="cpu", physics: PhysicsConfig | None = None, cutoff_eV: float = DEFAULT_CUTOFF_EV,
                  stats: TransportStats | None = None) -> tuple[float, float]:
    """Backscatter coefficient eta of a semi-infinite slab at normal incidence (no terminator).

    Returns ``(eta, standard error)`` with the binomial error sqrt(eta (1 - eta) / N).
    """
    if isinstance(material, str):
        material = material_by_name(material)
    energy = float(check_energies([energy_keV])[0])
    if int(electrons) != electrons or electrons < 1:
        raise ValueError(f"electrons must be a positive integer, got {electrons}")
    device = check_device(device, backend="numba")
    transport = Transport(np.ones((1, 1, 1, 1), dtype=np.uint8), physics_tables([None, material], physics or PhysicsConfig(),
                                                                            cutoff_eV=cutoff_eV),
                          voxel_nm=1.0, semi_infinite=True, cutoff_eV=cutoff_eV)
    # the primaries are spread over tally bins of at most 10,000 (own random streams, parallel on CPU);
    # when they do not divide evenly, up to n_bins - 1 more primaries are simulated than asked
    n_bins = max(1, math.ceil(int(electrons) / 10_000))
    per_bin = math.ceil(int(electrons) / n_bins)
    if device == "cpu":
        drivers.set_cpu_threads(None)
    counts = transport.run(np.full(n_bins, 0.5), np.full(n_bins, 0.5), [energy * 1e3], per_bin, int(seed), device,
                           stats=stats)
    electrons = n_bins * per_bin
    eta = int(counts.sum()) / electrons
    return eta, math.sqrt(max(eta * (1 - eta), 1e-12) / electrons)


# --------------------------------------------------------------------------- command line
def physics_from_args(args) -> PhysicsConfig:
    """The physics of ``--physics`` with ``--elastic/--stopping/--inelastic/--barrier`` overrides."""
    return PhysicsConfig.preset(args.physics, elastic=args.elastic, stopping=args.stopping,
                                inelastic=args.inelastic, barrier=args.barrier)


def add_physics_arguments(parser) -> None:
    parser.add_argument("--physics", default=DEFAULT_PHYSICS,
                        help=f"physics preset: {' | '.join(PHYSICS_PRESETS)} (default {DEFAULT_PHYSICS})")
    parser.add_argument("--elastic", default=None, help=f"override the elastic model: {' | '.join(ELASTIC_MODELS)}")
    parser.add_argument("--stopping", default=None, help=f"override the stopping model: {' | '.join(STOPPING_MODELS)}")
    parser.add_argument("--inelastic", default=None,
                        help=f"override the hard inelastic model: {' | '.join(INELASTIC_MODELS)}")
    parser.add_argument("--barrier", default=None, help=f"override the surface barrier: {' | '.join(BARRIER_MODELS)}")
    parser.add_argument("--cutoff-eV", type=float, default=DEFAULT_CUTOFF_EV, help="detector energy cutoff (eV)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)


def _cmd_simulate_bulk(args) -> int:
    t0 = time.perf_counter()
    eta, err = simulate_bulk(args.material, args.energy, args.electrons, seed=args.seed, device=args.device,
                             physics=physics_from_args(args), cutoff_eV=args.cutoff_eV)
    result = {"material": material_by_name(args.material).name, "energy_keV": args.energy, "electrons": args.electrons,
              "eta": eta, "eta_error": err, "physics": physics_from_args(args).describe(),
              "seconds": time.perf_counter() - t0, "device": args.device}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"eta({result['material']}, {args.energy:g} keV) = {eta:.4f} +- {err:.4f}  "
              f"[{args.electrons} electrons, {physics_from_args(args).label()}, {result['seconds']:.1f} s]")
    return 0


def _cmd_simulate(args) -> int:
    from datasets.cases import load_custom_geometry

    path = Path(args.geometry)
    out = Path(args.out)
    if out.is_dir():  # before the simulation, not after it
        raise ValueError(f"--out {out} is a directory; give a file name such as {out / 'stack.npz'}")
    geometry = load_custom_geometry(path, expected_shape=None)  # any 3-D grid; errors name the problem
    energies = DEFAULT_ENERGIES_KEV if args.energies is None else [float(e) for e in args.energies.split(",")]
    stack = simulate_stack(geometry, energies_keV=energies, simulated_electrons_per_pixel=args.electrons_per_pixel,
                           seed=args.seed, device=args.device, physics=physics_from_args(args),
                           cutoff_eV=args.cutoff_eV, progress=not args.quiet,
                           probe_fwhm_nm=_numbers(args.probe_fwhm_nm), energy_spread_eV=_numbers(args.energy_spread_eV),
                           detector=detector_from_spec(args.detector))
    stack.meta["geometry_file"] = str(path)
    if geometry.shape[0] >= BLOCK_Z_NM[1]:  # the geometry covers the Si block: keep its ground truth
        stack.labels = block_labels(geometry)
    out = stack.save(out)
    print(f"wrote {out}: bse {stack.bse.shape}, energies {stack.energies_keV[0]:g}-{stack.energies_keV[-1]:g} keV, "
          f"mean yield {stack.bse.mean():.4f}")
    return 0


def _numbers(text: str) -> float | list[float]:
    """``"1.5"`` -> 1.5, ``"0.5,1,2"`` -> one value per energy."""
    values = [float(v) for v in str(text).split(",")]
    return values[0] if len(values) == 1 else values


def register_cli(subparsers) -> None:
    bulk = subparsers.add_parser("simulate-bulk", help="backscatter coefficient of a bulk target")
    bulk.add_argument("--material", required=True, help="Si or Cu")
    bulk.add_argument("--energy", type=float, required=True, help="beam energy (keV)")
    bulk.add_argument("--electrons", type=int, default=100_000)
    bulk.add_argument("--json", action="store_true", help="print one JSON object")
    add_physics_arguments(bulk)
    bulk.set_defaults(func=_cmd_simulate_bulk)

    sim = subparsers.add_parser("simulate", help="simulate a BSE stack of a geometry .npy file")
    sim.add_argument("geometry", help="geometry .npy: integer [z, y, x] material ids")
    sim.add_argument("--out", required=True, help="output stack .npz")
    sim.add_argument("--electrons-per-pixel", type=int, default=100)
    sim.add_argument("--energies", default=None, help="comma-separated keV (default 0.5,1.0,...,10.0)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument("--probe-fwhm-nm", default="0", help="Gaussian probe FWHM (nm), or one per energy (default 0: a point)")
    sim.add_argument("--energy-spread-eV", default="0", help="beam energy FWHM (eV), or one per energy (default 0)")
    sim.add_argument("--detector", default="plane",
                     help="plane (default) | annular:MIN_DEG,MAX_DEG,THRESHOLD_EV | window:DE_EV")
    add_physics_arguments(sim)
    sim.set_defaults(func=_cmd_simulate)
