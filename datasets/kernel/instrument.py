"""The microscope around the transport: the probe that starts a primary and the detector that
scores an electron leaving the top plane (:func:`probe_entry`, :func:`detector_response`)."""

from __future__ import annotations

import math

import numpy as np

from datasets.kernel.build import device_function
from datasets.kernel.layout import (
    DETECTOR_ANNULAR,
    DETECTOR_PLANE,
    DETECTOR_WINDOW,
    P_DET_HIGH,
    P_DET_LOW,
    P_DET_THRESHOLD_EV,
    P_DET_WINDOW_EV,
    P_DETECTOR,
    WEIGHT_UNIT,
)
from datasets.kernel.rng import PROBE_SALT, mix64, uniform_pair

TWO_PI = 2.0 * math.pi


@device_function
def probe_entry(key, x, y, energy, sigma_nm, spread_eV):
    """A primary's entry point (nm) and energy (eV) for a beam aimed at (x, y) with energy E0.

    Gaussian probe: ``x' = x + sigma r cos(2 pi u2)``, ``y' = y + sigma r sin(2 pi u2)`` with
    ``r = sqrt(-2 ln u1)`` (Box-Muller, Box and Muller 1958): a 2-D normal of standard deviation
    ``sigma = FWHM / (2 sqrt(2 ln 2))`` per axis. Energy spread: ``E = E0 + s sqrt(-2 ln u3)
    cos(2 pi u4)``. The draws come from the primary's probe stream ``mix64(key ^ PROBE_SALT)``
    (counters 0 and 1) and are made only when ``sigma_nm`` or ``spread_eV`` is positive.
    Returns ``(x', y', E)``.
    """
    if sigma_nm > 0.0 or spread_eV > 0.0:
        probe_key = mix64(key ^ PROBE_SALT)
        if sigma_nm > 0.0:
            u1, u2 = uniform_pair(probe_key, 0)
            r = sigma_nm * math.sqrt(-2.0 * math.log(u1))
            x += r * math.cos(TWO_PI * u2)
            y += r * math.sin(TWO_PI * u2)
        if spread_eV > 0.0:
            u3, u4 = uniform_pair(probe_key, 1)
            energy += spread_eV * math.sqrt(-2.0 * math.log(u3)) * math.cos(TWO_PI * u4)
    return x, y, energy


@device_function
def exit_sin_takeoff(energy_eV, uz, barrier_eV):
    """Sine of the take-off angle (above the surface) of an electron leaving the top plane.

    Inside, the electron moves up (``uz < 0``) with kinetic energy ``E + U``; crossing the
    inner-potential step keeps the lateral momentum and lowers the normal energy by ``U``, so
    outside ``cos(polar) = sin(take-off) = sqrt(((E + U) uz^2 - U) / E)`` (``U = 0``: ``|uz|``).
    """
    normal = (energy_eV + barrier_eV) * uz * uz - barrier_eV
    return math.sqrt(max(normal, 0.0) / energy_eV)


@device_function
def detector_response(params, energy_eV, sin_takeoff, beam_eV):
    """The tally increment of an electron leaving the top plane with energy E (eV) above the cutoff
    at a take-off angle of sine ``sin_takeoff`` (:func:`exit_sin_takeoff`).

    ``params[P_DETECTOR]``: the plane counts 1; the energy filter counts 1 when ``E >= E0 - dE``
    (``E0`` the beam's nominal energy); the annular diode counts ``w = (E - E_t) / (E0 - E_t)`` for
    ``E > E_t`` when ``sin(take-off)`` lies in ``[P_DET_LOW, P_DET_HIGH]``, so an electron at the
    beam energy counts 1 (a diode's signal is the electron-hole pairs its energy above the dead
    layer's loss makes). Weighted counts are returned as the integer ``round(w * WEIGHT_UNIT)``.
    """
    kind = params[P_DETECTOR]
    if kind == DETECTOR_PLANE:
        return np.int64(1)
    if kind == DETECTOR_WINDOW:
        return np.int64(1) if energy_eV >= beam_eV - params[P_DET_WINDOW_EV] else np.int64(0)
    if kind == DETECTOR_ANNULAR:
        threshold = params[P_DET_THRESHOLD_EV]
        if sin_takeoff < params[P_DET_LOW] or sin_takeoff > params[P_DET_HIGH] or energy_eV <= threshold:
            return np.int64(0)
        return np.int64(math.floor((energy_eV - threshold) / (beam_eV - threshold) * WEIGHT_UNIT + 0.5))
    return np.int64(0)
