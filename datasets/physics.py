"""The physics of a simulation, chosen by name: :class:`PhysicsConfig` and its presets.

Four fields, each a model name: ``elastic`` and ``stopping`` (:mod:`datasets.cross_sections`),
``inelastic`` (:mod:`datasets.inelastic_models`) and ``barrier`` (:data:`BARRIER_MODELS`).
:class:`~datasets.physics_tables.PhysicsTables` turns a config into the kernel's tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from datasets.cross_sections import ELASTIC_MODELS, STOPPING_MODELS, ElasticModel, StoppingModel
from datasets.errors import UsageError, look_up
from datasets.inelastic_models import INELASTIC_MODELS, InelasticModel

#: Surface barrier models: ``none`` (electrons leave unchanged) or ``step`` (the inner-potential
#: step U = E_F + phi with quantum-mechanical transmission; :func:`datasets.kernel.flight.barrier_transmits`).
#: ``inner-potential``: the same step with U from the band structure as cstool defines it
#: (:class:`datasets.materials.BandStructure`: Si 12.44 eV, Cu 11.53 eV). Refraction (the normal
#: momentum scaled on transmission) is not simulated: in the kernel's slab scenes an electron
#: that crosses the top plane is detected and one that crosses the bottom plane reaches the
#: terminator, so its direction afterwards changes no count; Si/Cu interfaces inside the slab
#: are not barriers (|dU| = 0.9 eV).
BARRIER_MODELS: dict[str, str] = {
    "none": "no surface barrier",
    "step": "inner-potential step U = E_F + phi, quantum transmission T = 4kk'/(k+k')^2 "
            "(Shimizu and Ding, Rep. Prog. Phys. 55, 487 (1992); Kieft and Bosch, J. Phys. D 41, 215310 (2008))",
    "inner-potential": "inner-potential step with cstool's band-structure U (Si: valence + gap + affinity = 12.44 eV; "
                       "Cu: Fermi + work function = 11.53 eV), quantum transmission T = 4kk'/(k+k')^2",
}


#: The fields of a physics choice, as stored in dataset metadata.
PHYSICS_FIELDS = ("elastic", "stopping", "inelastic", "barrier")
#: Named physics presets (``--physics NAME``): model names for each field.
PHYSICS_PRESETS: dict[str, dict[str, str]] = {
    "csda": {"elastic": "browning", "stopping": "joyluo", "inelastic": "none", "barrier": "none"},
    "nebula-like": {"elastic": "browning", "stopping": "tabulated", "inelastic": "moller-shells", "barrier": "step"},
    "nebula-penn": {"elastic": "mott", "stopping": "none", "inelastic": "penn", "barrier": "inner-potential"},
    "nebula-penn-mixed": {"elastic": "mott", "stopping": "penn", "inelastic": "penn-mixed", "barrier": "inner-potential"},
}
#: The default: Nebula's physics with the soft Penn losses continuous (``compare-nebula``: as close
#: to Nebula's stacks as ``nebula-penn``, at 0.85x the speed of ``nebula-like``; docs/simulator.md).
DEFAULT_PHYSICS = "nebula-penn-mixed"


@dataclass(frozen=True)
class PhysicsConfig:
    """Choice of physics models by name (see module docstring); the default is the preset
    ``DEFAULT_PHYSICS``, ``nebula-penn-mixed`` (the physics that best reproduces Nebula's stacks
    of the paper's scene per second of simulation, ``python -m datasets compare-nebula``; the
    README's table). ``nebula-penn`` is Nebula's own physics: its Mott tables, the full-Penn
    inelastic model (every loss discrete, :mod:`datasets.penn`) and cstool's inner potential;
    ``nebula-penn-mixed`` the same with the losses that cannot make a detectable secondary
    continuous (``penn-mixed`` + ``penn`` stopping), about 2x faster. ``nebula-like`` (the default
    before) has Browning's elastic cross section, tabulated stopping and Moller hard collisions;
    ``csda`` is the fastest physics: single elastic scattering with continuous slowing down, no
    secondaries, no barrier (the one inside every measured backscatter band).
    """

    elastic: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["elastic"]
    stopping: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["stopping"]
    inelastic: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["inelastic"]
    barrier: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["barrier"]

    def __post_init__(self):
        for field, known in (("elastic", ELASTIC_MODELS), ("stopping", STOPPING_MODELS),
                             ("inelastic", INELASTIC_MODELS), ("barrier", BARRIER_MODELS)):
            look_up(f"{field} model", getattr(self, field), known)
        if (self.inelastic == "penn") != (self.stopping == "none"):
            raise UsageError(f"the 'penn' inelastic model carries every energy loss and needs '--stopping none', and "
                             f"'none' stopping needs 'penn'; got inelastic '{self.inelastic}' with stopping "
                             f"'{self.stopping}'")
        if self.inelastic == "penn-mixed" and self.stopping != "penn":
            raise UsageError(f"the 'penn-mixed' inelastic model splits the full-Penn stopping power and needs "
                             f"'--stopping penn'; got stopping '{self.stopping}'")

    @classmethod
    def preset(cls, name: str, **overrides) -> PhysicsConfig:
        """A named preset (``csda``, ``nebula-like``, ``nebula-penn``, ``nebula-penn-mixed``), with single
        models overridden by name."""
        models = look_up("physics preset", name, PHYSICS_PRESETS)
        return cls(**{**models, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_record(cls, record: dict | None) -> PhysicsConfig:
        """The config of a stored ``describe()`` or ``names()`` dict (other keys ignored; a field
        it lacks takes the default model)."""
        record = dict(record or {})
        return cls(**{k: record[k] for k in PHYSICS_FIELDS if k in record})

    def names(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in PHYSICS_FIELDS}

    def label(self) -> str:
        for name, models in PHYSICS_PRESETS.items():
            if models == self.names():
                return name
        return "+".join(self.names().values())

    def elastic_model(self) -> ElasticModel:
        return ELASTIC_MODELS[self.elastic]()

    def stopping_model(self) -> StoppingModel:
        return STOPPING_MODELS[self.stopping]()

    def inelastic_model(self) -> InelasticModel:
        return INELASTIC_MODELS[self.inelastic]()

    def describe(self) -> dict:
        elastic, stopping, inelastic = self.elastic_model(), self.stopping_model(), self.inelastic_model()
        return {
            **asdict(self),
            "label": self.label(),
            "elastic_version": elastic.version,
            "elastic_reference": elastic.reference,
            "stopping_version": stopping.version,
            "stopping_reference": stopping.reference,
            "inelastic_version": inelastic.version,
            "inelastic_reference": inelastic.reference,
            "barrier_reference": BARRIER_MODELS[self.barrier],
        }
