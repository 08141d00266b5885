"""The realism study's levels: how far from the paper's ideal acquisition each case is read.

The benchmark's ``realism`` case scores every method (trained on ideal data) on the same
geometries read under one degradation at a time, at 3-4 levels each (paper, open problem 1:
"actual SEM BSE images may contain additional noise, system-specific aberrations, or unmodeled
physical effects"). Two kinds of level:

- simulated (``kind == "simulation"``): the geometries simulated again with a Gaussian probe of
  the given FWHM (Reimer, *Scanning Electron Microscopy*, 2nd ed., sec. 2.1: 0.5-3 nm at
  0.5-10 keV for field-emission SEMs) or another detector (:mod:`datasets.detectors`): an annular
  solid-state diode (take-off 15-75 deg, response proportional to the energy) or a low-loss
  energy filter (a retarding grid passing electrons that lost at most 300 eV: surface-sensitive
  at high beam energies, nearly every backscattered electron at 0.5 keV);
- image (``kind == "image"``): the stored ideal stacks degraded after the simulation by one
  operator of :mod:`datasets.acquisition` (drift, gain noise, readout noise, brightness/contrast;
  the levels of ``datasets.acquisition.DEGRADATIONS``, their values and citations there).

Level ``ideal`` is the shared starting point of every degradation's curve (value 0). A level's
name is what result rows record in their ``acquisition`` column (``ideal`` for every other case).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets.errors import look_up

#: the ``acquisition`` column of every row not read under a degradation
IDEAL = "ideal"


@dataclass(frozen=True)
class RealismLevel:
    """One level: ``name`` (the rows' ``acquisition``), the ``degradation`` it belongs to, its
    ``value`` in ``unit`` on the degradation's axis, how it is made (``kind``: ``ideal``,
    ``simulation`` with ``simulate`` keywords of ``datasets.simulate.simulate_stacks``, or
    ``image`` with the ``datasets.acquisition.LEVELS`` operator of the same name)."""

    name: str
    degradation: str
    value: float
    unit: str
    kind: str
    simulate: dict = field(default_factory=dict)
    description: str = ""


#: degradation -> axis label of its figure panel (plot order)
DEGRADATION_AXES = {
    "probe": "probe FWHM (nm)",
    "detector": "detector",
    "drift": "drift RMS (nm)",
    "gain_noise": "gain spread (%)",
    "readout_noise": "readout sigma (yield)",
    "brightness_contrast": "brightness/contrast spread (%)",
}

#: the low-loss filter's energy window (eV below the beam energy)
LOW_LOSS_WINDOW_EV = 300.0


def _levels() -> list[RealismLevel]:
    from datasets.acquisition import DEGRADATIONS

    levels = [RealismLevel(IDEAL, IDEAL, 0.0, "", "ideal", description="the paper's ideal acquisition")]
    levels += [RealismLevel(f"probe-{f:g}nm", "probe", f, "nm", "simulation", {"probe_fwhm_nm": f},
                            f"Gaussian probe of FWHM {f:g} nm") for f in (0.5, 1.0, 2.0, 3.0)]
    levels += [
        RealismLevel("detector-annular", "detector", 1.0, "", "simulation",
                     {"detector": {"kind": "annular", "takeoff_min_deg": 15.0, "takeoff_max_deg": 75.0,
                                   "threshold_eV": 0.0}},
                     "annular diode, take-off 15-75 deg, response proportional to the energy"),
        RealismLevel("detector-lowloss", "detector", 2.0, "", "simulation",
                     {"detector": {"kind": "window", "window_eV": LOW_LOSS_WINDOW_EV}},
                     f"low-loss filter: electrons that lost at most {LOW_LOSS_WINDOW_EV:g} eV"),
    ]
    values = {"drift": lambda op: op.amplitude_nm, "gain_noise": lambda op: 100 * op.relative_sigma,
              "readout_noise": lambda op: op.sigma, "brightness_contrast": lambda op: 100 * (op.gain_range[1] - 1)}
    units = {"drift": "nm", "gain_noise": "%", "readout_noise": "", "brightness_contrast": "%"}
    for degradation, table in DEGRADATIONS.items():
        for name, op in table.items():
            levels.append(RealismLevel(name, degradation, round(float(values[degradation](op)), 6),
                                       units[degradation], "image", description=repr(op)))
    return levels


def realism_levels() -> list[RealismLevel]:
    """Every level in plot order: ``ideal``, then each degradation's levels by increasing value."""
    return _levels()


def realism_level(name: str) -> RealismLevel:
    """The level called ``name``; the error lists the known ones."""
    return look_up("realism level", name, {level.name: level for level in _levels()})
