"""Geometry of a flight: grid lookups, free path, mirror walls, directions, the surface barrier."""

from __future__ import annotations

import math

from datasets.kernel.build import device_function
from datasets.kernel.rng import AZIMUTH_TRIES, uniform_pair


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
