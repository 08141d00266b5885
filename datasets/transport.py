"""Host side of the Monte Carlo transport: geometry preparation and the CPU / CUDA launches.

:class:`Transport` turns a batch of voxel geometries ``(G, Z, Y, X)`` of material indices and
the :class:`~datasets.physics.PhysicsTables` into the flat arrays the fused kernel of
:mod:`datasets.kernel` reads (material grid, safety distances, slab planes, tables), and runs
the kernel on the CPU (Numba threads) or on a CUDA GPU (one thread per primary). The memory is
the geometry, the tables and one counter per tally bin: nothing grows with the number of
electrons or flights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from datasets import kernel
from datasets.physics import PhysicsTables

#: Primaries per kernel launch: a progress update (and a chance to interrupt) between launches.
CPU_ELECTRONS_PER_CALL = 4_000_000
CUDA_ELECTRONS_PER_LAUNCH = 1 << 26
CUDA_THREADS_PER_BLOCK = 128
#: A history longer than this many flights is abandoned and counted as lost (never seen).
MAX_FLIGHTS = 1_000_000


@dataclass
class TransportStats:
    """Work done by a run: primaries, free flights (real + null collisions), elastic events,
    secondaries created by hard collisions (and dropped when a cascade's stack was full)."""

    primaries: int = 0
    flights: int = 0
    elastic_events: int = 0
    detected: int = 0  # detected electrons (primaries and secondaries)
    lost: int = 0  # histories abandoned after MAX_FLIGHTS flights (should stay 0)
    secondaries: int = 0
    dropped_secondaries: int = 0  # should stay 0 (stack depth kernel.STACK_DEPTH)
    device_bytes: int = 0  # largest set of arrays a CUDA run held on the GPU

    def add(self, other: TransportStats) -> None:
        for field in ("primaries", "flights", "elastic_events", "detected", "lost", "secondaries",
                      "dropped_secondaries"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.device_bytes = max(self.device_bytes, other.device_bytes)


def material_ids_to_indices(geometry: np.ndarray, id_to_index: dict[int, int]) -> np.ndarray:
    """Map material ids of a geometry to the transport's material indices (0 = vacuum)."""
    lut = np.zeros(256, dtype=np.uint8)
    for material_id, index in id_to_index.items():
        lut[material_id] = index
    return lut[np.asarray(geometry, dtype=np.uint8)]


def safety_distances(grid: np.ndarray, z_top: int, z_bot: int, cap_voxels: int = 8) -> np.ndarray:
    """Distance (in voxels) from anywhere inside each voxel to the nearest voxel of another material.

    The distance between voxel boxes offset by integer steps d is ``|max(0, |d| - 1)|``, which is
    the centre distance to the other material dilated by one voxel (3x3x3), so a Euclidean
    distance transform of the dilated set gives it exactly. Lateral faces are mirrors (the
    mirrored world is padded in), the layers above ``z_top`` and below ``z_bot`` count as the
    same material (the planes are handled exactly by the transport), and the result is capped at
    ``cap_voxels`` (8 voxels: larger caps cost more setup than they save flights). Inside this distance a free flight cannot meet another material, so it can be
    sampled with the local mean free path (no null collisions).
    """
    out = np.zeros(grid.shape, dtype=np.float32)
    slab = grid[z_top:z_bot]
    pad = cap_voxels + 1
    padded = np.pad(slab, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    padded = np.pad(padded, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    core = (slice(pad, pad + slab.shape[0]), slice(pad, pad + slab.shape[1]), slice(pad, pad + slab.shape[2]))
    result = np.zeros(slab.shape, dtype=np.float32)
    for material in np.unique(slab):
        other = padded != material
        if other.any():
            near_other = ndimage.binary_dilation(other, structure=np.ones((3, 3, 3), bool))
            dist = ndimage.distance_transform_edt(~near_other)[core]
        else:
            dist = np.full(slab.shape, cap_voxels, dtype=np.float32)
        here = slab == material
        result[here] = np.minimum(dist[here], cap_voxels)
    out[z_top:z_bot] = result
    return out


def slab_planes(grids: np.ndarray, voxel_nm: float, semi_infinite: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First and last occupied layer of each geometry, and the planes ``(G, 2)`` (z_top, z_bot) nm."""
    n_geom, nz = grids.shape[:2]
    occupied = (grids != 0).reshape(n_geom, nz, -1).any(axis=2)
    if not occupied.any(axis=1).all():
        raise ValueError("a geometry of the batch contains no material at all")
    first = occupied.argmax(axis=1)
    last = nz - 1 - occupied[:, ::-1].argmax(axis=1)
    planes = np.stack([first * voxel_nm, (last + 1) * voxel_nm], axis=1).astype(np.float64)
    if semi_infinite:
        planes[:, 1] = kernel.FAR_NM
    return first, last, planes


class Transport:
    """A batch of voxel geometries ``(G, Z, Y, X)`` of material indices, ready for the kernel.

    ``voxel_nm`` is the voxel edge. With ``semi_infinite`` the last layer extends to z = +inf
    (bulk targets); otherwise electrons leaving through the bottom plane of the slab reach the
    terminator and are removed. ``cutoff_eV``: electrons at or below it are dropped (they can no
    longer be detected); one leaving the slab upwards above it is counted. ``max_events`` (tests):
    end each history at that elastic event.
    """

    def __init__(self, grids: np.ndarray, tables: PhysicsTables, voxel_nm: float = 1.0,
                 semi_infinite: bool = False, cutoff_eV: float = 50.0, max_flights: int = MAX_FLIGHTS,
                 max_events: int | None = None):
        grids = np.ascontiguousarray(grids, dtype=np.uint8)
        if grids.ndim != 4:
            raise ValueError(f"grids must be (G, Z, Y, X), got {grids.shape}")
        if float(cutoff_eV) != tables.cutoff_eV and tables.hard.any():
            raise ValueError(f"the transport's cutoff ({cutoff_eV} eV) differs from the one its hard-collision "
                             f"tables were made for ({tables.cutoff_eV} eV)")
        if grids.max(initial=0) >= len(tables.materials):
            raise ValueError(f"material index {int(grids.max())} has no physics table ({len(tables.materials)} materials)")
        self.grids = grids
        self.tables = tables
        self.voxel_nm = float(voxel_nm)
        first, last, self.planes = slab_planes(grids, self.voxel_nm, semi_infinite)
        self.safety = np.stack([safety_distances(g, int(a), int(b) + 1) for g, a, b in zip(grids, first, last)])
        self.safety *= np.float32(voxel_nm)
        self.params = np.zeros(kernel.N_PARAMS)
        self.params[kernel.P_VOXEL_NM] = self.voxel_nm
        self.params[kernel.P_LOG_E0] = tables.log_e0
        self.params[kernel.P_INV_DLOG] = tables.inv_dlog
        self.params[kernel.P_CUTOFF_EV] = float(cutoff_eV)
        self.params[kernel.P_ICDF_LOG_E0] = tables.icdf_log_e0
        self.params[kernel.P_ICDF_INV_DLOG] = tables.icdf_inv_dlog
        self.params[kernel.P_MAX_FLIGHTS] = float(max_flights)
        self.params[kernel.P_MAX_EVENTS] = float(max_events or max_flights + 1)
        self.params[kernel.P_INELASTIC] = tables.inelastic_code
        for index, value in tables.penn_grid_params.items():
            self.params[index] = value

    def kernel_arrays(self) -> tuple:
        """The arguments of :func:`datasets.kernel.follow_primary` after ``(key, x, y, energy, geometry)``."""
        t = self.tables
        return (self.grids, self.safety, self.planes, t.imfp, t.hard_table, t.stopping, t.majorant, t.surface,
                t.band, t.loss_icdf, t.q_cdf, t.elastic_code, t.z_of, t.icdf, self.params)

    def run(self, beam_x_nm, beam_y_nm, energies_eV, electrons_per_pixel: int, seed: int, device: str = "cpu",
            stats: TransportStats | None = None, progress=None) -> np.ndarray:
        """Counts ``(G, E, P)`` of detected electrons (primaries and their secondaries) for a beam at ``(beam_x[p], beam_y[p])``.

        Each of the G x E x P bins gets ``electrons_per_pixel`` primaries at normal incidence,
        starting at the slab's top plane (they cross the vacuum above it unchanged). Primary
        ``n`` of bin (g, e, p) draws from the stream ``electron_key(seed, g, e, p, n)``.
        ``progress(n)`` is called with the number of primaries finished after each launch.
        """
        beam_x = np.ascontiguousarray(beam_x_nm, dtype=np.float64)
        beam_y = np.ascontiguousarray(beam_y_nm, dtype=np.float64)
        energies = np.ascontiguousarray(energies_eV, dtype=np.float64)
        n_per_bin = int(electrons_per_pixel)
        if seed < 0 or int(seed) != seed:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        counts = np.zeros((self.grids.shape[0], energies.size, beam_x.size), dtype=np.int64)
        device = str(device)
        device_bytes = 0
        if device.startswith("cuda"):
            tallies, device_bytes = self._run_cuda(int(seed), n_per_bin, beam_x, beam_y, energies, counts, device, progress)
        else:
            tallies = self._run_cpu(int(seed), n_per_bin, beam_x, beam_y, energies, counts, progress)
        if stats is not None:
            stats.add(TransportStats(primaries=counts.size * n_per_bin, flights=int(tallies[..., 0].sum()),
                                     elastic_events=int(tallies[..., 1].sum()), detected=int(counts.sum()),
                                     lost=int(tallies[..., 2].sum()), secondaries=int(tallies[..., 3].sum()),
                                     dropped_secondaries=int(tallies[..., 4].sum()), device_bytes=device_bytes))
        return counts

    def _run_cpu(self, seed, n_per_bin, beam_x, beam_y, energies, counts, progress):
        tallies = np.zeros((*counts.shape, 5), dtype=np.int64)
        n_bins = counts.size
        bins_per_call = max(1, min(n_bins, math.ceil(CPU_ELECTRONS_PER_CALL / max(n_per_bin, 1))))
        for first in range(0, n_bins, bins_per_call):
            stop = min(n_bins, first + bins_per_call)
            kernel.run_cpu(seed, first, stop, n_per_bin, beam_x, beam_y, energies, *self.kernel_arrays(), counts, tallies)
            if progress is not None:
                progress((stop - first) * n_per_bin)
        return tallies

    def _run_cuda(self, seed, n_per_bin, beam_x, beam_y, energies, counts, device, progress):
        from numba import cuda

        index = int(device.split(":", 1)[1]) if ":" in device else 0
        cuda_kernel = kernel.cuda_kernel()
        with cuda.gpus[index]:
            (grids, safety, planes, imfp, hard, stopping, majorant, surface, band, loss_icdf, q_cdf, code, z_of,
             icdf, params) = self.kernel_arrays()
            on_gpu = [cuda.to_device(a) for a in (beam_x, beam_y, energies, grids, safety, planes, imfp, hard,
                                                  stopping, majorant, surface, band, loss_icdf, q_cdf)]
            d_z, d_icdf, d_params = cuda.to_device(z_of), cuda.to_device(icdf), cuda.to_device(params)
            d_counts = cuda.to_device(counts)
            d_tallies = cuda.to_device(np.zeros((4096, 5), dtype=np.int64))
            total = counts.size * n_per_bin
            for first in range(0, total, CUDA_ELECTRONS_PER_LAUNCH):
                n = min(CUDA_ELECTRONS_PER_LAUNCH, total - first)
                blocks = (n + CUDA_THREADS_PER_BLOCK - 1) // CUDA_THREADS_PER_BLOCK
                cuda_kernel[blocks, CUDA_THREADS_PER_BLOCK](seed, first, n, n_per_bin, *on_gpu, code,
                                                            d_z, d_icdf, d_params, d_counts, d_tallies)
                cuda.synchronize()
                if progress is not None:
                    progress(n)
            counts[...] = d_counts.copy_to_host()
            held = [*on_gpu, d_z, d_icdf, d_params, d_counts, d_tallies]
            return d_tallies.copy_to_host(), sum(int(a.nbytes) for a in held)
