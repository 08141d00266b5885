"""Inelastic scattering from the optical energy-loss function: the full Penn algorithm.

Penn's algorithm (D. R. Penn, Phys. Rev. B 35, 482 (1987); the "full Penn algorithm" of
Shinotsuka, Tanuma, Powell and Penn, Surf. Interface Anal. 47, 871 (2015), sec. 2) extends the
measured optical energy-loss function ``ELF(w) = Im[-1/eps(w)]`` to momentum transfer q > 0 as a
superposition of free-electron gases (Lindhard dielectric functions ``eps_L(q, w; wp)``, one per
plasma frequency ``wp``), weighted so that q = 0 gives back the optical data::

    Im[-1/eps(q, w)] = int_0^inf dwp g(wp) Im[-1/eps_L(q, w; wp)],   g(wp) = 2 ELF(wp) / (pi wp)

Each Lindhard ELF has a plasmon pole (where ``Re eps_L = 0`` outside the electron-hole
continuum; weight ``pi / |d Re eps_L / d wp|``) and the continuum of single excitations (an
ordinary integral over ``wp``). With ``T = m v^2 / 2`` (relativistic v) and
``q_pm = q(K) +- q(K - w)``, ``q(K) = sqrt(2 m K (1 + K / 2mc^2)) / hbar``, the inverse
inelastic mean free path and the stopping power are (Shinotsuka 2015 eq. 3, 7)::

    1/lambda(K) = 1 / (pi a0 T) int_0^{K - F} dw int_{q_-}^{q_+} dq/q Im[-1/eps(q, w)]
    S(K)        = 1 / (pi a0 T) int_0^{K - F} dw w int_{q_-}^{q_+} dq/q Im[-1/eps(q, w)]

(``F``: the least excitation energy, Fermi energy of a metal, valence width + gap of a
semiconductor, as cstool's "Fermi correction"). The transport kernel samples the loss ``w``
from the tabulated inverse CDF at the electron's kinetic energy ``K`` inside the material and
then ``q`` given ``(K, w)`` from ``int dq/q Im[-1/eps(q, w)]`` (:func:`tables`).

Everything here is vectorised numpy in atomic units (hartree, bohr) inside; inputs and outputs
are in eV and nm. Tables are cached on disk (``~/.cache/bse-bench/penn``, or
``$BSE_BENCH_CACHE/penn``) keyed by the ELF file's hash and :data:`TABLE_VERSION`.
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from datasets.files import atomic_path
from datasets.materials import Material

ELF_DIR = Path(__file__).resolve().parent / "data" / "elf"
HARTREE_EV = 27.211386245988
BOHR_NM = 0.0529177210903
MC2_EV = 510998.95
#: q in the kernel's unit, hbar q / sqrt(2 m) in sqrt(eV): q_au * sqrt(HARTREE_EV / 2)
Q_AU_TO_SQRT_EV = math.sqrt(HARTREE_EV / 2.0)

#: Bump when the tables' definition changes (invalidates the disk cache).
TABLE_VERSION = "1"
#: Grids of the tables: energy loss w (eV) and momentum transfer q (sqrt eV), log-spaced; the
#: plasma-frequency nodes of the single-excitation integral; kinetic-energy rows of the loss
#: inverse CDF and its probability columns.
OMEGA_MIN_EV, OMEGA_MAX_EV, N_OMEGA = 0.05, 60_000.0, 384
Q_MIN_SQRT_EV, Q_MAX_SQRT_EV, N_Q = 1.0e-5, 600.0, 384
N_PLASMA_NODES = 768
K_MIN_EV, K_MAX_EV, N_K_ROWS, N_PROBABILITIES = 10.0, 50_000.0, 192, 512


def elf_path(material: Material) -> Path:
    if material.elf_file is None:
        raise ValueError(f"material {material.name} has no optical energy-loss function; the 'penn' model needs one")
    path = ELF_DIR / material.elf_file
    if not path.is_file():
        raise FileNotFoundError(f"optical ELF file of {material.name} not found: {path}")
    return path


@lru_cache(maxsize=8)
def _read_elf(path: str) -> tuple[np.ndarray, np.ndarray]:
    energies, values = [], []
    with open(path) as handle:
        handle.readline()  # outer-shell energies (not used here)
        for line in handle:
            fields = line.split()
            if len(fields) != 2:
                continue
            w, elf = float(fields[0]), float(fields[1])
            if w < 0:
                break
            energies.append(w)
            values.append(elf)
    w, elf = np.array(energies), np.array(values)
    if len(w) < 2 or np.any(np.diff(w) <= 0) or np.any(elf <= 0):
        raise ValueError(f"{path}: expected increasing photon energies with positive ELF values")
    return w, elf


def optical_elf(material: Material) -> tuple[np.ndarray, np.ndarray]:
    """``(photon energy eV, Im[-1/eps])`` of the material's optical data file."""
    return _read_elf(str(elf_path(material)))


def elf_at(w_eV, data_w, data_elf) -> np.ndarray:
    """Optical ELF at ``w`` by log-log interpolation, extrapolated along the end segments (as cstool)."""
    lx, ly = np.log(data_w), np.log(data_elf)
    x = np.log(np.asarray(w_eV, dtype=np.float64))
    i = np.clip(np.searchsorted(lx, x) - 1, 0, len(lx) - 2)
    t = (x - lx[i]) / (lx[i + 1] - lx[i])
    return np.exp(ly[i] + t * (ly[i + 1] - ly[i]))


def effective_electrons(material: Material, w_max_eV: float) -> float:
    """The f-sum rule: electrons per atom excited by losses up to ``w_max``,
    ``N(w) = int_0^w w' ELF(w') dw' / (2 pi^2 n_a)`` (atomic units; ``n_a`` atoms per bohr^3;
    Shinotsuka 2015 eq. 5). It tends to Z as ``w -> inf``."""
    w, elf = optical_elf(material)
    grid = np.geomspace(w[0], w_max_eV, 20_000)
    integral = np.trapezoid(grid * elf_at(grid, w, elf), grid) / HARTREE_EV**2
    n_atoms = material.atoms_per_nm3 * BOHR_NM**3
    return float(integral / (2 * math.pi**2 * n_atoms))


# --------------------------------------------------------------------------- Lindhard (atomic units)
def _lindhard_variables(q, w, wp):
    """Fermi momentum ``kF = (3 pi wp^2 / 4)^(1/3)`` of the gas with plasma frequency ``wp``,
    ``z = q / 2kF`` and ``u = w / (q kF)`` (Lindhard's variables, Penn 1987 eq. 14-15)."""
    kf = np.cbrt(0.75 * math.pi * wp * wp)
    z = q / (2 * kf)
    u = w / (q * kf)
    return kf, z, u


def _f_log(t):
    """``(1 - t^2) ln|(t + 1)/(t - 1)|`` (0 at |t| = 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (1 - t * t) * np.log(np.abs((t + 1) / (t - 1)))
    return np.where(np.abs(np.abs(t) - 1) < 1e-14, 0.0, out)


def lindhard_real(q, w, wp):
    """Re eps_L: ``1 + (1/(pi kF z^2)) [1/2 + (F(z - u) + F(z + u)) / (8 z)]``; for ``u >> z + 1``
    its large-u expansion ``1 - (wp/w)^2 (1 + (z^2 + 3/5)/u^2)`` (no cancellation)."""
    kf, z, u = _lindhard_variables(q, w, wp)
    exact = 1 + (0.5 + (_f_log(z - u) + _f_log(z + u)) / (8 * z)) / (math.pi * kf * z * z)
    asymptotic = 1 - (wp / w) ** 2 * (1 + (z * z + 0.6) / (u * u))
    return np.where(u > 100 * (z + 1), asymptotic, exact)


def lindhard_imag(q, w, wp):
    """Im eps_L: ``u / (2 kF z^2)`` for ``u < 1 - z``; ``(1 - (z - u)^2) / (8 kF z^3)`` for
    ``|1 - z| <= u <= 1 + z``; 0 outside the electron-hole continuum."""
    kf, z, u = _lindhard_variables(q, w, wp)
    inner = u / (2 * kf * z * z)
    edge = (1 - (z - u) ** 2) / (8 * kf * z**3)
    return np.where(u < 1 - z, inner, np.where((u >= np.abs(1 - z)) & (u <= 1 + z), edge, 0.0))


def penn_elf(q_au, w_au, data_w_eV, data_elf, n_nodes: int = N_PLASMA_NODES) -> np.ndarray:
    """Full-Penn ``Im[-1/eps(q, w)]`` on the grid ``q_au`` (Q,) x ``w_au`` (W,), atomic units: (W, Q).

    Plasmon part: the root ``wp*`` of ``Re eps_L(q, w; wp) = 0`` below the continuum
    (``kF < (2w - q^2)/(2q)``) by bisection in ln wp, weighted ``g(wp*) pi / |d Re eps_L/d wp|``
    (central difference); where the root lies below ``1e-6`` of the bracket (q -> 0) the
    optical ELF itself. Single excitations: trapezoid over ``n_nodes`` log-spaced ``wp`` spanning
    the optical data, of ``g(wp) Im[-1/eps_L]`` (zero outside the continuum).
    """
    q = np.asarray(q_au, dtype=np.float64)[None, :]
    w = np.asarray(w_au, dtype=np.float64)[:, None]
    data_w_au = data_w_eV / HARTREE_EV

    def g(wp):
        return 2 * elf_at(wp * HARTREE_EV, data_w_eV, data_elf) / (math.pi * wp)

    # single excitations
    nodes = np.geomspace(data_w_au[0], data_w_au[-1], n_nodes)
    single = np.zeros((w.shape[0], q.shape[1]))
    previous = None
    for k, wp in enumerate(nodes):
        eps_i = lindhard_imag(q, w, wp)
        eps_r = lindhard_real(q, w, wp)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(eps_i > 0, eps_i / (eps_r * eps_r + eps_i * eps_i), 0.0) * g(wp)
        if previous is not None:
            single += 0.5 * (value + previous) * (wp - nodes[k - 1])
        previous = value

    # plasmon pole
    q_b, w_b = np.broadcast_arrays(q, w)
    kf_max = (2 * w_b - q_b * q_b) / (2 * q_b)
    exists = kf_max > 0
    wp_max = np.where(exists, np.sqrt(np.where(exists, kf_max, 1.0) ** 3 * 4 / (3 * math.pi)), 1.0)
    wp_min = wp_max * 1e-6
    below = exists & (lindhard_real(q_b, w_b, wp_min) < 0)  # q -> 0: the optical limit
    has_root = exists & ~below & (lindhard_real(q_b, w_b, wp_max) <= 0)
    lo, hi = np.log(wp_min), np.log(wp_max)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        positive = lindhard_real(q_b, w_b, np.exp(mid)) > 0
        lo, hi = np.where(positive, mid, lo), np.where(positive, hi, mid)
    root = np.exp(0.5 * (lo + hi))
    step = 1e-6 * root
    slope = (lindhard_real(q_b, w_b, root + step) - lindhard_real(q_b, w_b, root - step)) / (2 * step)
    with np.errstate(divide="ignore", invalid="ignore"):
        pole = np.where(has_root, g(root) * math.pi / np.abs(slope), 0.0)
    optical = elf_at(w_b * HARTREE_EV, data_w_eV, data_elf)
    pole = np.where(below, optical, pole)
    return np.nan_to_num(pole + single, nan=0.0, posinf=0.0)


# --------------------------------------------------------------------------- cross sections
def q_of_kinetic(kinetic_eV):
    """``hbar q / sqrt(2m)`` (sqrt eV) of an electron with kinetic energy K (relativistic)."""
    k = np.maximum(np.asarray(kinetic_eV, dtype=np.float64), 0.0)
    return np.sqrt(k * (1 + k / (2 * MC2_EV)))


def omega_grid_eV() -> np.ndarray:
    return np.geomspace(OMEGA_MIN_EV, OMEGA_MAX_EV, N_OMEGA)


def q_grid_sqrt_eV() -> np.ndarray:
    return np.geomspace(Q_MIN_SQRT_EV, Q_MAX_SQRT_EV, N_Q)


def k_rows_eV() -> np.ndarray:
    return np.geomspace(K_MIN_EV, K_MAX_EV, N_K_ROWS)


class PennTables:
    """Full-Penn tables of one material (see the module docstring), energies in eV.

    ``q_cdf`` (W, Q): ``int_{q_0}^{q_j} dq/q Im[-1/eps(q, w_i)]`` on :func:`omega_grid_eV` x
    :func:`q_grid_sqrt_eV`; ``loss_icdf`` (K rows, P): ``ln w`` at cumulative probability
    ``j / (P - 1)`` of the loss spectrum at kinetic energy :func:`k_rows_eV` ``[i]``;
    ``min_excitation_eV``: F of the Fermi correction (w <= K - F).
    """

    def __init__(self, q_cdf: np.ndarray, min_excitation_eV: float):
        self.q_cdf = q_cdf
        self.min_excitation_eV = float(min_excitation_eV)
        self.omega = omega_grid_eV()
        self.log_omega = np.log(self.omega)
        self.log_q = np.log(q_grid_sqrt_eV())
        self.loss_icdf = self._loss_icdf()
        self._icdf_above: dict[float, np.ndarray] = {}
        self._integrals: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray]] = {}

    def _row_position(self, omega):
        """(row below, fraction towards the next row) of losses on the log-spaced w grid."""
        t = np.clip((np.log(omega) - self.log_omega[0]) / (self.log_omega[1] - self.log_omega[0]), 0, N_OMEGA - 1)
        row = np.minimum(t.astype(np.int64), N_OMEGA - 2)
        return row, t - row

    def _cumulative(self, row, log_q):
        """``q_cdf[row, :]`` at ``ln q``, linear in ln q, clamped to the grid."""
        t = np.clip((log_q - self.log_q[0]) / (self.log_q[1] - self.log_q[0]), 0, N_Q - 1.000001)
        j = t.astype(np.int64)
        lo = self.q_cdf[row, j]
        return lo + (self.q_cdf[row, j + 1] - lo) * (t - j)

    def loss_density(self, kinetic_eV, omega_eV) -> np.ndarray:
        """``d(1/lambda)/dw`` (1/nm/eV) at losses w for kinetic energies K (broadcast), 0 above K - F."""
        kinetic, omega = np.broadcast_arrays(np.asarray(kinetic_eV, dtype=np.float64),
                                             np.asarray(omega_eV, dtype=np.float64))
        allowed = omega <= kinetic - self.min_excitation_eV + 1e-9
        q_k, q_rest = q_of_kinetic(kinetic), q_of_kinetic(kinetic - omega)
        log_lo, log_hi = np.log(np.maximum(q_k - q_rest, 1e-30)), np.log(np.maximum(q_k + q_rest, 1e-30))
        row, frac = self._row_position(omega)
        window = sum((1 - weight) * (self._cumulative(r, log_hi) - self._cumulative(r, log_lo))
                     for r, weight in ((row, frac), (row + 1, 1 - frac)))
        t = kinetic * (1 + kinetic / (2 * MC2_EV)) / (1 + kinetic / MC2_EV) ** 2  # m v^2 / 2 (relativistic v)
        return np.where(allowed, np.maximum(window, 0.0) / (math.pi * BOHR_NM * np.maximum(t, 1e-30)), 0.0)

    def loss_spectrum(self, kinetic_eV: float, floor_eV: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(w, d(1/lambda)/dw)`` on the w grid between ``floor_eV`` and K - F, the ends at exactly
        those losses (no floor: the grid's first loss)."""
        top = kinetic_eV - self.min_excitation_eV
        bottom = max(floor_eV, self.omega[0])
        if top <= bottom:
            return np.array([bottom]), np.zeros(1)
        if floor_eV > self.omega[0]:
            omega = np.concatenate([[bottom], self.omega[(self.omega > bottom) & (self.omega < top)], [top]])
        else:
            omega = np.append(self.omega[self.omega < top], top)
        return omega, self.loss_density(kinetic_eV, omega)

    def _integrals_below(self, kinetic: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``int_0^upper d(1/lambda)/dw dw`` (1/nm) and ``int_0^upper w d(1/lambda)/dw dw`` (eV/nm)
        at each K (``upper <= K - F``): trapezoid over the w grid, the last, partial interval
        included. Remembered per (K, upper) arrays: building a physics' tables asks for the same
        integrals several times (about a second each on a kernel energy grid)."""
        key = (kinetic.tobytes(), np.asarray(upper, dtype=np.float64).tobytes())
        if key not in self._integrals:
            if len(self._integrals) >= 32:
                self._integrals.clear()
            self._integrals[key] = self._integrate_below(kinetic, upper)
        imfp, stopping = self._integrals[key]
        return imfp.copy(), stopping.copy()

    def _integrate_below(self, kinetic: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        omega = self.omega[None, :]
        density = self.loss_density(kinetic[:, None], omega)
        inside = omega < upper[:, None]
        both = inside[:, 1:]
        d_omega = np.diff(self.omega)[None, :]
        imfp = (0.5 * (density[:, 1:] + density[:, :-1]) * d_omega * both).sum(axis=1)
        stopping = (0.5 * (omega[:, 1:] * density[:, 1:] + omega[:, :-1] * density[:, :-1]) * d_omega * both).sum(axis=1)
        last = inside.sum(axis=1) - 1  # last grid loss below the upper limit
        has = last >= 0
        last = np.maximum(last, 0)
        w_last = self.omega[last]
        d_last = density[np.arange(len(last)), last]
        d_top = self.loss_density(kinetic, np.maximum(upper, self.omega[0]))
        imfp += np.where(has, 0.5 * (d_last + d_top) * (upper - w_last), 0.0)
        stopping += np.where(has, 0.5 * (w_last * d_last + upper * d_top) * (upper - w_last), 0.0)
        return imfp, stopping

    def inverse_mfp_and_stopping(self, kinetic_eV, floor_eV: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Inverse inelastic mean free path (1/nm) and stopping power (eV/nm) at each K (eV) of
        the losses from ``floor_eV`` (default: all of them) up to ``K - F``."""
        kinetic = np.atleast_1d(np.asarray(kinetic_eV, dtype=np.float64))
        top = kinetic - self.min_excitation_eV
        imfp, stopping = self._integrals_below(kinetic, top)
        if floor_eV > 0.0:
            soft_imfp, soft_stopping = self._integrals_below(kinetic, np.minimum(top, floor_eV))
            imfp, stopping = np.maximum(imfp - soft_imfp, 0.0), np.maximum(stopping - soft_stopping, 0.0)
        return imfp, stopping

    def loss_icdf_above(self, floor_eV: float) -> np.ndarray:
        """:attr:`loss_icdf` of the losses above ``floor_eV`` only (the hard events of the mixed
        scheme). A row with no loss above the floor (``K - F <= floor``) holds the first row above
        it that has: the sampler's interpolation between rows may pick such a row for an electron
        just above the threshold, which must still lose more than the floor (the kernel then
        clamps the loss to ``K - F``)."""
        key = float(floor_eV)
        if key not in self._icdf_above:
            table = self._loss_icdf(key)
            empty = k_rows_eV() - self.min_excitation_eV <= key
            first_full = int(np.argmin(empty)) if not empty.all() else len(empty) - 1
            table[:first_full] = table[first_full]
            self._icdf_above[key] = table
        return self._icdf_above[key]

    def _loss_icdf(self, floor_eV: float = 0.0) -> np.ndarray:
        probabilities = np.linspace(0.0, 1.0, N_PROBABILITIES)
        out = np.zeros((N_K_ROWS, N_PROBABILITIES))
        for i, kinetic in enumerate(k_rows_eV()):
            omega, density = self.loss_spectrum(float(kinetic), floor_eV)
            if len(omega) < 2:
                out[i] = np.log(max(float(kinetic) - self.min_excitation_eV, self.omega[0]))
                continue
            cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(omega))])
            if cdf[-1] <= 0:
                out[i] = np.log(omega[0])
                continue
            cdf /= cdf[-1]
            # invert the piecewise-linear CDF where it rises (flat stretches have no probability)
            keep = np.concatenate([[True], np.diff(cdf) > 0])
            out[i] = np.log(np.interp(probabilities, cdf[keep], omega[keep]))
        return out


def _cache_dir() -> Path:
    root = os.environ.get("BSE_BENCH_CACHE")
    return Path(root) / "penn" if root else Path.home() / ".cache" / "bse-bench" / "penn"


def _cache_key(material: Material) -> str:
    digest = hashlib.sha256(elf_path(material).read_bytes())
    grids = (TABLE_VERSION, OMEGA_MIN_EV, OMEGA_MAX_EV, N_OMEGA, Q_MIN_SQRT_EV, Q_MAX_SQRT_EV, N_Q, N_PLASMA_NODES)
    digest.update(repr(grids).encode())
    return f"{material.elf_file.removesuffix('.dat')}-{digest.hexdigest()[:16]}"


def compute_q_cdf(material: Material) -> np.ndarray:
    """The cumulative ``int dq/q`` of the full-Penn ELF, (W, Q), from the optical data (seconds)."""
    data_w, data_elf = optical_elf(material)
    q_au = q_grid_sqrt_eV() / Q_AU_TO_SQRT_EV
    elf = penn_elf(q_au, omega_grid_eV() / HARTREE_EV, data_w, data_elf)
    log_q = np.log(q_au)
    steps = 0.5 * (elf[:, 1:] + elf[:, :-1]) * np.diff(log_q)[None, :]
    return np.concatenate([np.zeros((elf.shape[0], 1)), np.cumsum(steps, axis=1)], axis=1)


@lru_cache(maxsize=8)
def tables(material: Material) -> PennTables:
    """The material's full-Penn tables, from the disk cache or computed (and cached, atomically)."""
    path = _cache_dir() / f"{_cache_key(material)}.npy"
    q_cdf = None
    if path.is_file():
        try:
            q_cdf = np.load(path, allow_pickle=False)
            if q_cdf.shape != (N_OMEGA, N_Q) or not np.all(np.isfinite(q_cdf)):
                q_cdf = None
        except (OSError, ValueError):
            q_cdf = None
    if q_cdf is None:
        q_cdf = compute_q_cdf(material)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, q_cdf)
    return PennTables(q_cdf, material.band.min_excitation_eV)
