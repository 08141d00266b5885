"""The benchmark's cases and the data each one is scored on.

- ``nanocube``, ``nanowire`` (and any other named case stored with the dataset): the paper's
  test cases (Tables 3 and 4), simulated with the dataset's settings when it was built;
- ``test``: the held-out split of the dataset;
- ``ablation``: BSE-VoxNets variants of Table 1 (one module switched off), scored on ``test``;
- ``nebula``: the named cases' geometries as simulated by Nebula (the paper's simulator);
- ``dose``: the dose study, one run per read dose (``RunSpec.read_electrons_per_pixel``);
- a geometry file (``.npy``/``.tif``) given by path: validated with
  ``datasets.cases.load_custom_geometry``, simulated once with the dataset's simulator
  settings (cached under ``outputs/<preset>/cache/custom/``) and named
  ``custom:<file stem>-<content hash>``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from benchmark.case_data import CaseData, simulation_settings
from benchmark.errors import UsageError
from benchmark.realism import REALISM_CASE, realism_case
from datasets.cases import CUSTOM_SUFFIXES
from datasets.errors import unknown_name
from datasets.physics import PhysicsConfig

SPLIT_CASES = {"test": "test", "ablation": "test"}
#: the paper's simulator's stacks of the named cases (``datasets.nebula_reference``)
NEBULA_CASE = "nebula"
#: the dose study: every method on the test split and the named cases thinned to each dose of
#: ``datasets.dose.dose_levels``, one run per dose (the rows' ``read_electrons_per_pixel``)
DOSE_CASE = "dose"
CUSTOM_CASE_PATTERN = "PATH.npy|PATH.tif"
CASE_DESCRIPTIONS = {
    "nanocube": "paper III.A / Table 3: 5 nm Cu cube at 4 depths (position1..position4)",
    "nanowire": "paper III.B / Table 4: Cu wire of radius 2..10 nm (radius2nm..radius10nm)",
    "test": "the held-out test split of the dataset (mIoU with a 95% bootstrap interval)",
    "ablation": "Table 1: BSE-VoxNets without SOPE / S2-MLPv2 / ConvFFN, scored on the test split",
    NEBULA_CASE: "the nanocube and nanowire geometries as simulated by Nebula (the paper's simulator), "
                 "thinned to the dataset's electrons per pixel: IoU on the paper's data, beside ours",
    DOSE_CASE: "the dose study: test geometries and the named cases simulated at a top dose (the dataset's "
               "dose-study data, else its stored data) and thinned exactly to 10, 25, 50, 100, 300, 1000 "
               "e-/pixel (those up to the top) and the data's dose; one run per dose (--read-dose N picks one)",
    REALISM_CASE: "the realism study: 30 test geometries and the named ones read under one acquisition "
                  "degradation at a time (probe 0.5-3 nm, annular / low-loss detector, drift, gain and "
                  "readout noise, brightness/contrast; 3-4 levels each, see datasets/realism.py); models "
                  "trained on ideal data, beside their robust (augmented) twins; --level NAME picks one",
    CUSTOM_CASE_PATTERN: "a custom geometry file [z, y, x] of material ids, simulated with the "
                         "preset's settings; reported as case custom:<file stem>-<8 hex of its sha256>",
}
CUSTOM_PREFIX = "custom:"


def named_cases(dataset_cases) -> list[str]:
    """Case names usable with ``--case`` for a dataset storing ``dataset_cases``."""
    return [*dataset_cases, "test", "ablation", NEBULA_CASE, DOSE_CASE, REALISM_CASE]


def is_custom_path(text: str) -> bool:
    return text.startswith(CUSTOM_PREFIX) or Path(text).suffix.lower() in CUSTOM_SUFFIXES or os.sep in text


def custom_path(text: str) -> Path:
    return Path(text[len(CUSTOM_PREFIX):] if text.startswith(CUSTOM_PREFIX) else text)


def resolve_case(text: str, dataset_cases) -> str:
    """Check a ``--case`` value: a named case, or the path of a valid geometry file
    (returned as ``custom:PATH``)."""
    from datasets.cases import load_custom_geometry

    known = named_cases(dataset_cases)
    if text in known:
        return text
    if is_custom_path(text):
        path = custom_path(text)
        try:
            load_custom_geometry(path)
        except (OSError, ValueError, TypeError) as err:
            raise UsageError(f"bad custom case: {err}") from err
        return f"{CUSTOM_PREFIX}{path}"
    raise unknown_name("case", text, [*known, f"the path of a geometry file ({'/'.join(CUSTOM_SUFFIXES)})"])


def case_label(case: str) -> str:
    """The ``case`` column value: ``custom:<file stem>-<8 hex of its content's sha256>`` for a
    file (so ``a/cube.npy`` and ``b/cube.npy`` never share a name unless they hold the same
    geometry), the name otherwise."""
    if case.startswith(CUSTOM_PREFIX):
        path = custom_path(case)
        return f"{CUSTOM_PREFIX}{path.stem}-{content_tag(path)}"
    return case


def content_tag(path: Path) -> str:
    """First 8 hex digits of the sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


def load_case(case: str, dataset, cache_dir: Path, seed: int = 0, device: str = "cpu",
              log=print, read_electrons_per_pixel: int | None = None, acquisition: str | None = None) -> CaseData:
    """The data of ``case`` (as returned by :func:`resolve_case`) from ``dataset``;
    ``read_electrons_per_pixel``: the dose case's read dose (required there, unused elsewhere);
    ``acquisition``: the realism case's level (required there, unused elsewhere)."""
    energies = np.asarray(dataset.energies_keV, dtype=float)
    doses = {"simulated_electrons_per_pixel": int(dataset.simulated_electrons_per_pixel),
             "read_electrons_per_pixel": int(dataset.read_electrons_per_pixel)}
    if case in SPLIT_CASES:
        bse, labels, ids = dataset.arrays(SPLIT_CASES[case])
        if len(ids) == 0:
            raise ValueError(f"the dataset's '{SPLIT_CASES[case]}' split is empty")
        return CaseData(case, list(ids), bse, labels, energies, **doses, fingerprint={"split": SPLIT_CASES[case]})
    if case.startswith(CUSTOM_PREFIX):
        return _custom_case(custom_path(case), dataset, Path(cache_dir), seed, device, log)
    if case == NEBULA_CASE:
        return nebula_case(dataset, seed)
    if case == REALISM_CASE:
        if acquisition is None:
            raise UsageError(f"the '{REALISM_CASE}' case needs an acquisition level (datasets.realism)")
        return realism_case(dataset, acquisition, Path(cache_dir), seed, device, log)
    if case == DOSE_CASE:
        if read_electrons_per_pixel is None:
            raise UsageError(f"the '{DOSE_CASE}' case needs a read dose (e-/pixel)")
        return dose_case(dataset, read_electrons_per_pixel, seed)
    samples = dataset.case(case)
    return CaseData(
        case,
        [s["id"] for s in samples],
        np.stack([s["bse"] for s in samples]).astype(np.float32),
        np.stack([s["label"] for s in samples]).astype(np.uint8),
        energies,
        **doses,
        fingerprint={"stored_case": case},
    )


def dose_source(dataset) -> tuple[int, list[str], np.ndarray, np.ndarray, str]:
    """What the dose case thins: the dataset's dose-study data at its top dose when it has them
    (the first test geometries and the named cases simulated once more), else the stored test
    split and named cases; ``(top e-/pixel, ids, bse, labels, description)``."""
    top = dataset.dose_study_electrons_per_pixel
    if top:
        groups = dataset.dose_study()
        samples = [s for group in groups.values() for s in group]
        n_test = len(groups.get("test", []))
        what = (f"the first {n_test} test geometries and the named cases, simulated once more at "
                f"{top} e-/pixel")
    else:
        top = int(dataset.simulated_electrons_per_pixel)
        bse, labels, ids = dataset.arrays("test", stored=True)
        samples = [{"id": i, "bse": b, "label": lab} for i, b, lab in zip(ids, bse, labels)]
        for name in dataset.cases():
            samples += dataset.case(name, stored=True)
        what = f"the test split and the named cases as stored ({top} e-/pixel)"
    return (int(top), [s["id"] for s in samples], np.stack([s["bse"] for s in samples]).astype(np.float32),
            np.stack([s["label"] for s in samples]).astype(np.uint8), what)


def dose_case(dataset, read_electrons_per_pixel: int, seed: int = 0) -> CaseData:
    """The dose study read at ``read_electrons_per_pixel``: :func:`dose_source`'s samples thinned
    from its top dose (hypergeometric, exact: ``datasets.dose.thin_yields``) with a generator
    seeded by (seed, read dose)."""
    from datasets.dose import thin_yields

    read = int(read_electrons_per_pixel)
    top, ids, bse, labels, what = dose_source(dataset)
    if read > top:
        raise UsageError(f"the {DOSE_CASE} case at {read} e-/pixel: the dose study's data hold {top} e-/pixel; "
                         f"a dose can only be lowered (thinned) from it")
    if read < top:
        rng = np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(0xD05E, read)))
        bse = thin_yields(bse, top, read, rng)
    return CaseData(DOSE_CASE, ids, bse, labels, np.asarray(dataset.energies_keV, dtype=float),
                    simulated_electrons_per_pixel=top, read_electrons_per_pixel=read,
                    fingerprint={"read_electrons_per_pixel": read, "simulated_electrons_per_pixel": top,
                                 "source": what, "seed": int(seed)})


def nebula_case(dataset, seed: int = 0) -> CaseData:
    """Nebula's stacks of the nine named-case geometries (sample ids as in ``nanocube`` and
    ``nanowire``), simulated at 3,000 e-/pixel and thinned exactly (hypergeometric:
    ``datasets.dose.thin_to_dose``) to the dataset's read dose, so a method meets the paper's
    simulator's data at the noise level it was trained on."""
    from datasets.dose import thin_to_dose
    from datasets.nebula_reference import REFERENCE_FILES, load_reference
    from datasets.scene import block_labels

    energies = np.asarray(dataset.energies_keV, dtype=float)
    dose = int(dataset.read_electrons_per_pixel)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(0x4E42,)))
    ids, bse, labels = [], [], []
    for name, (_, sample) in REFERENCE_FILES.items():
        ref = load_reference(name)
        if ref.energies_keV.shape != energies.shape or not np.allclose(ref.energies_keV, energies):
            raise UsageError(f"the '{NEBULA_CASE}' case needs a dataset at Nebula's energies "
                             f"({ref.energies_keV[0]:g}-{ref.energies_keV[-1]:g} keV, {len(ref.energies_keV)}); "
                             f"this one has {len(energies)} energies")
        counts = np.rint(ref.bse * ref.simulated_electrons_per_pixel).astype(np.int64)
        if dose < ref.simulated_electrons_per_pixel:  # exactly `dose` of Nebula's primaries (datasets.dose)
            yields = thin_to_dose(counts, ref.simulated_electrons_per_pixel, dose, rng) / dose
        else:  # a dataset at Nebula's dose or above: Nebula's stack as it is
            yields = counts / ref.simulated_electrons_per_pixel
        ids.append(sample)
        bse.append(yields.astype(np.float32))
        labels.append(block_labels(ref.geometry))
        simulated = int(ref.simulated_electrons_per_pixel)  # the same (3,000) for every reference file
    return CaseData(NEBULA_CASE, ids, np.stack(bse), np.stack(labels).astype(np.uint8), energies,
                    simulated_electrons_per_pixel=simulated, read_electrons_per_pixel=min(dose, simulated),
                    fingerprint={"nebula_reference": "datasets/data/nebula_reference",
                                 "thinned_to": min(dose, 3000), "seed": int(seed)})


def _custom_case(path: Path, dataset, cache_dir: Path, seed: int, device: str, log) -> CaseData:
    from datasets.cases import load_custom_geometry
    from datasets.scene import block_labels
    from datasets.simulate import SIMULATOR_VERSION
    from datasets.stack import BseStack

    geometry = load_custom_geometry(path)
    settings = simulation_settings(dataset)
    geometry_sha = hashlib.sha256(geometry.tobytes() + str(geometry.shape).encode()).hexdigest()[:16]
    key_text = repr((geometry_sha, sorted(settings.items()), seed, SIMULATOR_VERSION, str(device)))
    stack_key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    stack_path = cache_dir / "custom" / f"{path.stem}-{stack_key}.npz"
    if stack_path.is_file():
        stack = BseStack.load(stack_path)
    else:
        from datasets.simulate import simulate_stack

        log(f"simulating custom geometry {path} ({settings['electrons_per_pixel']} e/px, "
            f"{len(settings['energies_keV'])} energies) -> {stack_path}")
        stack = simulate_stack(
            geometry,
            energies_keV=settings["energies_keV"],
            simulated_electrons_per_pixel=settings["electrons_per_pixel"],
            cutoff_eV=settings["cutoff_eV"],
            physics=PhysicsConfig(**settings["physics"]),
            seed=seed,
            device=device,
        )
        stack.meta = {**stack.meta, "geometry_file": str(path), "geometry_sha256": geometry_sha}
        stack.save(stack_path)  # atomic (datasets.stack.BseStack.save)
    return CaseData(
        case_label(f"{CUSTOM_PREFIX}{path}"),
        [path.stem],
        stack.bse[None].astype(np.float32),
        block_labels(geometry)[None],
        np.asarray(stack.energies_keV, dtype=float),
        simulated_electrons_per_pixel=settings["electrons_per_pixel"],
        read_electrons_per_pixel=settings["electrons_per_pixel"],
        fingerprint={"geometry_sha256": geometry_sha, "simulation": settings, "simulation_seed": seed},
    )
