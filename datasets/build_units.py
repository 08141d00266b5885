"""The work of a dataset build: units (one per shard, one for ``cases.h5``), their seeds, and
the worker side that simulates one unit and returns its arrays (workers write no file).

Sample ``i``'s geometry is ``random_geometry(seed_i)`` and shard ``k`` is simulated in one batched
``simulate_stacks`` call with seed ``s_k``, where ``seed_i`` and ``s_k`` are derived from
(dataset seed, stream, index) with ``numpy.random.SeedSequence``: the data do not depend on the
number of workers or on the order in which units finish.

Test seam: ``simulator=`` (or the environment variable ``BSE_DATASET_SIMULATOR``) names a module
used instead of ``datasets.simulate``; it must define ``simulate_stacks`` (same signature),
``SIMULATOR_VERSION`` and may define ``PhysicsConfig``. The tests use it to plug in a fast fake.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from datasets import dataset_format as fmt
from datasets.presets import DatasetPreset
from datasets.scene import PAPER_SHAPE_ZYX, block_labels
from datasets.splits import make_splits

SIMULATOR_ENV = "BSE_DATASET_SIMULATOR"
DEFAULT_SIMULATOR = "datasets.simulate"
#: Independent random streams derived from the dataset seed.
STREAM_GEOMETRY, STREAM_SHARD_SIMULATION, STREAM_CASE_SIMULATION, STREAM_CASE_REPEAT, STREAM_DOSE_STUDY = 1, 2, 3, 4, 5


def derive_seed(dataset_seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for item ``index`` of random ``stream``, a pure function of its arguments."""
    sequence = np.random.SeedSequence(entropy=int(dataset_seed), spawn_key=(int(stream), int(index)))
    return int(sequence.generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class WorkUnit:
    """One file to produce: a shard of random samples, or ``cases.h5``."""

    kind: str  # "shard" | "cases"
    index: int
    file: str  # path relative to the dataset directory
    first_index: int
    n_samples: int
    simulation_seed: int
    preset: DatasetPreset
    device: str
    simulator: str

    @property
    def electrons(self) -> int:
        """Primary electrons this unit simulates."""
        pixels = PAPER_SHAPE_ZYX[1] * PAPER_SHAPE_ZYX[2]
        return self.n_samples * len(self.preset.energies_keV) * pixels * self.preset.simulated_electrons_per_pixel


def plan_units(preset: DatasetPreset, device: str, simulator: str) -> list[WorkUnit]:
    """All work units of a dataset, shards first (in order), then the named cases."""
    units = []
    for shard in range(preset.n_shards):
        first = shard * preset.shard_size
        units.append(
            WorkUnit(
                "shard", shard, fmt.shard_name(shard), first,
                min(preset.shard_size, preset.n_geometries - first),
                derive_seed(preset.seed, STREAM_SHARD_SIMULATION, shard), preset, device, simulator,
            )
        )
    if preset.cases or preset.dose_study_electrons_per_pixel:
        from datasets.cases import get_case

        n_case_samples = sum(len(get_case(name)) for name in preset.cases) * preset.case_repeats
        if preset.dose_study_electrons_per_pixel:  # counted in primaries of the simulated dose
            n_case_samples += round((len(dose_study_test_ids(preset)) + sum(len(get_case(n)) for n in preset.cases))
                                    * preset.dose_study_electrons_per_pixel / preset.simulated_electrons_per_pixel)
        units.append(WorkUnit("cases", 0, fmt.CASES_NAME, 0, n_case_samples, 0, preset, device, simulator))
    return units


def dose_study_test_ids(preset: DatasetPreset) -> list[str]:
    """The test samples simulated again at the dose study's dose: the first
    ``dose_study_test_samples`` of the test split (a pure function of the preset, as the split)."""
    if not preset.dose_study_electrons_per_pixel:
        return []
    ids = [fmt.sample_id(i) for i in range(preset.n_geometries)]
    test = make_splits(ids, preset.test_fraction, preset.val_fraction, preset.seed)["test"]
    return test[: preset.dose_study_test_samples]


# ----------------------------------------------------------------------------------------------
# Worker side

#: the GPU of this worker process (set by the pool initialiser), else the unit's device
WORKER_DEVICE: dict[str, str | None] = {"device": None}


def load_simulator(name: str | ModuleType | None = None) -> ModuleType:
    """The simulator module: ``name``, else ``$BSE_DATASET_SIMULATOR``, else ``datasets.simulate``."""
    if isinstance(name, ModuleType):
        module = name
    else:
        module = importlib.import_module(name or os.environ.get(SIMULATOR_ENV) or DEFAULT_SIMULATOR)
    for attribute in ("simulate_stacks", "SIMULATOR_VERSION"):
        if not hasattr(module, attribute):
            raise TypeError(f"simulator module {module.__name__!r} has no {attribute}")
    return module


def physics_config(simulator: ModuleType, preset: DatasetPreset):
    """``PhysicsConfig`` of the preset's physics preset and model names (the simulator's defaults
    where None); a simulator's own config class gets the model fields it declares."""
    config_class = getattr(simulator, "PhysicsConfig", None)
    if config_class is None:
        from datasets.physics import PhysicsConfig as config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    names = {f: getattr(preset, f) for f in ("elastic", "stopping", "inelastic", "barrier")
             if getattr(preset, f) is not None and f in fields}
    if preset.physics is not None and hasattr(config_class, "preset"):
        return config_class.preset(preset.physics, **names)
    return config_class(**names)


def _simulate(simulator, geometries: np.ndarray, seed: int, unit: WorkUnit,
              simulated_electrons_per_pixel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    preset = unit.preset
    stacks = simulator.simulate_stacks(
        geometries,
        energies_keV=preset.energies_keV,
        simulated_electrons_per_pixel=simulated_electrons_per_pixel or preset.simulated_electrons_per_pixel,
        seed=seed,
        device=WORKER_DEVICE["device"] or unit.device,
        physics=physics_config(simulator, preset),
        cutoff_eV=preset.cutoff_eV,
        progress=False,
    )
    bse = np.stack([stack.bse for stack in stacks]).astype(np.float32)
    counts = None if stacks[0].counts is None else np.stack([stack.counts for stack in stacks])
    return bse, counts


def _shard_arrays(simulator, unit: WorkUnit) -> fmt.SampleArrays:
    from datasets.geometry import random_geometry

    indices = range(unit.first_index, unit.first_index + unit.n_samples)
    seeds = [derive_seed(unit.preset.seed, STREAM_GEOMETRY, i) for i in indices]
    drawn = [random_geometry(seed) for seed in seeds]
    geometries = np.stack([geometry for geometry, _ in drawn])
    bse, counts = _simulate(simulator, geometries, unit.simulation_seed, unit)
    return fmt.SampleArrays(
        sample_ids=[fmt.sample_id(i) for i in indices],
        bse=bse,
        counts=counts,
        label=np.stack([block_labels(g) for g in geometries]),
        geometry=geometries,
        params=[params for _, params in drawn],
        seeds=np.asarray(seeds, dtype=np.uint64),
    )


def _case_group(simulator, unit: WorkUnit, case_index: int, name: str) -> tuple[fmt.SampleArrays, dict]:
    """One named case simulated ``case_repeats`` times, and its group attributes."""
    from datasets.cases import get_case
    from datasets.sample_ids import repeat_id

    samples, repeats, seed = get_case(name), unit.preset.case_repeats, unit.preset.seed
    geometries = np.stack([sample.geometry for sample in samples])
    # repeat 0 keeps the seed of a dataset without repeats; repeat r its own stream item
    seeds = [derive_seed(seed, STREAM_CASE_SIMULATION, case_index)]
    seeds += [derive_seed(seed, STREAM_CASE_REPEAT, case_index * 10_000 + r) for r in range(1, repeats)]
    simulated = [_simulate(simulator, geometries, s, unit) for s in seeds]
    arrays = fmt.SampleArrays(
        sample_ids=[repeat_id(sample.name, r) for r in range(repeats) for sample in samples],
        bse=np.concatenate([bse for bse, _ in simulated]),
        counts=None if simulated[0][1] is None else np.concatenate([counts for _, counts in simulated]),
        label=np.tile(np.stack([sample.label for sample in samples]), (repeats, 1, 1, 1)),
        geometry=np.tile(geometries, (repeats, 1, 1, 1)),
        params=[{**dict(sample.params), **({"repeat": r} if r else {})} for r in range(repeats) for sample in samples],
    )
    attrs = {"simulation_seed": seeds[0]}
    if repeats > 1:
        attrs["repeat_seeds"] = np.asarray(seeds, dtype=np.uint64)
    return arrays, attrs


def _dose_study_groups(simulator, unit: WorkUnit) -> dict:
    """``dose-study:test`` and ``dose-study:<case>`` groups simulated at the dose study's dose."""
    from datasets.cases import get_case
    from datasets.geometry import random_geometry

    preset, top = unit.preset, unit.preset.dose_study_electrons_per_pixel
    groups = {}
    test_ids = dose_study_test_ids(preset)
    sources = []
    if test_ids:
        drawn = [random_geometry(derive_seed(preset.seed, STREAM_GEOMETRY, int(sid[1:]))) for sid in test_ids]
        sources.append(("test", test_ids, np.stack([g for g, _ in drawn]), [p for _, p in drawn]))
    for name in preset.cases:
        samples = get_case(name)
        sources.append((name, [s.name for s in samples], np.stack([s.geometry for s in samples]),
                        [dict(s.params) for s in samples]))
    for index, (name, ids, geometries, params) in enumerate(sources):
        seed = derive_seed(preset.seed, STREAM_DOSE_STUDY, index)
        bse, counts = _simulate(simulator, geometries, seed, unit, simulated_electrons_per_pixel=top)
        arrays = fmt.SampleArrays(sample_ids=ids, bse=bse, counts=counts,
                                  label=np.stack([block_labels(g) for g in geometries]),
                                  geometry=geometries, params=params)
        # file format: the group attribute ``electrons_per_pixel`` is the group's simulated dose
        groups[f"{fmt.DOSE_STUDY_PREFIX}{name}"] = (arrays, {"simulation_seed": seed, "electrons_per_pixel": top})
    return groups


def run_unit(unit: WorkUnit):
    """Simulate one unit; returns ``(unit, SampleArrays)`` or ``(unit, {case: (SampleArrays, attrs)})``."""
    simulator = load_simulator(unit.simulator)
    if unit.kind == "shard":
        return unit, _shard_arrays(simulator, unit)
    cases = {name: _case_group(simulator, unit, index, name) for index, name in enumerate(unit.preset.cases)}
    if unit.preset.dose_study_electrons_per_pixel:
        cases.update(_dose_study_groups(simulator, unit))
    return unit, cases
