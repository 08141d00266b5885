"""The fused Monte Carlo transport kernel: one electron's whole history per call, CPU and CUDA.

The per-event physics is written once, as the small functions below, in the subset of Python
that Numba compiles. Each is decorated with :func:`device_function`, which compiles it with
``numba.njit`` for the CPU and records it, so :func:`cuda_kernel` can compile the *same source*
as CUDA device functions (``numba.cuda.jit(device=True)``) bound to each other. Two drivers call
:func:`follow_primary`:

- :func:`run_cpu`: ``prange`` over tally bins (geometry, energy, pixel), each bin's primaries in
  one thread, so the counts do not depend on the number of threads;
- :func:`cuda_kernel`: one CUDA thread per primary, counts summed with integer atomics, so they
  do not depend on the launch configuration.

Physics of one history (single elastic scattering with continuous slowing down, Joy 1995 ch. 3;
optionally hard inelastic collisions that create fast secondaries, and a surface barrier), each
step a function:

1. Free flight ``s = -ln(u) / mu`` (:func:`free_path`). ``mu`` is the local inverse elastic mean
   free path where the electron is at least its *safety distance* from any other material (the
   flight is cut there, without collision: the exponential is memoryless); next to a boundary
   it is the majorant ``mu* = max_m mu_m(E)`` and the collision at the flight's end is real with
   probability ``mu_m(E) / mu*`` (delta or Woodcock tracking; Woodcock et al. 1965).
2. Planes (:func:`follow_primary`): the slab's top plane (above it, vacuum up to the detector at
   z = 0: an electron leaving upwards with E above the cutoff is counted) and its bottom plane
   (the terminator, or a semi-infinite target); the flight is cut at the plane.
3. Mirror walls: lateral coordinates are folded back into the box and the direction component
   flipped (:func:`mirror_fold`; a flight may cross several mirrors).
4. Energy loss ``dE = s (S(m_start) + S(m_end)) / 2`` (trapezoid over the flight's end points):
   the whole stopping power, or only its soft part when hard collisions are simulated.
5. Real collisions are elastic or hard inelastic in proportion to their inverse mean free paths.
   Elastic: cos(theta) from the material's model (:func:`elastic_cos_theta`), phi uniform,
   direction rotated (:func:`rotate_direction`). Hard inelastic (energy transfer W above the
   detector cutoff plus the binding energy, Moller, :func:`moller_energy_transfer`): the primary
   loses W and is deflected by binary-collision kinematics (:func:`binary_cos_theta`); the
   secondary starts there with W - phi and is followed like a primary (:func:`follow_primary`
   runs the cascade from a small per-thread stack). With the full-Penn model every inelastic
   event is discrete (no continuous loss): loss, momentum transfer and secondary as Nebula
   (:func:`penn_event`); secondaries too slow to be detected are not followed.
6. Surface barrier (:func:`barrier_transmits`): an electron reaching the top or bottom plane
   leaves only if its normal energy clears the inner-potential step and the step's quantum
   transmission lets it through; otherwise it is reflected. Energies are vacuum-referenced.

Random numbers are counter based (:func:`uniform`): the ``n``-th number of a history is a hash of
``(key, n)``, and the key hashes (seed, geometry, energy index, pixel, electron index)
(:func:`electron_key`). No generator state is shared between electrons, so a stack is the same
for any number of threads, processes or GPU blocks. The hash is SplitMix64's finaliser (Steele,
Lea and Flood, OOPSLA 2014) applied to a Weyl sequence, i.e. a counter-based SplitMix64 stream
per electron; each 64-bit output gives two 32-bit uniforms (:func:`uniform_pair`) and each
flight owns ``HASHES_PER_FLIGHT`` consecutive counters.
"""

from __future__ import annotations

import math
import os
import types

import numba
import numpy as np
from numba import njit, prange

# Numba's OpenMP threading layer shares libgomp with torch's CPU build and changes torch's thread
# count (1 -> all cores) when it starts; its own work-queue layer leaves torch alone.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

#: The Numba options of every CPU function: cached on disk; fast math without the 'no NaN / no
#: infinity' assumptions (the physics never produces them, but they must not be assumed).
_FASTMATH = {"contract", "afn", "arcp", "nsz", "reassoc"}
_CPU_OPTIONS = {"cache": True, "fastmath": _FASTMATH, "error_model": "numpy"}

_DEVICE_FUNCTIONS: list = []


def device_function(fn):
    """Compile ``fn`` for the CPU (``njit``) and record its source for the CUDA build."""
    _DEVICE_FUNCTIONS.append(fn)
    return njit(inline="always", **_CPU_OPTIONS)(fn)


# --------------------------------------------------------------------------- parameter layout
#: Indices into the float64 ``params`` vector shared by both drivers.
(P_VOXEL_NM, P_LOG_E0, P_INV_DLOG, P_CUTOFF_EV, P_ICDF_LOG_E0, P_ICDF_INV_DLOG, P_MAX_FLIGHTS,
 P_MAX_EVENTS, P_INELASTIC, P_LOSS_LOG_K0, P_LOSS_INV_DLOG, P_OMEGA_LOG0, P_OMEGA_INV_DLOG, P_Q_LOG0,
 P_Q_INV_DLOG) = range(15)
N_PARAMS = 15
#: Inelastic models known to the kernel (``params[P_INELASTIC]``): Moller hard collisions (or
#: none, with an all-zero ``hard`` table) and the full-Penn dielectric model.
INELASTIC_MOLLER, INELASTIC_PENN = 0, 1
#: ``band[m]`` columns: Fermi energy F and band gap G (eV above the band bottom), inner potential
#: U (vacuum level above the band bottom), number of inner shells, valence (Fermi-sea) electrons
#: per atom, then (binding energy in eV below the Fermi level, electrons) of each inner shell.
BAND_FERMI, BAND_GAP, BAND_U, BAND_N_SHELLS, BAND_VALENCE, BAND_SHELLS = 0, 1, 2, 3, 4, 5
#: Elastic models known to the kernel (``ElasticModel.kernel_code``).
ELASTIC_BROWNING, ELASTIC_RUTHERFORD, ELASTIC_MOTT = 0, 1, 2
#: Outcome of a history (STOPPED: ended on purpose after ``params[P_MAX_EVENTS]`` elastic events).
ABSORBED, DETECTED, LOST, STOPPED = 0, 1, 2, 3
AZIMUTH_TRIES = 12
HASHES_PER_FLIGHT = 2 + AZIMUTH_TRIES  # 64-bit hashes, two 32-bit uniforms each
#: Hashes of a hard collision's energy transfer, from a stream of its own (``_HARD_SALT``), so the
#: elastic-only physics draws exactly the numbers it drew before inelastic events existed.
MOLLER_TRIES = 8
#: Secondaries waiting in one cascade (a full stack drops further secondaries, counted).
STACK_DEPTH = 32
STACK_FIELDS = 8  # x, y, z (nm), ux, uy, uz, E (eV), creation index
#: "No limit" for a flight (finite: fast math must not meet infinities).
FAR_NM = 1.0e30

# --------------------------------------------------------------------------- random numbers
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: SplitMix64's Weyl increment
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT30, _SHIFT27, _SHIFT31, _SHIFT32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)
_INV_2_32 = 1.0 / 4294967296.0  # 2^-32
_HARD_SALT = np.uint64(0xD1B54A32D192ED03)
#: A Penn event's numbers come from a stream of their own too: ``PENN_HASHES`` per flight (4 for
#: the loss, momentum and secondary, ``AZIMUTH_TRIES`` for the q-normal azimuth, the rest for the
#: plasmon-decay rejection loop, two hashes a try).
_PENN_SALT = np.uint64(0x8CB92BA72F3D8DD7)
PENN_HASHES = 32
PLASMON_TRIES = (PENN_HASHES - 4 - AZIMUTH_TRIES) // 2
_SECONDARY_STRIDE = np.uint64(0xA24BAED4963EE407)


@device_function
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit hash with full avalanche."""
    z = (z ^ (z >> _SHIFT30)) * _MIX1
    z = (z ^ (z >> _SHIFT27)) * _MIX2
    return z ^ (z >> _SHIFT31)


@device_function
def electron_key(seed, geometry, energy_index, pixel, electron):
    """The random-stream key of one primary: a hash of its five integer coordinates."""
    key = mix64(np.uint64(seed) + _GOLDEN)
    key = mix64(key + np.uint64(geometry + 1) * _GOLDEN)
    key = mix64(key + np.uint64(energy_index + 1) * _GOLDEN)
    key = mix64(key + np.uint64(pixel + 1) * _GOLDEN)
    return mix64(key + np.uint64(electron + 1) * _GOLDEN)


@device_function
def uniform_pair(key, counter):
    """Two uniform numbers in (0, 1] (32 random bits each) from the ``counter``-th hash of ``key``."""
    bits = mix64(key + np.uint64(counter) * _GOLDEN)
    return float((bits >> _SHIFT32) + _ONE) * _INV_2_32, float((bits & _LOW32) + _ONE) * _INV_2_32


# --------------------------------------------------------------------------- lookups
@device_function
def energy_index(energy_eV, log_e0, inv_dlog, n_grid):
    """Nearest point of the log-spaced energy grid: ``k = round((ln E - ln E0) / d ln E)``."""
    k = int((math.log(energy_eV) - log_e0) * inv_dlog + 0.5)
    return min(max(k, 0), n_grid - 1)


@device_function
def voxel_of(coordinate_nm, inv_voxel_nm, n_voxels):
    """Index of the voxel holding a coordinate (>= 0 inside the box), clamped to the grid."""
    i = int(coordinate_nm * inv_voxel_nm)
    return min(max(i, 0), n_voxels - 1)


# --------------------------------------------------------------------------- geometry steps
@device_function
def free_path(u, inverse_mfp_per_nm):
    """Exponential free path ``s = -ln(u) / mu`` in nm (``u`` in (0, 1])."""
    return -math.log(u) / max(inverse_mfp_per_nm, 1.0e-30)


@device_function
def mirror_fold(coordinate, direction, size):
    """Fold an unfolded coordinate into [0, size) between two mirrors, flipping the direction
    cosine on an odd number of reflections. Returns ``(coordinate, direction)``."""
    if 0.0 <= coordinate < size:  # no mirror crossed (most flights)
        return coordinate, direction
    n_fold = math.floor(coordinate / size)
    local = coordinate - n_fold * size
    if n_fold - 2.0 * math.floor(0.5 * n_fold) == 1.0:  # odd
        local = size - local
        direction = -direction
    return min(max(local, 0.0), size * (1.0 - 1.0e-7)), direction


@device_function
def azimuth_cos_sin(key, counter):
    """(cos phi, sin phi) of a uniform azimuth without trigonometry (von Neumann's method).

    A point (a, b) uniform in the square [-1, 1]^2 is accepted inside the unit disc (probability
    pi/4); then ``cos phi = (a^2 - b^2) / r^2`` and ``sin phi = 2ab / r^2`` for ``phi`` = twice its
    polar angle, which is uniform. Tries use the hashes ``counter, counter + 1, ...``
    (``AZIMUTH_TRIES`` of them; the last falls back to cos/sin).
    """
    for attempt in range(AZIMUTH_TRIES):
        u, v = uniform_pair(key, counter + attempt)
        a = 2.0 * u - 1.0
        b = 2.0 * v - 1.0
        r2 = a * a + b * b
        if 0.0 < r2 <= 1.0:
            inv = 1.0 / r2
            return (a * a - b * b) * inv, 2.0 * a * b * inv
    phi = 2.0 * math.pi * u
    return math.cos(phi), math.sin(phi)


@device_function
def rotate_direction(ux, uy, uz, cos_theta, cos_phi, sin_phi):
    """Rotate the unit vector (ux, uy, uz) by the polar angle theta and the azimuth phi.

    The standard Monte Carlo rotation (e.g. Salvat et al., PENELOPE manual, eq. 1.131), with the
    polar-axis case handled apart. Returns the renormalised new direction.
    """
    sin_theta = math.sqrt(max(1.0 - cos_theta * cos_theta, 0.0))
    t = math.sqrt(max(1.0 - uz * uz, 1.0e-12))
    if t < 1.0e-5:
        nx = sin_theta * cos_phi
        ny = sin_theta * sin_phi
        nz = cos_theta if uz >= 0.0 else -cos_theta
    else:
        a = sin_theta / t
        nx = ux * cos_theta + a * (ux * uz * cos_phi - uy * sin_phi)
        ny = uy * cos_theta + a * (uy * uz * cos_phi + ux * sin_phi)
        nz = uz * cos_theta - sin_theta * cos_phi * t
    norm = 1.0 / math.sqrt(nx * nx + ny * ny + nz * nz)
    return nx * norm, ny * norm, nz * norm


# --------------------------------------------------------------------------- elastic angles
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
def elastic_cos_theta(model, material, energy_eV, z_of, icdf, params, u1, u2):
    """cos(theta) of an elastic collision in ``material`` for the selected model, in [-1, 1]."""
    if model == ELASTIC_MOTT:
        c = mott_cos_theta(icdf, material, energy_eV, params[P_ICDF_LOG_E0], params[P_ICDF_INV_DLOG], u1, u2)
    elif model == ELASTIC_RUTHERFORD:
        alpha = 3.4e-3 * z_of[material] ** 0.67 * 1.0e3 / energy_eV
        c = screened_rutherford_cos_theta(alpha, u2)
    else:
        c = browning_cos_theta(z_of[material], energy_eV, u1, u2)
    return min(max(c, -1.0), 1.0)


# --------------------------------------------------------------------------- inelastic, surface
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
def barrier_transmits(energy_eV, uz, barrier_eV, u):
    """Whether an electron reaching the surface crosses the inner-potential step ``U`` into vacuum.

    Inside, the kinetic energy is ``E + U`` (E: vacuum-referenced). Only the normal part
    ``E_n = (E + U) uz^2`` must exceed U; then the quantum-mechanical transmission of a potential
    step, ``T = 4 k k' / (k + k')^2`` with ``k ~ sqrt(E_n)``, ``k' ~ sqrt(E_n - U)``, decides
    (Shimizu and Ding, Rep. Prog. Phys. 55, 487 (1992); Kieft and Bosch 2008, sec. 2.4). An
    electron that does not cross is reflected specularly. ``U = 0``: no barrier.
    """
    if barrier_eV <= 0.0:
        return True
    e_normal = (energy_eV + barrier_eV) * uz * uz
    if e_normal <= barrier_eV:
        return False
    k_in = math.sqrt(e_normal)
    k_out = math.sqrt(e_normal - barrier_eV)
    return u <= 4.0 * k_in * k_out / ((k_in + k_out) * (k_in + k_out))


# --------------------------------------------------------------------------- full-Penn inelastic event
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
def isotropic_direction(u, v):
    """A direction uniform on the sphere: ``cos theta = 2u - 1``, ``phi = 2 pi v``."""
    cos_t = 2.0 * u - 1.0
    sin_t = math.sqrt(max(1.0 - cos_t * cos_t, 0.0))
    phi = 2.0 * math.pi * v
    return sin_t * math.cos(phi), sin_t * math.sin(phi), cos_t


@device_function
def normalised(x, y, z):
    norm = math.sqrt(x * x + y * y + z * z)
    if norm <= 0.0:
        return 0.0, 0.0, 1.0
    return x / norm, y / norm, z / norm


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
def penn_event(penn_key, base, energy, ux, uy, uz, cos_phi, sin_phi, material, band, loss_icdf, q_cdf, params):
    """One inelastic collision of the full-Penn model, as Nebula (van Kessel and Hagen 2020) does it.

    Energies are vacuum-referenced; inside, the kinetic energy is ``K = E + U``. The loss w is
    drawn at K (:func:`tabulated_icdf` of ``ln w``), at most ``K - F``. If an inner shell of
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


@device_function
def push_secondary(stack, n_stack, n_created, x, y, z, sx, sy, sz, energy):
    """Put a secondary (position nm, direction, E eV, creation index) on the cascade stack.
    Returns ``(n_stack, dropped)``: a full stack drops it (``dropped = 1``)."""
    if n_stack >= stack.shape[0]:
        return n_stack, 1
    stack[n_stack, 0] = x
    stack[n_stack, 1] = y
    stack[n_stack, 2] = z
    stack[n_stack, 3] = sx
    stack[n_stack, 4] = sy
    stack[n_stack, 5] = sz
    stack[n_stack, 6] = energy
    stack[n_stack, 7] = n_created
    return n_stack + 1, 0


# --------------------------------------------------------------------------- one history
@device_function
def follow_electron(key, x, y, z, ux, uy, uz, energy, geometry, grid, safety, planes, imfp, hard, stopping,
                    majorant, surface, band, loss_icdf, q_cdf, model, z_of, icdf, params, stack, n_stack,
                    n_created):
    """Follow one electron of a cascade from (x, y, z) nm along (ux, uy, uz) with E eV to its end.

    ``grid[g, z, y, x]``: material indices (0 vacuum); ``safety[g, z, y, x]``: distance (nm) from
    the voxel to any other material; ``planes[g] = (z_top, z_bot)`` nm (``z_bot`` = 1e30 for a
    semi-infinite target); ``imfp[m, k]`` (1/nm): elastic plus hard-inelastic inverse mean free
    path, ``hard[m, 0, k]`` its hard-inelastic part (``hard[m, 1 + j, k]`` that of shell j) and
    ``stopping[m, k]`` (eV/nm) the continuous (soft) loss, on the energy grid; ``majorant[k] >=
    max_m imfp[m, k]``; ``surface[m] = (barrier U, binding B_j of each shell j)`` eV. With the
    full-Penn model (``params[P_INELASTIC]``), ``hard`` holds its inverse mean free path and
    ``band`` (band constants, ``BAND_*``), ``loss_icdf`` and ``q_cdf`` its tables
    (:func:`penn_event`). A hard collision pushes its secondary (x, y, z, u, E, index)
    onto ``stack[n_stack]`` (dropped, and counted, when the stack is full). Returns
    ``(outcome, flights, elastic events, z, n_stack, n_created, dropped)``.
    """
    voxel_nm = params[P_VOXEL_NM]
    inv_voxel = 1.0 / voxel_nm
    cutoff = params[P_CUTOFF_EV]
    n_grid = majorant.shape[0]
    nz, ny, nx = grid.shape[1], grid.shape[2], grid.shape[3]
    size_x, size_y = nx * voxel_nm, ny * voxel_nm
    z_top, z_bot = planes[geometry, 0], planes[geometry, 1]
    events = 0
    dropped = 0
    hard_key = mix64(key ^ _HARD_SALT)
    penn_key = mix64(key ^ _PENN_SALT)
    max_flights = int(params[P_MAX_FLIGHTS])
    max_events = int(params[P_MAX_EVENTS])
    for flight in range(max_flights):
        counter = flight * HASHES_PER_FLIGHT
        k = energy_index(energy, params[P_LOG_E0], params[P_INV_DLOG], n_grid)
        ix, iy, iz = voxel_of(x, inv_voxel, nx), voxel_of(y, inv_voxel, ny), voxel_of(z, inv_voxel, nz)
        m_start = grid[geometry, iz, iy, ix]
        safe = safety[geometry, iz, iy, ix]
        if safe > 0.0:  # far from other materials: local mean free path, flight cut at the safety distance
            mu = imfp[m_start, k]
            limit = safe
        else:  # near a boundary: delta tracking with the majorant
            mu = majorant[k]
            limit = FAR_NM
        u_path, u_real = uniform_pair(key, counter)
        step = free_path(u_path, mu)
        candidate = step <= limit
        step = min(step, limit)
        z_end = z + step * uz
        leave_top = z_end < z_top
        leave_bottom = z_end >= z_bot
        if leave_top or leave_bottom:
            step = (z_top - z) / uz if leave_top else (z_bot - z) / uz
        x, ux = mirror_fold(x + step * ux, ux, size_x)
        y, uy = mirror_fold(y + step * uy, uy, size_y)
        z = z + step * uz
        if leave_top or leave_bottom:
            energy -= step * stopping[m_start, k]
            if energy <= cutoff:
                return ABSORBED, flight + 1, events, z, n_stack, n_created, dropped
            u_barrier, _ = uniform_pair(key, counter + 1)
            if barrier_transmits(energy, uz, surface[m_start, 0], u_barrier):
                if leave_top:
                    return DETECTED, flight + 1, events, z, n_stack, n_created, dropped
                return ABSORBED, flight + 1, events, z, n_stack, n_created, dropped
            uz = -uz  # reflected back into the slab at the plane
            z = z_top if leave_top else z_bot - 1.0e-7 * voxel_nm
            continue
        if safe > 0.0:  # stayed inside its own material
            m_end = m_start
            energy -= step * stopping[m_start, k]
            real = candidate
        else:
            m_end = grid[geometry, voxel_of(z, inv_voxel, nz), voxel_of(y, inv_voxel, ny), voxel_of(x, inv_voxel, nx)]
            energy -= 0.5 * step * (stopping[m_start, k] + stopping[m_end, k])
            real = candidate and u_real * mu < imfp[m_end, k]  # a real, not a null, collision
        if energy <= cutoff:
            return ABSORBED, flight + 1, events, z, n_stack, n_created, dropped
        if not real:
            continue
        cos_phi, sin_phi = azimuth_cos_sin(key, counter + 2)
        hard_rest = u_real * mu - (imfp[m_end, k] - hard[m_end, 0, k])  # in [0, hard) for a hard collision
        if hard[m_end, 0, k] > 0.0 and hard_rest >= 0.0:
            # hard inelastic collision with shell j (chosen in proportion to its rate): the primary
            # gives W to an electron bound by B_j, which leaves with W - B_j (vacuum-referenced) in
            # the binary-collision direction, opposite azimuth
            j = 0
            n_shells = hard.shape[1] - 1
            while j < n_shells - 1 and hard_rest >= hard[m_end, 1 + j, k]:
                hard_rest -= hard[m_end, 1 + j, k]
                j += 1
            if params[P_INELASTIC] == INELASTIC_PENN:
                w, ux, uy, uz, secondary, sx, sy, sz = penn_event(
                    penn_key, flight * PENN_HASHES, energy, ux, uy, uz, cos_phi, sin_phi, m_end, band, loss_icdf,
                    q_cdf, params)
                energy -= w
                if secondary > cutoff:  # a slower one can never be detected: not followed
                    n_created += 1
                    n_stack, d = push_secondary(stack, n_stack, n_created, x, y, z, sx, sy, sz, secondary)
                    dropped += d
            else:
                binding = surface[m_end, 1 + j]
                w = moller_energy_transfer(hard_key, flight * MOLLER_TRIES, energy, cutoff + binding)
                cos_secondary = binary_cos_theta(w / energy, energy)
                cos_primary = binary_cos_theta((energy - w) / energy, energy)
                sx, sy, sz = rotate_direction(ux, uy, uz, cos_secondary, -cos_phi, -sin_phi)
                ux, uy, uz = rotate_direction(ux, uy, uz, cos_primary, cos_phi, sin_phi)
                energy -= w
                n_created += 1
                n_stack, d = push_secondary(stack, n_stack, n_created, x, y, z, sx, sy, sz, w - binding)
                dropped += d
            if energy <= cutoff:
                return ABSORBED, flight + 1, events, z, n_stack, n_created, dropped
        else:
            events += 1
            if events >= max_events:
                return STOPPED, flight + 1, events, z, n_stack, n_created, dropped
            u_model, u_angle = uniform_pair(key, counter + 1)
            cos_theta = elastic_cos_theta(model, m_end, energy, z_of, icdf, params, u_model, u_angle)
            ux, uy, uz = rotate_direction(ux, uy, uz, cos_theta, cos_phi, sin_phi)
    return LOST, max_flights, events, z, n_stack, n_created, dropped


@device_function
def follow_primary(key, x, y, energy, geometry, grid, safety, planes, imfp, hard, stopping, majorant, surface,
                   band, loss_icdf, q_cdf, model, z_of, icdf, params, stack):
    """Follow one primary entering the slab's top plane at (x, y) along +z, and its cascade.

    The primary is the cascade's first electron; each secondary is followed after it, last
    created first, with its own random stream ``mix64(key + index * stride)``. Returns
    ``(primary outcome, detected electrons, flights, elastic events, z where the primary ended,
    lost electrons, secondaries created, secondaries dropped)``.
    """
    stack[0, 0] = x
    stack[0, 1] = y
    stack[0, 2] = planes[geometry, 0]
    stack[0, 3] = 0.0
    stack[0, 4] = 0.0
    stack[0, 5] = 1.0
    stack[0, 6] = energy
    stack[0, 7] = 0.0
    n_stack = 1
    n_created = 0
    detected = 0
    flights = 0
    events = 0
    lost = 0
    dropped = 0
    primary_outcome = ABSORBED
    primary_z = 0.0
    first = True
    while n_stack > 0:
        n_stack -= 1
        index = stack[n_stack, 7]
        electron_key_i = key if first else mix64(key + np.uint64(index) * _SECONDARY_STRIDE)
        outcome, f, v, z_end, n_stack, n_created, d = follow_electron(
            electron_key_i, stack[n_stack, 0], stack[n_stack, 1], stack[n_stack, 2], stack[n_stack, 3],
            stack[n_stack, 4], stack[n_stack, 5], stack[n_stack, 6], geometry, grid, safety, planes, imfp, hard,
            stopping, majorant, surface, band, loss_icdf, q_cdf, model, z_of, icdf, params, stack, n_stack, n_created)
        if first:
            primary_outcome = outcome
            primary_z = z_end
            first = False
        flights += f
        events += v
        dropped += d
        if outcome == DETECTED:
            detected += 1
        elif outcome == LOST:
            lost += 1
    return primary_outcome, detected, flights, events, primary_z, lost, n_created, dropped


# --------------------------------------------------------------------------- CPU driver
@njit(parallel=True, **_CPU_OPTIONS)
def run_cpu(seed, first_bin, stop_bin, electrons_per_bin, beam_x, beam_y, beam_energy, grid, safety, planes,
            imfp, hard, stopping, majorant, surface, band, loss_icdf, q_cdf, model, z_of, icdf, params, counts,
            tallies):
    """Simulate tally bins ``first_bin..stop_bin-1`` of the ``(G, E, P)`` bin grid.

    ``beam_x/beam_y`` (P,) nm, ``beam_energy`` (E,) eV. Bins are visited energy-fastest, so every
    thread's share mixes all energies (their costs differ 20x). ``counts[g, e, p]`` receives the
    detected electrons; ``tallies[g, e, p]`` = (flights, elastic events, lost electrons,
    secondaries created, secondaries dropped).
    """
    n_geometries, n_energies, n_pixels = counts.shape
    for i in prange(first_bin, stop_bin):
        e = i % n_energies
        g = (i // n_energies) % n_geometries
        p = i // (n_energies * n_geometries)
        stack = np.empty((STACK_DEPTH, STACK_FIELDS))
        detected = 0
        flights = 0
        events = 0
        lost = 0
        created = 0
        dropped = 0
        for n in range(electrons_per_bin):
            key = electron_key(seed, g, e, p, n)
            _, d, f, v, _, l_, c, x = follow_primary(key, beam_x[p], beam_y[p], beam_energy[e], g, grid, safety,
                                                     planes, imfp, hard, stopping, majorant, surface, band,
                                                     loss_icdf, q_cdf, model, z_of, icdf, params, stack)
            detected += d
            flights += f
            events += v
            lost += l_
            created += c
            dropped += x
        counts[g, e, p] = detected
        tallies[g, e, p, 0] = flights
        tallies[g, e, p, 1] = events
        tallies[g, e, p, 2] = lost
        tallies[g, e, p, 3] = created
        tallies[g, e, p, 4] = dropped


# --------------------------------------------------------------------------- CUDA driver
def _cuda_transport(seed, first, n_threads, electrons_per_bin, beam_x, beam_y, beam_energy, grid, safety, planes,
                    imfp, hard, stopping, majorant, surface, band, loss_icdf, q_cdf, model, z_of, icdf, params, counts,
                    tallies):
    """One CUDA thread per primary ``j = first + thread``: bin ``j // N``, electron ``j % N``."""
    thread = cuda.grid(1)  # noqa: F821 - bound in the CUDA namespace
    if thread >= n_threads:
        return
    stack = cuda.local.array((STACK_DEPTH, STACK_FIELDS), numba.float64)  # noqa: F821
    j = first + thread
    b = j // electrons_per_bin
    n = j - b * electrons_per_bin
    n_energies, n_pixels = counts.shape[1], counts.shape[2]
    p = b % n_pixels
    e = (b // n_pixels) % n_energies
    g = b // (n_pixels * n_energies)
    key = electron_key(seed, g, e, p, n)
    _, d, f, v, _, lost, created, dropped = follow_primary(key, beam_x[p], beam_y[p], beam_energy[e], g, grid, safety,
                                                           planes, imfp, hard, stopping, majorant, surface, band,
                                                           loss_icdf, q_cdf, model, z_of, icdf, params, stack)
    if d > 0:
        cuda.atomic.add(counts, (g, e, p), d)  # noqa: F821
    slot = thread % tallies.shape[0]  # spread the statistics' atomics over many addresses
    cuda.atomic.add(tallies, (slot, 0), f)  # noqa: F821
    cuda.atomic.add(tallies, (slot, 1), v)  # noqa: F821
    if lost > 0:
        cuda.atomic.add(tallies, (slot, 2), lost)  # noqa: F821
    if created > 0:
        cuda.atomic.add(tallies, (slot, 3), created)  # noqa: F821
        cuda.atomic.add(tallies, (slot, 4), dropped)  # noqa: F821


_CUDA_KERNEL = None


def cuda_kernel():
    """The CUDA kernel, compiled once per process from the same device-function sources.

    Each recorded function is re-bound in a namespace where its callees are the CUDA versions,
    then compiled with ``numba.cuda.jit(device=True)``; under ``NUMBA_ENABLE_CUDASIM=1`` this runs
    in Numba's CUDA simulator (how the tests exercise it without a GPU).
    """
    global _CUDA_KERNEL
    if _CUDA_KERNEL is None:
        from numba import cuda

        namespace = dict(globals())
        namespace["cuda"] = cuda
        for fn in _DEVICE_FUNCTIONS:
            rebound = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
            namespace[fn.__name__] = cuda.jit(device=True)(rebound)
        kernel = types.FunctionType(_cuda_transport.__code__, namespace, "cuda_transport")
        _CUDA_KERNEL = cuda.jit(fastmath=True)(kernel)
    return _CUDA_KERNEL


def set_cpu_threads(threads: int | None) -> int:
    """Set Numba's CPU threads (``None``: all cores) and return the number in use."""
    limit = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(limit if threads is None else max(1, min(int(threads), limit)))
    return numba.get_num_threads()
