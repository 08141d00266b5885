"""Dataset presets: how many random geometries, how many electrons, which splits.

Four presets are defined (``DATASET_PRESETS``):

- ``smoke``: 8 geometries at 2 electrons per pixel; builds in seconds, for tests and CI. Its
  images are far too noisy to train on.
- ``quick``: sized to build on a 2-core CPU in a few minutes with the fused kernel (~2.6e6
  primaries/s) and still train the small networks (``QUICK_N_GEOMETRIES`` x
  ``QUICK_ELECTRONS_PER_PIXEL``: 4.8e8 primaries; the design study, README, chose it over 500 x
  120 and 250 x 240 read at 60 e-/pixel). A larger held-out share (10 %) than the paper keeps the
  test metric stable at this size. The named cases are simulated 5 times, and 30 test geometries
  plus the named ones once more at 1000 e-/pixel for the dose study.
- ``standard``: the quick design at four times the geometries (``STANDARD_N_GEOMETRIES``; 3,240
  training samples), for a workstation run of about 2 hours on 2 cores: the scaling study
  (docs/studies.md) found both networks still gaining from N = 1,000 to 4,000 at 60 e-/pixel.
- ``paper``: the paper's dataset (section II.A): 10,000 random geometries, 20 energies
  (0.5-10 keV), 1,000 electrons per pixel, 2 % held out as the test set, and 5 % of the rest
  carved out as a validation set for model selection (the paper tuned on its test set; we do not).

Every preset also simulates the named test cases (nanocube, nanowire) with the same settings.
Any field can be overridden: ``DATASET_PRESETS["quick"].with_overrides(n_geometries=500)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from datasets.errors import look_up
from datasets.scene import DEFAULT_CUTOFF_EV, DEFAULT_ENERGIES_KEV

#: Size of the ``quick`` preset (README, "Datasets on disk"), kept by the design study (README):
#: at this simulation budget more geometries beat more electrons per geometry.
QUICK_N_GEOMETRIES = 1000
QUICK_ELECTRONS_PER_PIXEL = 60
#: independent simulations of each named-case geometry (mean and sd per case sample in the report)
QUICK_CASE_REPEATS = 5
#: test geometries simulated again at 1000 e-/pixel for the dose study (with the nine named ones)
QUICK_DOSE_STUDY_TEST_SAMPLES = 30
#: size of the ``standard`` preset: the scaling study's N = 4,000 point, split like ``quick``
STANDARD_N_GEOMETRIES = 4000


@dataclass(frozen=True)
class DatasetPreset:
    """Everything that decides the content of a dataset (besides the simulator and device).

    ``energies_keV``: beam energies of each stack; ``simulated_electrons_per_pixel``: primaries
    simulated per pixel and energy; ``cutoff_eV``: detector energy threshold; ``test_fraction``: share of all samples
    held out for testing; ``val_fraction``: share of the remaining samples used for validation;
    ``shard_size``: samples per shard file (the unit of parallel work and of resumption);
    ``seed``: dataset seed from which every geometry and simulation seed is derived (and the
    thinning to ``read_electrons_per_pixel``);
    ``cases``: named test cases simulated alongside; ``physics``: a physics preset of
    ``datasets.physics.PHYSICS_PRESETS`` (``None``: the simulator's default, ``nebula-penn-mixed``, the
    physics that best reproduces Nebula's stacks); ``elastic``/``stopping``/``inelastic``/``barrier``:
    single models overriding the preset's (``None``: the preset's).
    """

    name: str
    n_geometries: int
    simulated_electrons_per_pixel: int
    energies_keV: tuple[float, ...] = DEFAULT_ENERGIES_KEV
    cutoff_eV: float = DEFAULT_CUTOFF_EV
    test_fraction: float = 0.02
    val_fraction: float = 0.05
    shard_size: int = 100
    seed: int = 0
    cases: tuple[str, ...] = ("nanocube", "nanowire")
    physics: str | None = None
    elastic: str | None = None
    stopping: str | None = None
    inelastic: str | None = None
    barrier: str | None = None
    #: e-/pixel the images are read at, below ``simulated_electrons_per_pixel``: validation,
    #: test and named cases are thinned once (an exact, seeded draw per sample) and training
    #: draws a fresh thinning every epoch (``datasets.dose``); None: the simulated dose
    read_electrons_per_pixel: int | None = None
    #: each named-case geometry is simulated this many times with independent seeds (repeat r > 0
    #: stored as ``<sample>@r<r>``), so the report gives a mean and spread per case sample
    case_repeats: int = 1
    #: the dose study's own data: the first ``dose_study_test_samples`` test geometries and the
    #: named cases simulated once more at this dose (e-/pixel, above the stored dose), so the
    #: ``dose`` case can thin them to 10 ... 1000 e-/pixel; None: the dose case thins the stored data
    dose_study_electrons_per_pixel: int | None = None
    dose_study_test_samples: int = 0
    description: str = ""

    def __post_init__(self):
        if int(self.n_geometries) != self.n_geometries or self.n_geometries < 1:
            raise ValueError(f"n_geometries must be a positive integer, got {self.n_geometries!r}")
        simulated = self.simulated_electrons_per_pixel
        if int(simulated) != simulated or simulated < 1:
            raise ValueError(f"simulated_electrons_per_pixel must be a positive integer, got {simulated!r}")
        if int(self.shard_size) != self.shard_size or self.shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {self.shard_size!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        energies = tuple(float(e) for e in self.energies_keV)
        if not energies or any(not math.isfinite(e) or e <= 0 for e in energies):
            raise ValueError(f"energies_keV must be finite and positive, got {list(energies)}")
        if any(b <= a for a, b in zip(energies, energies[1:])):
            raise ValueError(f"energies_keV must be strictly increasing, got {list(energies)}")
        if not math.isfinite(self.cutoff_eV) or self.cutoff_eV < 0:
            raise ValueError(f"cutoff_eV must be finite and >= 0, got {self.cutoff_eV!r}")
        for field_name in ("test_fraction", "val_fraction"):
            value = getattr(self, field_name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{field_name} must be in [0, 1), got {value!r}")
        read = self.read_electrons_per_pixel
        if read is not None:
            if int(read) != read or not 0 < read <= simulated:
                raise ValueError(f"read_electrons_per_pixel must be an integer in (0, simulated_electrons_per_pixel="
                                 f"{simulated}] e-/pixel, got {read!r}")
            object.__setattr__(self, "read_electrons_per_pixel", None if int(read) == simulated else int(read))
        if int(self.case_repeats) != self.case_repeats or self.case_repeats < 1:
            raise ValueError(f"case_repeats must be a positive integer, got {self.case_repeats!r}")
        object.__setattr__(self, "case_repeats", int(self.case_repeats))
        if self.dose_study_electrons_per_pixel is not None:
            top = self.dose_study_electrons_per_pixel
            if int(top) != top or top <= simulated:
                raise ValueError(f"dose_study_electrons_per_pixel must be an integer above "
                                 f"simulated_electrons_per_pixel={simulated}, got {top!r}")
            if int(self.dose_study_test_samples) != self.dose_study_test_samples or self.dose_study_test_samples < 0:
                raise ValueError(f"dose_study_test_samples must be a non-negative integer, got "
                                 f"{self.dose_study_test_samples!r}")
            object.__setattr__(self, "dose_study_electrons_per_pixel", int(top))
            object.__setattr__(self, "dose_study_test_samples", int(self.dose_study_test_samples))
        if isinstance(self.cases, str):
            raise TypeError(f"cases must be a sequence of case names, got the string {self.cases!r}")
        # Normalise types so that presets compare and serialise identically.
        object.__setattr__(self, "n_geometries", int(self.n_geometries))
        object.__setattr__(self, "simulated_electrons_per_pixel", int(simulated))
        object.__setattr__(self, "shard_size", int(self.shard_size))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "energies_keV", energies)
        object.__setattr__(self, "cutoff_eV", float(self.cutoff_eV))
        object.__setattr__(self, "cases", tuple(self.cases))

    @property
    def n_shards(self) -> int:
        return -(-self.n_geometries // self.shard_size)

    def with_overrides(self, **overrides) -> DatasetPreset:
        """A copy with some fields replaced; unknown field names raise ``TypeError``.

        ``None`` values are ignored, so command-line options that were not given can be passed.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown dataset preset field(s) {unknown}; known fields: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def settings(self) -> dict:
        """JSON-serialisable fields that decide the dataset content (the name and text excluded),
        in the dataset file format: it is the manifest's ``settings`` and feeds the dataset hash.

        File format: the doses are stored under the keys of :data:`SETTINGS_DOSE_KEYS`, and an
        optional field left at its unset value (``None``, or ``case_repeats`` 1) is left out, so a
        field added to the preset does not change the hash of datasets that do not use it.
        """
        fields = dataclasses.asdict(self)
        settings = {SETTINGS_DOSE_KEYS.get(key, key): value for key, value in fields.items()
                    if key not in ("name", "description")}
        settings["energies_keV"] = list(self.energies_keV)
        settings["cases"] = list(self.cases)
        if self.read_electrons_per_pixel is None:
            settings.pop(SETTINGS_DOSE_KEYS["read_electrons_per_pixel"])
        if self.case_repeats == 1:
            settings.pop("case_repeats")
        if self.dose_study_electrons_per_pixel is None:
            settings.pop("dose_study_electrons_per_pixel")
            settings.pop("dose_study_test_samples")
        return settings


#: File format: the manifest's ``settings`` keys of the preset's dose fields (field -> key).
SETTINGS_DOSE_KEYS = {"simulated_electrons_per_pixel": "electrons_per_pixel", "read_electrons_per_pixel": "dose"}


def settings_doses(settings: dict) -> tuple[int, int]:
    """``(simulated, read)`` electrons per pixel of a manifest's ``settings`` (the file format of
    :meth:`DatasetPreset.settings`; no read dose: the simulated one)."""
    simulated = int(settings[SETTINGS_DOSE_KEYS["simulated_electrons_per_pixel"]])
    return simulated, int(settings.get(SETTINGS_DOSE_KEYS["read_electrons_per_pixel"]) or simulated)


DATASET_PRESETS: dict[str, DatasetPreset] = {preset.name: preset for preset in (
    DatasetPreset("smoke", n_geometries=8, simulated_electrons_per_pixel=2, test_fraction=0.25, val_fraction=0.2,
                  shard_size=4,
                  description="8 geometries x 2 e/px: builds in seconds, for tests and CI (not for training)"),
    DatasetPreset("quick", n_geometries=QUICK_N_GEOMETRIES, simulated_electrons_per_pixel=QUICK_ELECTRONS_PER_PIXEL,
                  test_fraction=0.10, val_fraction=0.10, shard_size=50, case_repeats=QUICK_CASE_REPEATS,
                  dose_study_electrons_per_pixel=1000, dose_study_test_samples=QUICK_DOSE_STUDY_TEST_SAMPLES,
                  description="small dataset that builds on a 2-core CPU in about 7 min and trains small networks; "
                              "named cases simulated 5 times; dose-study data at 1000 e-/px"),
    DatasetPreset("standard", n_geometries=STANDARD_N_GEOMETRIES, simulated_electrons_per_pixel=QUICK_ELECTRONS_PER_PIXEL,
                  test_fraction=0.10, val_fraction=0.10, shard_size=100, case_repeats=QUICK_CASE_REPEATS,
                  dose_study_electrons_per_pixel=1000, dose_study_test_samples=QUICK_DOSE_STUDY_TEST_SAMPLES,
                  description="the quick design with 4,000 geometries (3,240 train / 360 validation / 400 test) "
                              "for a 2-core workstation: data about 55 min of the run's estimated 2 hours"),
    DatasetPreset("paper", n_geometries=10_000, simulated_electrons_per_pixel=1000, test_fraction=0.02,
                  val_fraction=0.05, shard_size=100,
                  description="the paper's dataset: 10,000 geometries x 20 energies x 1,000 e/px, 2% test"),
)}


def get_preset(name: str, **overrides) -> DatasetPreset:
    """The preset called ``name`` with optional field overrides; unknown names list the presets."""
    if isinstance(name, DatasetPreset):
        return name.with_overrides(**overrides)
    return look_up("dataset preset", name, DATASET_PRESETS).with_overrides(**overrides)


def dataset_physics(preset: DatasetPreset):
    """The ``PhysicsConfig`` a dataset preset is simulated with (its physics preset, or the
    default ``nebula-penn-mixed``, with its single-model overrides)."""
    from datasets.physics import DEFAULT_PHYSICS, PHYSICS_FIELDS, PhysicsConfig

    overrides = {f: getattr(preset, f) for f in PHYSICS_FIELDS}
    return PhysicsConfig.preset(preset.physics or DEFAULT_PHYSICS, **overrides)
