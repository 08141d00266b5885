"""The previous, lock-step torch transport engine: kept only as a test oracle and bench baseline.

Not used by any pipeline (:mod:`datasets.transport` with the fused kernel of
:mod:`datasets.kernel` is the engine). It implements the same physics with a different
algorithm and random generator: every loop iteration moves all live electrons by one free
flight with ~150 small torch kernels, drawing from a seeded ``torch.Generator``. The
equivalence tests (``tests/test_kernel.py``) compare the two engines' statistics, and
``python -m datasets bench --compare`` times both in one run. Its physics reads the same
:class:`~datasets.physics.PhysicsTables` as the kernel; only the angular samplers are its own
torch copies (:func:`_cos_theta`), frozen with it.

Algorithm per flight: delta tracking with the majorant next to boundaries and the local mean
free path beyond the safety distance; planes; mirror folding; trapezoid energy loss; elastic
scattering at real collisions (see :mod:`datasets.kernel`, which does the same per electron).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from datasets import kernel
from datasets.physics import PhysicsTables
from datasets.transport import TransportStats, safety_distances


class TorchTables:
    """:class:`PhysicsTables` as flat torch tensors on one device, with the torch angular sampler."""

    def __init__(self, tables: PhysicsTables, device="cpu"):
        self.device = torch.device(device)
        self.n_grid = tables.n_grid
        self.log_e0, self.inv_dlog = tables.log_e0, tables.inv_dlog
        as_tensor = lambda a: torch.tensor(np.asarray(a).reshape(-1), dtype=torch.float32, device=self.device)  # noqa: E731
        self.imfp, self.stopping, self.majorant = as_tensor(tables.imfp), as_tensor(tables.stopping), as_tensor(tables.majorant)
        self.code = tables.elastic_code
        self.z = as_tensor(tables.z_of).clamp_min(1.0)
        self.icdf = as_tensor(tables.icdf)
        self.icdf_shape = tables.icdf.shape
        self.icdf_log_e0, self.icdf_inv_dlog = tables.icdf_log_e0, tables.icdf_inv_dlog

    def energy_index(self, energy_eV: torch.Tensor) -> torch.Tensor:
        k = ((energy_eV.log() - self.log_e0) * self.inv_dlog + 0.5).long()
        return k.clamp_(0, self.n_grid - 1)

    def sample_cos_theta(self, material, energy_eV, u1, u2):
        return _cos_theta(self, material, energy_eV, u1, u2)


def _cos_theta(t: TorchTables, material, energy_eV, u1, u2):
    """The elastic models' polar angles (as in :mod:`datasets.kernel`), vectorised in torch."""
    z = t.z.index_select(0, material)
    e_keV = energy_eV * 1e-3
    if t.code == kernel.ELASTIC_RUTHERFORD:
        alpha = 3.4e-3 * z**0.67 / e_keV
        return 1.0 - 2.0 * alpha * u2 / (1.0 + alpha - u2)
    if t.code == kernel.ELASTIC_BROWNING:
        r = 300.0 * e_keV / z + z**3 / (3.0e5 * e_keV)
        alpha = 7.0e-3 / e_keV
        rutherford = 1.0 - 2.0 * alpha * u2 / (1.0 + alpha - u2)
        return torch.where(u1 * (1.0 + r) <= r, rutherford, 1.0 - 2.0 * u2)
    n_materials, n_energies, n_columns = t.icdf_shape
    k_float = ((energy_eV.log() - t.icdf_log_e0) * t.icdf_inv_dlog).clamp(0, n_energies - 1.000001)
    k0 = k_float.floor()
    row = (k0 + (u1 < (k_float - k0)).to(k0.dtype)).long()
    j_float = u2 * (n_columns - 1)
    j0 = j_float.floor().clamp(max=n_columns - 2)
    base = (material.long() * n_energies + row) * n_columns + j0.long()
    lo = t.icdf.index_select(0, base)
    return lo + (t.icdf.index_select(0, base + 1) - lo) * (j_float - j0)


class VoxelTransport:
    """Follow electrons through a batch of voxel geometries ``(G, Z, Y, X)`` of material indices.

    ``voxel_nm`` is the voxel edge. With ``semi_infinite`` the last layer extends to z = +inf
    (bulk targets); otherwise electrons leaving through the bottom plane of the slab reach the
    terminator and are removed.

    Flights combine delta tracking with *safety distances* (:func:`safety_distances`): where
    the electron is at least ``d`` nm from any other material, the flight is drawn with the local
    inverse mean free path and stopped (without collision, the exponential being memoryless) at
    ``d`` if longer; next to a boundary the majorant is used. Both are exact.
    """

    def __init__(self, grids, tables: PhysicsTables, voxel_nm: float = 1.0, semi_infinite: bool = False,
                 cutoff_eV: float = 50.0, max_flights: int = 1_000_000, device="cpu"):
        grids_np = np.asarray(grids)
        if grids_np.ndim != 4:
            raise ValueError(f"grids must be (G, Z, Y, X), got {tuple(grids_np.shape)}")
        self.tables = TorchTables(tables, device)
        self.device = self.tables.device
        self.n_geom, self.nz, self.ny, self.nx = grids_np.shape
        occupied = (grids_np != 0).reshape(self.n_geom, self.nz, -1).any(axis=2)
        if not occupied.any(axis=1).all():
            raise ValueError("a geometry of the batch contains no material at all")
        first = occupied.argmax(axis=1)
        last = self.nz - 1 - occupied[:, ::-1].argmax(axis=1)
        safety = np.stack([safety_distances(g, int(a), int(b) + 1) for g, a, b in zip(grids_np, first, last)])
        self.grids = torch.as_tensor(grids_np.reshape(-1).astype(np.int64), device=self.device)
        self.safety = torch.as_tensor(safety.reshape(-1) * float(voxel_nm), device=self.device)
        self.voxel = float(voxel_nm)
        self.size_x = self.nx * self.voxel
        self.size_y = self.ny * self.voxel
        self.cutoff_eV = float(cutoff_eV)
        self.max_flights = int(max_flights)
        self.z_top = torch.as_tensor(first * self.voxel, dtype=torch.float32, device=self.device)
        z_bot = torch.as_tensor((last + 1) * self.voxel, dtype=torch.float32, device=self.device)
        self.z_bot = torch.full_like(z_bot, math.inf) if semi_infinite else z_bot

    # ------------------------------------------------------------------ helpers
    def _voxel_index(self, x, y, z, geom_offset):
        inv = 1.0 / self.voxel
        ix = (x * inv).long().clamp_(0, self.nx - 1)
        iy = (y * inv).long().clamp_(0, self.ny - 1)
        iz = (z * inv).long().clamp_(0, self.nz - 1)
        return geom_offset + (iz * self.ny + iy) * self.nx + ix

    @staticmethod
    def _fold(coord: torch.Tensor, direction: torch.Tensor, size: float):
        """Mirror-fold an unfolded coordinate into [0, size), flipping the direction on odd folds."""
        n_fold = torch.floor(coord * (1.0 / size))
        local = coord - n_fold * size
        odd = torch.remainder(n_fold, 2.0) == 1.0
        coord = torch.where(odd, size - local, local).clamp_(0.0, size * (1 - 1e-7))
        direction = torch.where(odd, -direction, direction)
        return coord, direction

    @staticmethod
    def _rotate(ux, uy, uz, cos_t, phi):
        """Rotate unit vectors (ux, uy, uz) by polar angle theta and azimuth phi."""
        sin_t = (1.0 - cos_t * cos_t).clamp_(min=0.0).sqrt_()
        cos_p, sin_p = torch.cos(phi), torch.sin(phi)
        t = (1.0 - uz * uz).clamp_(min=1e-12).sqrt_()
        a = sin_t / t
        nx = ux * cos_t + a * (ux * uz * cos_p - uy * sin_p)
        ny = uy * cos_t + a * (uy * uz * cos_p + ux * sin_p)
        nz = uz * cos_t - sin_t * cos_p * t
        polar = t < 1e-5
        nx = torch.where(polar, sin_t * cos_p, nx)
        ny = torch.where(polar, sin_t * sin_p, ny)
        nz = torch.where(polar, torch.where(uz >= 0, cos_t, -cos_t), nz)
        norm = torch.rsqrt(nx * nx + ny * ny + nz * nz)
        return nx * norm, ny * norm, nz * norm

    # ------------------------------------------------------------------ one free flight
    def _flight(self, state: torch.Tensor, geom_offset: torch.Tensor, rand: torch.Tensor):
        """Move every electron by one free flight; scatter those with a real collision.

        ``state`` rows: x, y, z, ux, uy, uz, E (eV), z_top, z_bot; ``rand`` (6, n) uniforms.
        Returns the new state, the mask of electrons still in flight, the mask of detected ones
        and the mask of real (elastic) collisions.
        """
        tables = self.tables
        n_grid = tables.n_grid
        x, y, z, ux, uy, uz, energy, z_top, z_bot = state.unbind(0)
        k = tables.energy_index(energy)
        voxel = self._voxel_index(x, y, z, geom_offset)
        m_start = self.grids.index_select(0, voxel)
        safe = self.safety.index_select(0, voxel)
        local = safe > 0
        mu = torch.where(local, tables.imfp.index_select(0, m_start * n_grid + k), tables.majorant.index_select(0, k))
        step = -torch.log1p(-rand[0]) / mu  # nm (inf where mu = 0: vacuum)
        limit = torch.where(local, safe, torch.full_like(safe, math.inf))
        candidate = step <= limit
        step = torch.minimum(step, limit)
        z_end = z + step * uz
        leave_top = z_end < z_top
        leave_bot = z_end >= z_bot
        step = torch.where(leave_top, (z_top - z) / uz, step)
        step = torch.where(leave_bot, (z_bot - z) / uz, step)
        x, ux = self._fold(x + step * ux, ux, self.size_x)
        y, uy = self._fold(y + step * uy, uy, self.size_y)
        z = z + step * uz
        left = leave_top | leave_bot
        m_end = self.grids.index_select(0, self._voxel_index(x, y, z, geom_offset))
        m_loss = torch.where(left, m_start, m_end)
        energy = energy - 0.5 * step * (tables.stopping.index_select(0, m_start * n_grid + k)
                                         + tables.stopping.index_select(0, m_loss * n_grid + k))
        above_cutoff = energy > self.cutoff_eV
        detected = leave_top & above_cutoff
        alive = above_cutoff & ~left
        real = alive & candidate & (rand[1] * mu < tables.imfp.index_select(0, m_end * n_grid + k))
        cos_t = tables.sample_cos_theta(m_end, energy.clamp(min=self.cutoff_eV), rand[2], rand[3]).clamp(-1.0, 1.0)
        nx, ny, nz = self._rotate(ux, uy, uz, cos_t, rand[4] * (2.0 * math.pi))
        ux = torch.where(real, nx, ux)
        uy = torch.where(real, ny, uy)
        uz = torch.where(real, nz, uz)
        return torch.stack((x, y, z, ux, uy, uz, energy, z_top, z_bot)), alive, detected, real

    # ------------------------------------------------------------------ main loop
    def run(self, source, n_primaries: int, n_tally: int, generator: torch.Generator,
            population: int = 1 << 20, stats: TransportStats | None = None, progress=None) -> torch.Tensor:
        """Transport ``n_primaries`` primaries and return detected counts per tally bin.

        ``source(start, stop)`` returns ``(x, y, energy_eV, geom_index, tally_index)`` tensors
        for primaries ``start..stop-1`` (normal incidence along +z; they fly through the vacuum
        above the slab and start at its top plane). At most ``population`` electrons are
        followed at once; the population is refilled from the source as electrons finish, so
        the loop never runs on a thin tail except at the very end.
        """
        dev = self.device
        stats = stats if stats is not None else TransportStats()
        counts = torch.zeros(n_tally, dtype=torch.int64, device=dev)
        cube = self.nz * self.ny * self.nx
        state = torch.empty((9, 0), device=dev)  # x, y, z, ux, uy, uz, E, z_top, z_bot
        ids = torch.empty((2, 0), dtype=torch.int64, device=dev)  # geometry offset, tally bin
        next_primary = 0

        for _ in range(self.max_flights):
            n_alive = state.shape[1]
            if n_alive < population // 2 and next_primary < n_primaries:
                stop = min(n_primaries, next_primary + population - n_alive)
                x0, y0, e0, g0, t0 = source(next_primary, stop)
                g0 = g0.to(dev).long()
                fresh = torch.stack((x0.float(), y0.float(), self.z_top[g0], torch.zeros_like(e0), torch.zeros_like(e0),
                                     torch.ones_like(e0), e0.float(), self.z_top[g0], self.z_bot[g0]))
                state = torch.cat((state, fresh), dim=1)
                ids = torch.cat((ids, torch.stack((g0 * cube, t0.to(dev).long()))), dim=1)
                stats.primaries += stop - next_primary
                if progress is not None:
                    progress(stop - next_primary)
                next_primary = stop
            n = state.shape[1]
            if n == 0:
                break
            stats.flights += n
            rand = torch.rand((5, n), generator=generator, device=dev)
            state, alive, detected, real = self._flight(state, ids[0], rand)
            hits = ids[1].masked_select(detected)
            if hits.numel():
                counts.index_add_(0, hits, torch.ones_like(hits))
            stats.elastic_events += int(real.sum())
            keep = alive.nonzero().squeeze(1)
            if keep.numel() < n:
                state = state.index_select(1, keep)
                ids = ids.index_select(1, keep)
        else:
            stats.lost += int(state.shape[1])
        stats.detected += int(counts.sum())
        return counts



def simulate_counts(geometries, energies_keV, electrons_per_pixel: int, seed: int, tables: PhysicsTables,
                    voxel_nm: float = 1.0, cutoff_eV: float = 50.0, device="cpu",
                    stats: TransportStats | None = None, population: int = 1 << 18) -> np.ndarray:
    """Counts ``(G, E, Y, X)`` of material-index grids ``(G, Z, Y, X)`` (beam at the pixel centres)."""
    grids = np.asarray(geometries)
    n_geom, _, ny, nx = grids.shape
    energies_eV = torch.tensor(np.asarray(energies_keV, dtype=np.float64) * 1e3, dtype=torch.float32)
    n_energy, n_pixel = len(energies_eV), ny * nx
    n_tally = n_geom * n_energy * n_pixel
    transport = VoxelTransport(grids, tables, voxel_nm=voxel_nm, cutoff_eV=cutoff_eV, device=device)
    generator = torch.Generator(device=device).manual_seed(int(seed))

    def source(start: int, stop: int):
        tally = torch.arange(start, stop) // int(electrons_per_pixel)
        pixel = tally % n_pixel
        x = ((pixel % nx).float() + 0.5) * voxel_nm
        y = ((pixel // nx).float() + 0.5) * voxel_nm
        return x, y, energies_eV[(tally // n_pixel) % n_energy], tally // (n_pixel * n_energy), tally

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # this engine's small kernels collapse with 2 threads on 2 cores
    try:
        counts = transport.run(source, n_tally * int(electrons_per_pixel), n_tally, generator,
                               population=population, stats=stats)
    finally:
        torch.set_num_threads(previous)
    return counts.reshape(n_geom, n_energy, ny, nx).cpu().numpy()
