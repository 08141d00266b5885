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

Level ``ideal`` (the stored stacks) is the starting point of the image degradations' curves (value
0); level ``resimulated`` (the ideal acquisition simulated again with the same random streams as
the simulated levels) is the starting point of the probe and detector curves, so that their
differences are the probe's or the detector's alone, not a fresh draw of the shot noise. A level's
name is what result rows record in their ``acquisition`` column (``ideal`` for every other case).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datasets.errors import look_up

#: the ``acquisition`` column of every row not read under a degradation
IDEAL = "ideal"
#: the baseline of the simulated levels: the ideal acquisition simulated again (same random streams)
RESIMULATED = "resimulated"


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

    levels = [RealismLevel(IDEAL, IDEAL, 0.0, "", "ideal", description="the paper's ideal acquisition"),
              RealismLevel(RESIMULATED, IDEAL, 0.0, "", "simulation", {},
                           "the ideal acquisition simulated again: the simulated levels' baseline")]
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
    """Every level in plot order: ``ideal``, ``resimulated``, then each degradation's levels by
    increasing value."""
    return _levels()


def baseline(degradation: str) -> str:
    """The level a degradation's curve starts from: ``resimulated`` for the simulated ones (probe,
    detector), ``ideal`` for the image ones."""
    kinds = {level.kind for level in _levels() if level.degradation == degradation}
    return RESIMULATED if kinds == {"simulation"} else IDEAL


def realism_level(name: str) -> RealismLevel:
    """The level called ``name``; the error lists the known ones."""
    return look_up("realism level", name, {level.name: level for level in _levels()})


# ------------------------------------------------------------------------------------------ augmentation
#: training with the image degradations as augmentation (``TrainSettings.acquisition_augment``)
AUGMENTATIONS = ("realism",)
#: each image degradation is applied to a training sample with this probability
AUGMENT_PROBABILITY = 0.5
AUGMENT_CODE = 0xA06


def _strongest_image_levels() -> dict:
    """Degradation -> its strongest level's operator (``datasets.acquisition.DEGRADATIONS``)."""
    from datasets.acquisition import DEGRADATIONS

    return {name: list(table.values())[-1] for name, table in DEGRADATIONS.items()}


def augmentation_record(name: str) -> dict:
    """What ``name`` augments with, for a model's ``training_data`` (``method.json``)."""
    look_up("acquisition augmentation", name, dict.fromkeys(AUGMENTATIONS))
    largest_probe_nm = max(level.value for level in _levels() if level.degradation == "probe")
    return {"name": name, "probability": AUGMENT_PROBABILITY,
            "up_to": {"probe_blur": {"fwhm_nm": largest_probe_nm},
                      **{degradation: op.describe() for degradation, op in _strongest_image_levels().items()}}}


def probe_blur(stack, fwhm_nm: float, pixel_nm: float = 1.0) -> np.ndarray:
    """A stack (E, H, W) of point-beam images as a Gaussian probe of FWHM ``fwhm_nm`` would see it:
    each image convolved with the probe's profile, ``sigma = FWHM / (2 sqrt(2 ln 2)) / pixel``,
    mirrored at the borders (the scene's mirror walls). Exact for the expected yields when the
    point-beam image is known everywhere (the probe image is the point image averaged over the
    probe's entry points: ``tests/test_probe_detector.py`` checks it through the kernel); here it is
    known at pixel centres only, and the shot noise is smoothed too (a real probe image keeps its
    full shot noise): an approximation for augmentation, measured against simulated probes by the
    realism case."""
    from scipy.ndimage import gaussian_filter

    sigma = float(fwhm_nm) / (2.0 * np.sqrt(2.0 * np.log(2.0))) / float(pixel_nm)
    stack = np.asarray(stack, dtype=np.float64)
    return stack.copy() if sigma <= 0 else gaussian_filter(stack, sigma=(0.0, sigma, sigma), mode="reflect",
                                                           truncate=4.0)


def augment_image_degradations(bse, seed: int) -> np.ndarray:
    """Training stacks (N, E, H, W) each degraded by a random composition of the realism study's
    degradations that can be applied to an ideal stack: a Gaussian probe (:func:`probe_blur`, FWHM
    up to the study's largest, 3 nm), then drift, gain noise, readout noise and brightness/contrast
    (``datasets.acquisition``), each with probability :data:`AUGMENT_PROBABILITY`, at a strength
    drawn uniformly between none and the study's strongest level (probe FWHM, drift amplitude,
    gain spread, readout sigma, contrast/offset spread scaled by ``u ~ U(0, 1)``). Sample ``n``
    draws from ``SeedSequence([seed, n, code])``."""
    from datasets.acquisition import Acquisition, BrightnessContrast, Drift, GainNoise, ReadoutNoise

    array = np.asarray(bse, dtype=np.float64)
    if array.ndim != 4:
        raise ValueError(f"augmentation takes a batch (N, E, H, W), got shape {array.shape}")
    strongest = _strongest_image_levels()
    out = np.empty(array.shape, dtype=np.float32)
    largest_probe_nm = max(level.value for level in _levels() if level.degradation == "probe")
    for n, stack in enumerate(array):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), n, AUGMENT_CODE]))
        on = rng.random(4) < AUGMENT_PROBABILITY
        u = rng.random(4)
        probe_on, probe_u = rng.random() < AUGMENT_PROBABILITY, rng.random()  # drawn after the others
        if probe_on:
            stack = probe_blur(stack, probe_u * largest_probe_nm)
        ops = []
        if on[0]:
            ops.append(Drift(u[0] * strongest["drift"].amplitude_nm, strongest["drift"].pixel_nm))
        if on[1]:
            ops.append(GainNoise(u[1] * strongest["gain_noise"].relative_sigma))
        if on[2]:
            ops.append(ReadoutNoise(u[2] * strongest["readout_noise"].sigma))
        if on[3]:
            g = u[3] * (strongest["brightness_contrast"].gain_range[1] - 1.0)
            ops.append(BrightnessContrast((1 - g, 1 + g), (-g / 5, g / 5)))
        out[n] = Acquisition(ops)(stack, seed=int(rng.integers(2**31)), index=0) if ops else stack
    return out
