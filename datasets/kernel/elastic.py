"""Elastic scattering angles: Browning, screened Rutherford and tabulated Mott (ELSEPA)."""

from __future__ import annotations

import math

from datasets.kernel.build import device_function
from datasets.kernel.layout import ELASTIC_MOTT, ELASTIC_RUTHERFORD, P_ICDF_INV_DLOG, P_ICDF_LOG_E0


@device_function
def screened_rutherford_cos_theta(alpha, u):
    """Screened Rutherford polar angle: ``cos(theta) = 1 - 2 alpha u / (1 + alpha - u)`` (Joy 1995, eq. 3.4)."""
    return 1.0 - 2.0 * alpha * u / (1.0 + alpha - u)


@device_function
def browning_cos_theta(z, energy_eV, u1, u2):
    """Browning et al. (1994): with probability ``r / (1 + r)``, ``r = 300 E/Z + Z^3/(3e5 E)``
    (E in keV), a screened Rutherford angle with ``alpha = 7e-3 / E``; otherwise isotropic."""
    z = max(z, 1.0)
    e_keV = energy_eV * 1.0e-3
    inv_e_keV = 1.0 / e_keV
    r = (300.0 / z) * e_keV + (z * z * z / 3.0e5) * inv_e_keV
    if u1 * (1.0 + r) <= r:
        return screened_rutherford_cos_theta(7.0e-3 * inv_e_keV, u2)
    return 1.0 - 2.0 * u2


@device_function
def mott_cos_theta(icdf, material, energy_eV, log_e0, inv_dlog, u1, u2):
    """Tabulated Mott (ELSEPA) angle: the inverse CDF row chosen by stochastic interpolation in
    log energy (with ``u1``), linear interpolation between the probability columns (``u2``)."""
    return tabulated_icdf(icdf, material, math.log(energy_eV), log_e0, inv_dlog, u1, u2)


@device_function
def tabulated_icdf(table, material, log_energy, log_e0, inv_dlog, u1, u2):
    """Draw from a tabulated inverse CDF ``table[material, row, column]``: rows on a log energy grid
    (``row = (ln E - log_e0) inv_dlog``), chosen by stochastic interpolation with ``u1``; columns
    at equally spaced cumulative probabilities, interpolated linearly with ``u2``."""
    n_energies = table.shape[1]
    n_columns = table.shape[2]
    k_float = min(max((log_energy - log_e0) * inv_dlog, 0.0), n_energies - 1.000001)
    row = int(math.floor(k_float))
    if u1 < k_float - row:
        row += 1
    j_float = u2 * (n_columns - 1)
    j0 = min(int(math.floor(j_float)), n_columns - 2)
    frac = j_float - j0
    lo = table[material, row, j0]
    return lo + (table[material, row, j0 + 1] - lo) * frac


@device_function
def elastic_cos_theta(tables, material, energy_eV, u1, u2):
    """cos(theta) of an elastic collision in ``material`` for the model ``tables.model``, in [-1, 1]."""
    params = tables.params
    if tables.model == ELASTIC_MOTT:
        c = mott_cos_theta(tables.icdf, material, energy_eV, params[P_ICDF_LOG_E0], params[P_ICDF_INV_DLOG], u1, u2)
    elif tables.model == ELASTIC_RUTHERFORD:
        alpha = 3.4e-3 * tables.z_of[material] ** 0.67 * 1.0e3 / energy_eV
        c = screened_rutherford_cos_theta(alpha, u2)
    else:
        c = browning_cos_theta(tables.z_of[material], energy_eV, u1, u2)
    return min(max(c, -1.0), 1.0)
