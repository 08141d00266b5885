"""Which runs to make: (method, case) pairs expanded to :class:`~benchmark.specs.RunSpec`\\ s.

``"all"`` expands to every method or case; the ``dose`` case to one run per dose level
(:meth:`RunPlanner.dose_levels`), the ``realism`` case to one run per acquisition level
(``datasets.realism``); each method to the models it is benchmarked with (the preset's
network configs; the ablation's variants). Pairs that do not apply are skipped with a note.
"""

from __future__ import annotations

import numpy as np

from benchmark.cases import (
    DOSE_CASE,
    NEBULA_CASE,
    REALISM_CASE,
    case_label,
    named_cases,
    resolve_case,
)
from benchmark.context import Context
from benchmark.errors import BenchmarkError, UsageError
from benchmark.presets import NO_CONFIG
from benchmark.specs import (
    DEFAULT_THRESHOLD_RULE,
    ModelSpec,
    RunSpec,
    method_class,
    method_names,
    network_configs,
)
from datasets.errors import look_up


class RunPlanner:
    """The runs of one benchmark (:class:`~benchmark.context.Context`)."""

    def __init__(self, context: Context):
        self.context = context

    def known_cases(self) -> list[str]:
        return named_cases(self.context.data.cases())

    def plan(self, methods, cases, config: str | None = None, threshold_rule: str = DEFAULT_THRESHOLD_RULE,
             read_doses=None, acquisitions=None) -> list[RunSpec]:
        """The runs for every (method, case) pair; ``"all"`` expands. ``read_doses``: the dose
        case's levels to run (e-/pixel; default all); ``acquisitions``: the realism case's levels
        (names of ``datasets.realism``; default all). Pairs that do not apply (``ablation`` for
        a method without variants, ``oracle`` thresholds outside MED-SEM on the paper's cases)
        are skipped with a note; an empty plan is an error."""
        from methods.binarize import THRESHOLD_RULES

        methods = expand(methods, method_names())
        for name in methods:
            method_class(name)
        look_up("threshold rule", threshold_rule, dict.fromkeys(THRESHOLD_RULES))
        resolved = self._resolve_cases(expand(cases, self.known_cases()), read_doses, acquisitions)
        specs, skipped = [], []
        if NEBULA_CASE in resolved and not self.nebula_applies():
            resolved.remove(NEBULA_CASE)
            skipped.append(f"the {NEBULA_CASE} case (the dataset's energies are not Nebula's 0.5-10 keV)")
        runs = [(c, dose, level) for c in resolved for dose in self._doses(c, read_doses)
                for level in self._acquisitions(c, acquisitions)]  # the dose and realism cases: per level
        for case, dose, level in runs:
            for name in methods:
                applies, reason = method_class(name).applies(case, threshold_rule)
                if not applies:
                    note = f"{name} on {case_label(case)} ({reason})"
                    skipped += [] if note in skipped else [note]  # once for all the dose case's levels
                    continue
                specs += [RunSpec(model, case, threshold_rule, dose, level)
                          for model in self.models_for(name, case, config)]
        for note in skipped:
            self.context.log(f"skipped: {note}")
        if not specs:
            raise BenchmarkError("nothing to run: " + "; ".join(skipped))
        return specs

    def _resolve_cases(self, cases: list[str], read_doses, acquisitions) -> list[str]:
        """The cases checked (``benchmark.cases.resolve_case``), each once; ``read_doses``
        without the dose case (``acquisitions`` without the realism case) is a usage error."""
        resolved = []
        for case in (resolve_case(c, self.context.data.cases()) for c in cases):
            if case not in resolved:
                resolved.append(case)
        if read_doses and DOSE_CASE not in resolved:
            raise UsageError(f"--read-dose picks levels of the '{DOSE_CASE}' case; add --case {DOSE_CASE}")
        if acquisitions and REALISM_CASE not in resolved:
            raise UsageError(f"--level picks levels of the '{REALISM_CASE}' case; add --case {REALISM_CASE}")
        return resolved

    @staticmethod
    def _acquisitions(case: str, acquisitions) -> list[str | None]:
        """The acquisition levels of ``case``'s runs: every level of ``datasets.realism`` (those
        named in ``acquisitions`` when given) for the realism case, ``[None]`` for the others."""
        if case != REALISM_CASE:
            return [None]
        from datasets.realism import realism_level, realism_levels

        if not acquisitions:
            return [level.name for level in realism_levels()]
        return list(dict.fromkeys(realism_level(name).name for name in acquisitions))

    def _doses(self, case: str, read_doses) -> list[int | None]:
        """The read doses of ``case``'s runs: the dose levels (those in ``read_doses`` when given)
        for the dose case, ``[None]`` (the dataset's dose) for the others."""
        if case != DOSE_CASE:
            return [None]
        levels = self.dose_levels()
        if not read_doses:
            return levels
        table = {str(level): level for level in levels}
        return list(dict.fromkeys(look_up("dose level (e-/pixel)", str(int(n)), table)
                                  for n in read_doses))

    def dose_levels(self) -> list[int]:
        """The ``dose`` case's levels: ``datasets.dose.dose_levels`` below the top dose of its
        data (the dose study's own, else the simulated dose), the dataset's own read dose (what
        every other case is read at) and the top dose."""
        from datasets.dose import dose_levels

        data = self.context.data.get()
        top = data.dose_study_electrons_per_pixel or int(data.simulated_electrons_per_pixel)
        return sorted(set(dose_levels(int(top))) | {int(data.read_electrons_per_pixel)})

    def nebula_applies(self) -> bool:
        from datasets.nebula_reference import SI_ONLY, load_reference

        ours = np.asarray(self.context.data.get().energies_keV, dtype=float)
        theirs = load_reference(SI_ONLY).energies_keV
        return ours.shape == theirs.shape and bool(np.allclose(ours, theirs))

    def models_for(self, name: str, case: str, config: str | None) -> list[ModelSpec]:
        """The models ``name`` is benchmarked with on ``case``: ``config`` (checked) or the
        preset's configs, else the smallest; every variant on the ablation case."""
        preset = self.context.preset
        known = network_configs(name)
        if not known:
            if config not in (None, NO_CONFIG):
                self.context.log(f"note: {name} has no network configs; --config {config} ignored for it")
            configs = [NO_CONFIG]
        elif config is not None:
            configs = [look_up(f"{name} config", config, {c: c for c in known})]
        elif case == "ablation":
            configs = [preset.ablation_config]
        else:
            configs = list(preset.configs.get(name) or known[:1])  # the preset's, else the smallest
        klass = method_class(name)
        if case == "ablation":
            variants = list(klass.variants)
        elif case == REALISM_CASE and preset.robust_training:  # beside each model, its robust twin
            variants = ["full", *klass.training_variants]
        else:
            variants = ["full"]
        return [ModelSpec(name, c, v) for c in configs for v in variants]


def expand(names, known: list[str]) -> list[str]:
    """``names`` (one or a list) with ``"all"`` replaced by ``known``, each once, in order."""
    names = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for name in names:
        for item in (known if name == "all" else [name]):
            if item not in out:
                out.append(item)
    return out
