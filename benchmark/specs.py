"""What a run is: a model (:class:`ModelSpec`) on a case (:class:`RunSpec`), and the method
registry's answers the benchmark asks (names, classes, network configs, code version)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from benchmark import metrics
from benchmark.cases import case_label
from benchmark.presets import NO_CONFIG
from benchmark.provenance import REPO_ROOT, imported_sources, source_hash
from datasets.errors import look_up

DEFAULT_THRESHOLD_RULE = "validation"


@dataclass(frozen=True)
class ModelSpec:
    """One model: a method, its network config (``"default"`` for MED-SEM) and ablation variant."""

    method: str
    config: str = NO_CONFIG
    variant: str = "full"

    def params(self) -> dict:
        params = {} if self.config == NO_CONFIG else {"config": self.config}
        params.update(look_up(f"{self.method} variant", self.variant, method_class(self.method).variants))
        return params

    def tag(self) -> str:
        parts = [self.method] + ([] if self.config == NO_CONFIG else [self.config])
        parts += [] if self.variant == "full" else [self.variant]
        return "-".join(parts)


@dataclass(frozen=True)
class RunSpec:
    """One run: a model on a case (see ``benchmark.cases``) with a threshold rule.

    ``read_electrons_per_pixel``: the dose (e-/pixel) the ``dose`` case's data are thinned to
    for this run; ``None`` for every other case (they are read at the dataset's dose).
    ``acquisition``: the ``realism`` case's level (``datasets.realism``); ``None`` elsewhere."""

    model: ModelSpec
    case: str
    threshold_rule: str = DEFAULT_THRESHOLD_RULE
    read_electrons_per_pixel: int | None = None
    acquisition: str | None = None

    def describe(self) -> str:
        dose = "" if self.read_electrons_per_pixel is None else f" at {self.read_electrons_per_pixel} e-/pixel"
        level = "" if self.acquisition is None else f" read {self.acquisition}"
        return f"{self.model.tag()} on {case_label(self.case)}{dose}{level} ({self.threshold_rule} threshold)"


def method_names() -> list[str]:
    """Registered method names, plugins included (``methods.registry``)."""
    from methods.registry import available

    return available()


def method_class(name: str):
    """The method class registered as ``name``; ``UnknownNameError`` lists the known names."""
    from methods.registry import get

    return get(name)


def network_configs(name: str) -> list[str]:
    """The network configs a method declares (``Method.configs()``), [] for none."""
    return list(method_class(name).configs())


def code_version(name: str) -> str:
    """Hash of the sources a method's results depend on (``provenance.source_hash``).

    It covers the module of each class in the method's hierarchy down to ``Method`` (a plugin's
    own file, wherever it lives), every module of ``methods/`` and ``datasets/`` those modules
    import, transitively (``provenance.imported_sources``, read from their syntax trees), and
    what scores every run: ``methods/binarize.py`` and ``benchmark/metrics.py`` with their
    imports. The registry (``methods/registry.py``) and modules the method does not import are
    not part of it: registering a method or editing another method reruns nothing else.
    """
    from methods.base import Method

    klass = method_class(name)
    hierarchy = klass.__mro__[: klass.__mro__.index(Method) + 1]
    files = [Path(sys.modules[cls.__module__].__file__) for cls in hierarchy
             if getattr(sys.modules.get(cls.__module__), "__file__", None)]
    files += [REPO_ROOT / "methods" / "binarize.py", Path(metrics.__file__)]
    return source_hash(*imported_sources(*files))
