"""The ``realism`` case's data: the same geometries read under one degradation level at a time.

Its samples are the first :data:`REALISM_TEST_SAMPLES` geometries of the test split and the
named cases' geometries (first simulation of each), at the dataset's read dose. Per level
(``datasets.realism``):

- ``ideal``: the stored stacks as every other case reads them;
- an image level: those stacks degraded by the level's operator (``datasets.acquisition``) with a
  generator seeded by (seed, level), so every method sees the same degraded stacks;
- a simulated level (``resimulated``, probe, detector): the geometries simulated again with the
  dataset's energies, physics and cutoff at the read dose, with the level's probe or detector,
  all from one seed (the same primaries' random streams: common random numbers), cached under
  ``<results>/cache/realism/`` (a rerun reuses them).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np

from benchmark.case_data import CaseData, simulation_settings
from datasets.realism import realism_level

#: the realism study: every method on the same geometries read under one acquisition level at a
#: time (levels of ``datasets.realism``), one run per level
REALISM_CASE = "realism"
#: test-split geometries in the realism case (with the nine named ones: 39 samples per level)
REALISM_TEST_SAMPLES = 30


def realism_samples(dataset, with_geometries: bool = False) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray | None]:
    """``(ids, bse (N,E,H,W) at the read dose, labels (N,D,H,W), geometries (N,Z,Y,X) or None)``
    of the case: the first test geometries, then each named case's samples (repeats left out);
    the geometries (``with_geometries``) are what a simulated level simulates again."""
    bse, labels, ids = dataset.arrays("test")
    keep = min(REALISM_TEST_SAMPLES, len(ids))
    if keep == 0:
        raise ValueError("the realism case needs test geometries: the dataset's 'test' split is empty")
    samples = [{"id": sid, "bse": b, "label": lab} for sid, b, lab in zip(ids[:keep], bse[:keep], labels[:keep])]
    if with_geometries:
        samples = [{**s, "geometry": dataset.sample(s["id"])["geometry"]} for s in samples]
    for name in dataset.cases():
        samples += [s for s in dataset.case(name) if "@" not in str(s["id"])]  # each geometry's first simulation
    return ([s["id"] for s in samples], np.stack([s["bse"] for s in samples]).astype(np.float32),
            np.stack([s["label"] for s in samples]).astype(np.uint8),
            np.stack([s["geometry"] for s in samples]) if with_geometries else None)


#: what the seed of every simulated level is derived from: one seed for all of them, so that they
#: share the primaries' random streams (common random numbers: ``resimulated`` is their baseline)
SIMULATION_STREAM = "simulation"
#: the version of how this module makes a level's data, part of a realism run's key
REALISM_DATA_VERSION = 1


def level_seed(seed: int, level: str) -> int:
    """The seed of one level's draws: (seed, crc32 of the level name), stable across versions;
    every simulated level draws from the seed of :data:`SIMULATION_STREAM`."""
    if realism_level(level).kind == "simulation":
        level = SIMULATION_STREAM
    return int(np.random.SeedSequence([int(seed), zlib.crc32(level.encode())]).generate_state(1)[0])


def level_key(level: str) -> dict:
    """What a realism run's result depends on beyond the usual run key: the level's definition,
    the samples rule and this module's data version."""
    from dataclasses import asdict

    return {"level": asdict(realism_level(level)), "test_samples": REALISM_TEST_SAMPLES,
            "version": REALISM_DATA_VERSION}


def realism_case(dataset, level: str, cache_dir: Path, seed: int = 0, device: str = "cpu", log=print) -> CaseData:
    """The realism case read under ``level`` (a name of ``datasets.realism.realism_levels``)."""
    from datasets.acquisition import level as image_level

    spec = realism_level(level)
    ids, bse, labels, geometries = realism_samples(dataset, with_geometries=spec.kind == "simulation")
    read = int(dataset.read_electrons_per_pixel)
    fingerprint = {"acquisition": spec.name, "samples": len(ids), "seed": int(seed)}
    if spec.kind == "image":
        bse = image_level(spec.name)(bse, seed=level_seed(seed, spec.name))
        fingerprint["operator"] = repr(spec.description)
    elif spec.kind == "simulation":
        bse, record = _simulated(dataset, spec, ids, geometries, Path(cache_dir), seed, device, log)
        fingerprint["simulation"] = record
    return CaseData(REALISM_CASE, ids, np.asarray(bse, dtype=np.float32), labels,
                    np.asarray(dataset.energies_keV, dtype=float), simulated_electrons_per_pixel=read
                    if spec.kind == "simulation" else int(dataset.simulated_electrons_per_pixel),
                    read_electrons_per_pixel=read, fingerprint=fingerprint)


def _simulated(dataset, spec, ids, geometries, cache_dir: Path, seed: int, device: str, log):
    """The level's stacks (N,E,H,W) simulated at the read dose (cached), and what was simulated."""
    from datasets.detectors import detector_from_record
    from datasets.files import atomic_path
    from datasets.physics import PhysicsConfig
    from datasets.simulate import SIMULATOR_VERSION, simulate_stacks

    settings = {**simulation_settings(dataset), "electrons_per_pixel": int(dataset.read_electrons_per_pixel),
                **spec.simulate}
    record = {"settings": settings, "seed": level_seed(seed, spec.name), "simulator_version": SIMULATOR_VERSION,
              "device": "cuda" if str(device).startswith("cuda") else "cpu",
              "geometries": hashlib.sha256(geometries.tobytes() + "|".join(map(str, ids)).encode()).hexdigest()[:16]}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / "realism" / f"{spec.name}-{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["bse"], record
    log(f"simulating the realism level {spec.name} ({len(ids)} geometries, {settings['electrons_per_pixel']} "
        f"e-/pixel, {len(settings['energies_keV'])} energies) -> {path}")
    stacks = simulate_stacks(geometries, energies_keV=settings["energies_keV"],
                             simulated_electrons_per_pixel=settings["electrons_per_pixel"],
                             cutoff_eV=settings["cutoff_eV"], physics=PhysicsConfig(**settings["physics"]),
                             seed=record["seed"], device=device, probe_fwhm_nm=settings.get("probe_fwhm_nm", 0.0),
                             detector=detector_from_record(settings.get("detector")))
    bse = np.stack([s.bse for s in stacks]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, bse=bse, ids=np.asarray(ids), record=json.dumps(record, sort_keys=True))
    return bse, record
