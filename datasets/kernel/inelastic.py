"""Inelastic events: Moller hard collisions and the full-Penn event (loss, momentum, secondary)."""

from __future__ import annotations

import math

from datasets.kernel.build import device_function
from datasets.kernel.elastic import tabulated_icdf
from datasets.kernel.flight import (
    azimuth_cos_sin,
    isotropic_direction,
    normalised,
    rotate_direction,
)
from datasets.kernel.layout import (
    BAND_FERMI,
    BAND_GAP,
    BAND_N_SHELLS,
    BAND_SHELLS,
    BAND_U,
    BAND_VALENCE,
    P_CUTOFF_EV,
    P_LOSS_INV_DLOG,
    P_LOSS_LOG_K0,
    P_OMEGA_INV_DLOG,
    P_OMEGA_LOG0,
    P_Q_INV_DLOG,
    P_Q_LOG0,
)
from datasets.kernel.rng import AZIMUTH_TRIES, MOLLER_TRIES, PLASMON_TRIES, uniform_pair


@device_function
def moller_energy_transfer(key, counter, energy_eV, w_cut_eV):
    """Energy transfer W (eV) of a hard collision with a free electron, W in [W_c, E/2].

    Moller's non-relativistic cross section per electron (Moller 1932; Joy 1995 ch. 6)::

        d sigma / d eps ~ 1/eps^2 + 1/(1 - eps)^2 - 1/(eps (1 - eps)),   eps = W / E

    sampled by drawing ``eps`` from ``1/eps^2`` on [eps_c, 1/2] (inverse CDF
    ``eps = eps_c / (1 - u (1 - 2 eps_c))``) and accepting with ``1 - t + t^2``, ``t = eps/(1-eps)``
    (>= 3/4, so ``MOLLER_TRIES`` tries fail with probability < 2e-5; the last try is then kept).
    """
    eps_c = w_cut_eV / energy_eV
    span = 1.0 - 2.0 * eps_c
    eps = 0.5
    for attempt in range(MOLLER_TRIES):
        u, v = uniform_pair(key, counter + attempt)
        eps = eps_c / (1.0 - u * span)
        t = eps / (1.0 - eps)
        if v <= 1.0 - t + t * t:
            break
    return eps * energy_eV


@device_function
def binary_cos_theta(energy_fraction, energy_eV):
    """Polar angle of an electron keeping ``energy_fraction`` of E after a binary collision with a
    free electron at rest: ``cos^2 theta = f (E + 2 mc^2) / (f E + 2 mc^2)`` (relativistic
    kinematics; f = (E - W)/E for the primary, W/E for the secondary)."""
    two_mc2 = 1.021998e6
    c2 = energy_fraction * (energy_eV + two_mc2) / (energy_fraction * energy_eV + two_mc2)
    return math.sqrt(min(max(c2, 0.0), 1.0))


@device_function
def log_grid_value(table, material, row, log_x, log_x0, inv_dlog):
    """``table[material, row, :]`` (on a log grid ``ln x = log_x0 + j / inv_dlog``) at ``ln x``,
    linear in ``ln x``, clamped to the grid's ends."""
    n = table.shape[2]
    t = min(max((log_x - log_x0) * inv_dlog, 0.0), n - 1.000001)
    j = int(math.floor(t))
    lo = table[material, row, j]
    return lo + (table[material, row, j + 1] - lo) * (t - j)


@device_function
def kinetic_q(kinetic_eV):
    """``hbar q / sqrt(2m)`` (sqrt eV) of an electron of kinetic energy K: ``sqrt(K (1 + K / 2mc^2))``."""
    return math.sqrt(max(kinetic_eV, 0.0) * (1.0 + kinetic_eV / 1021997.9))


@device_function
def penn_momentum(q_cdf, material, kinetic_eV, omega_eV, params, u1, u2):
    """Momentum transfer q (``hbar q / sqrt(2m)``, sqrt eV) of a loss w at kinetic energy K.

    Drawn from ``int dq/q Im[-1/eps(q, w)]`` (``q_cdf[material, w row, q column]``, cumulative
    over a log q grid) between ``q_- = q(K) - q(K - w)`` and ``q_+ = q(K) + q(K - w)``: the w row
    by stochastic interpolation (``u1``), then the cumulative value at ``u2`` of the way from
    ``q_-`` to ``q_+``, inverted by bisection along the row, linear in ln q.
    """
    n_w, n_q = q_cdf.shape[1], q_cdf.shape[2]
    w_float = min(max((math.log(omega_eV) - params[P_OMEGA_LOG0]) * params[P_OMEGA_INV_DLOG], 0.0), n_w - 1.000001)
    row = int(math.floor(w_float))
    if u1 < w_float - row:
        row += 1
    q_k = kinetic_q(kinetic_eV)
    q_rest = kinetic_q(kinetic_eV - omega_eV)
    q_lo = max(q_k - q_rest, 1.0e-30)
    q_hi = q_k + q_rest
    log_q0, inv_dlog_q = params[P_Q_LOG0], params[P_Q_INV_DLOG]
    log_lo, log_hi = math.log(q_lo), math.log(q_hi)
    c_lo = log_grid_value(q_cdf, material, row, log_lo, log_q0, inv_dlog_q)
    c_hi = log_grid_value(q_cdf, material, row, log_hi, log_q0, inv_dlog_q)
    if c_hi <= c_lo:
        return math.sqrt(q_lo * q_hi)
    target = c_lo + u2 * (c_hi - c_lo)
    # the answer lies between the grid cells of q_- and q_+: bisect there only
    lo = min(max(int(math.floor((log_lo - log_q0) * inv_dlog_q)), 0), n_q - 2)
    hi = min(max(int(math.floor((log_hi - log_q0) * inv_dlog_q)) + 1, lo + 1), n_q - 1)
    while hi - lo > 1:  # q_cdf[lo] <= target < q_cdf[hi]
        mid = (lo + hi) // 2
        if q_cdf[material, row, mid] <= target:
            lo = mid
        else:
            hi = mid
    c0 = q_cdf[material, row, lo]
    c1 = q_cdf[material, row, hi]
    frac = (target - c0) / (c1 - c0) if c1 > c0 else 0.5
    q = math.exp(log_q0 + (lo + frac) / inv_dlog_q)
    return min(max(q, q_lo), q_hi)


@device_function
def plasmon_decay_fraction(penn_key, base, f):
    """``x = E_i / w`` of the electron a decaying plasmon lifts from the Fermi sea (Nebula's model):
    density ``~ sqrt(x (x + 1))`` (initial times final free-electron density of states) on
    ``[max(0, f - 1), f]``, ``f = F / w``. For ``f < 0.1``: ``~ sqrt(x)``, ``x = f u^(2/3)``.
    Otherwise rejection from ``x + 1/2 >= sqrt(x (x + 1))`` (``PLASMON_TRIES`` tries; the last is kept)."""
    if f < 0.1:
        u, _ = uniform_pair(penn_key, base + 2)
        c = u ** (1.0 / 3.0)
        return f * c * c
    lower = max(0.0, f - 1.0)
    d1 = f - lower
    d2 = f * f - lower * lower
    alpha = d2 / (d1 + d2)
    x = f
    first = base + 4 + AZIMUTH_TRIES
    for attempt in range(PLASMON_TRIES):
        a, b = uniform_pair(penn_key, first + 2 * attempt)
        c, _ = uniform_pair(penn_key, first + 2 * attempt + 1)
        x = math.sqrt(d2 * b + lower * lower) if a < alpha else d1 * b + lower
        if c * (x + 0.5) <= math.sqrt(x * x + x):
            break
    return x


@device_function
def inner_shell_binding(band, material, omega, u):
    """Binding energy (eV) of the inner shell a loss w ionises, or -1 for the Fermi sea.

    Every electron that w can free (shells with ``B < w``, and the valence electrons) is equally
    likely, ``P(shell j) = n_j / (n_valence + sum_{B_k < w} n_k)``: the binary-encounter limit
    (w >> B) of the per-shell ionisation cross sections Nebula samples from ENDF/B-VII.1 data,
    which this approximates without them; Nebula too treats shells bound by less than 50 eV as
    the Fermi sea.
    """
    n_shells = int(band[material, BAND_N_SHELLS])
    total = band[material, BAND_VALENCE]
    for j in range(n_shells):
        if omega > band[material, BAND_SHELLS + 2 * j]:
            total += band[material, BAND_SHELLS + 2 * j + 1]
    pick = u * total - band[material, BAND_VALENCE]
    if pick < 0.0:
        return -1.0
    for j in range(n_shells):
        if omega > band[material, BAND_SHELLS + 2 * j]:
            pick -= band[material, BAND_SHELLS + 2 * j + 1]
            if pick < 0.0:
                return band[material, BAND_SHELLS + 2 * j]
    return -1.0


@device_function
def penn_event(penn_key, base, energy, ux, uy, uz, cos_phi, sin_phi, material, tables):
    """One inelastic collision of the full-Penn model, as Nebula (van Kessel and Hagen 2020) does it.

    Energies are vacuum-referenced; inside, the kinetic energy is ``K = E + U``. The loss w is
    drawn at K (:func:`tabulated_icdf` of ``ln w``, tables ``tables.loss_icdf``), at most ``K - F``. If an inner shell of
    binding B is ionised (:func:`inner_shell_binding`; Kieft and Bosch 2008): secondary of ``K_s = F + w - B`` at ``cos^2 theta =
    (B + w) / (K - F + 2B)`` plus a random part ``sqrt(B / (B + w))`` for its initial momentum,
    primary deflected by momentum conservation. Otherwise, below the gap, an optical-phonon loss
    without deflection; above it, a Fermi-sea excitation with momentum q
    (:func:`penn_momentum`), primary deflected by ``cos = (2K - w - q^2) / (2 sqrt(K (K - w)))``
    (opposite q's azimuth) and, where it could still be detected (``w + F - U`` above the
    cutoff), the secondary (Mao et al., J. Appl. Phys. 104, 114907 (2008)):
    plasmon decay (``q < sqrt(F + w) - sqrt(F)``: from the Fermi sea, isotropic,
    :func:`plasmon_decay_fraction`), a single excitation (``q < sqrt(F + w) + sqrt(F)``: the
    electron ``k_i`` from the allowed annulus of the Fermi sphere leaves along ``k_i + q``), or
    none. Returns ``(w, primary direction, secondary E (vacuum-referenced; <= 0: none), its
    direction)``.
    """
    band, loss_icdf, q_cdf, params = tables.band, tables.loss_icdf, tables.q_cdf, tables.params
    fermi = band[material, BAND_FERMI]
    u_in = band[material, BAND_U]
    kinetic = energy + u_in
    u1, u2 = uniform_pair(penn_key, base)
    omega = math.exp(tabulated_icdf(loss_icdf, material, math.log(kinetic), params[P_LOSS_LOG_K0],
                                    params[P_LOSS_INV_DLOG], u1, u2))
    omega = min(omega, kinetic - fermi)
    binding = inner_shell_binding(band, material, omega, uniform_pair(penn_key, base + 2)[1])
    if binding > 0.0:  # inner-shell ionisation
        dk = binding + omega
        cos_t = math.sqrt(min(dk / (kinetic - fermi + 2.0 * binding), 1.0))
        sx, sy, sz = rotate_direction(ux, uy, uz, cos_t, cos_phi, sin_phi)
        u5, u6 = uniform_pair(penn_key, base + 3)
        ix, iy, iz = isotropic_direction(u5, u6)
        spread = math.sqrt(binding / dk)
        sx, sy, sz = normalised(sx + spread * ix, sy + spread * iy, sz + spread * iz)
        px, py, pz = normalised(ux - cos_t * sx, uy - cos_t * sy, uz - cos_t * sz)
        return omega, px, py, pz, fermi + omega - binding - u_in, sx, sy, sz
    if omega <= band[material, BAND_GAP]:  # sub-gap loss: optical phonon
        return omega, ux, uy, uz, 0.0, 0.0, 0.0, 1.0
    u3, u4 = uniform_pair(penn_key, base + 1)
    q = penn_momentum(q_cdf, material, kinetic, omega, params, u3, u4)
    cos_p = min(max((2.0 * kinetic - omega - q * q) / (2.0 * math.sqrt(kinetic * (kinetic - omega))), -1.0), 1.0)
    px, py, pz = rotate_direction(ux, uy, uz, cos_p, -cos_phi, -sin_phi)
    if omega + fermi - u_in <= params[P_CUTOFF_EV]:  # no secondary of this loss could be detected
        return omega, px, py, pz, 0.0, 0.0, 0.0, 1.0
    k_fermi = math.sqrt(fermi)
    k_top = math.sqrt(fermi + omega)
    if q < k_top - k_fermi:  # plasmon decay
        x = plasmon_decay_fraction(penn_key, base, fermi / omega)
        u5, u6 = uniform_pair(penn_key, base + 3)
        sx, sy, sz = isotropic_direction(u5, u6)
        return omega, px, py, pz, x * omega + omega - u_in, sx, sy, sz
    if q < k_top + k_fermi:  # single excitation from the Fermi sphere
        cos_q = min(max((omega + q * q) / (2.0 * math.sqrt(kinetic) * q), -1.0), 1.0)
        qx, qy, qz = rotate_direction(ux, uy, uz, cos_q, cos_phi, sin_phi)
        c2, s2 = azimuth_cos_sin(penn_key, base + 4)
        nx, ny, nz = rotate_direction(qx, qy, qz, 0.0, c2, s2)  # normal to q
        ki_par = (omega - q * q) / (2.0 * q)
        kf_par = ki_par + q
        perp_min = max(0.0, fermi - kf_par * kf_par)
        perp_max = fermi - ki_par * ki_par
        u5, _ = uniform_pair(penn_key, base + 2)
        # at most perp_max: where Pauli blocking leaves no annulus (perp_min > perp_max; Nebula then
        # draws above the Fermi level) the electron comes from the Fermi surface
        perp = math.sqrt(max(0.0, min(perp_min + (perp_max - perp_min) * u5, perp_max)))
        kx = ki_par * qx + perp * nx
        ky = ki_par * qy + perp * ny
        kz = ki_par * qz + perp * nz
        sx, sy, sz = normalised(kx + q * qx, ky + q * qy, kz + q * qz)
        return omega, px, py, pz, kx * kx + ky * ky + kz * kz + omega - u_in, sx, sy, sz
    return omega, px, py, pz, 0.0, 0.0, 0.0, 1.0
