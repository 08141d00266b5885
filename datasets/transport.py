"""Host side of the Monte Carlo transport: geometry preparation and the CPU / CUDA launches.

:class:`Transport` turns a batch of voxel geometries ``(G, Z, Y, X)`` of material indices and
the :class:`~datasets.physics_tables.PhysicsTables` into the named array groups the fused kernel
of :mod:`datasets.kernel` reads (:mod:`datasets.kernel.layout`: the beam, the volume of material
grid, safety distances and slab planes, the physics tables), and runs
the kernel on the CPU (Numba threads) or on a CUDA GPU (one thread per primary). The memory is
the geometry, the tables and one counter per tally bin: nothing grows with the number of
electrons or flights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from datasets.detectors import PlaneDetector
from datasets.kernel import drivers, layout
from datasets.physics_tables import PhysicsTables

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
    dropped_secondaries: int = 0  # should stay 0 (stack depth layout.STACK_DEPTH)
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
        planes[:, 1] = layout.FAR_NM
    return first, last, planes


class Transport:
    """A batch of voxel geometries ``(G, Z, Y, X)`` of material indices, ready for the kernel.

    ``voxel_nm`` is the voxel edge. With ``semi_infinite`` the last layer extends to z = +inf
    (bulk targets); otherwise electrons leaving through the bottom plane of the slab reach the
    terminator and are removed. ``cutoff_eV``: electrons at or below it are dropped (they can no
    longer be detected); one leaving the slab upwards above it is counted. ``max_events`` (tests):
    end each history at that elastic event. ``detector``: a :mod:`datasets.detectors` detector
    (default the plane).
    """

    def __init__(self, grids: np.ndarray, tables: PhysicsTables, voxel_nm: float = 1.0,
                 semi_infinite: bool = False, cutoff_eV: float = 50.0, max_flights: int = MAX_FLIGHTS,
                 max_events: int | None = None, detector=None):
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
        self.params = kernel_params(tables, self.voxel_nm, cutoff_eV, max_flights, max_events)
        self.detector = detector or PlaneDetector()
        for index, value in self.detector.kernel_params().items():
            self.params[index] = value

    def kernel_inputs(self) -> tuple[layout.Volume, layout.Tables]:
        """The kernel's :class:`~datasets.kernel.layout.Volume` and
        :class:`~datasets.kernel.layout.Tables` of this batch (host arrays)."""
        t = self.tables
        volume = layout.Volume(grid=self.grids, safety=self.safety, planes=self.planes)
        tables = layout.Tables(imfp=t.imfp, hard=t.hard_table, stopping=t.stopping, majorant=t.majorant,
                               surface=t.surface, band=t.band, loss_icdf=t.loss_icdf, q_cdf=t.q_cdf,
                               model=t.elastic_code, z_of=t.z_of, icdf=t.icdf, params=self.params)
        return volume, tables

    def run(self, beam_x_nm, beam_y_nm, energies_eV, simulated_electrons_per_pixel: int, seed: int,
            device: str = "cpu", stats: TransportStats | None = None, progress=None, probe_sigma_nm=None,
            energy_sigma_eV=None) -> np.ndarray:
        """Counts ``(G, E, P)`` of detected electrons (primaries and their secondaries) for a beam at ``(beam_x[p], beam_y[p])``.

        Each of the G x E x P bins gets ``simulated_electrons_per_pixel`` primaries at normal
        incidence, starting at the slab's top plane (they cross the vacuum above it unchanged).
        Primary ``n`` of bin (g, e, p) draws from the stream ``electron_key(seed, g, e, p, n)``.
        ``probe_sigma_nm`` and ``energy_sigma_eV`` (E,): the Gaussian probe's and the energy
        spread's standard deviations per energy (default 0: a point, mono-energetic beam). The
        counts are int64, or float64 weighted counts for a weighted (annular) detector.
        ``progress(n)`` is called with the number of primaries finished after each launch.
        """
        energy = np.ascontiguousarray(energies_eV, dtype=np.float64)
        zeros = np.zeros(energy.size)
        beam = layout.Beam(x=np.ascontiguousarray(beam_x_nm, dtype=np.float64),
                           y=np.ascontiguousarray(beam_y_nm, dtype=np.float64), energy=energy,
                           sigma=zeros if probe_sigma_nm is None else _per_energy(probe_sigma_nm, energy.size),
                           spread=zeros if energy_sigma_eV is None else _per_energy(energy_sigma_eV, energy.size))
        per_pixel = int(simulated_electrons_per_pixel)
        if seed < 0 or int(seed) != seed:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        counts = np.zeros((self.grids.shape[0], beam.energy.size, beam.x.size), dtype=np.int64)
        device = str(device)
        device_bytes = 0
        if device.startswith("cuda"):
            tallies, device_bytes = self._run_cuda(int(seed), per_pixel, beam, counts, device, progress)
        else:
            tallies = self._run_cpu(int(seed), per_pixel, beam, counts, progress)
        if stats is not None:
            stats.add(_stats_of(counts, tallies, per_pixel, device_bytes))
        if self.detector.weighted:
            return counts / layout.WEIGHT_UNIT
        return counts

    def _run_cpu(self, seed, per_pixel, beam, counts, progress):
        tallies = np.zeros((*counts.shape, layout.N_TALLIES), dtype=np.int64)
        volume, tables = self.kernel_inputs()
        n_bins = counts.size
        bins_per_call = max(1, min(n_bins, math.ceil(CPU_ELECTRONS_PER_CALL / max(per_pixel, 1))))
        for first in range(0, n_bins, bins_per_call):
            stop = min(n_bins, first + bins_per_call)
            drivers.run_cpu(seed, first, stop, per_pixel, beam, volume, tables, counts, tallies)
            if progress is not None:
                progress((stop - first) * per_pixel)
        return tallies

    def _run_cuda(self, seed, per_pixel, beam, counts, device, progress):
        from numba import cuda

        index = int(device.split(":", 1)[1]) if ":" in device else 0
        cuda_kernel = drivers.cuda_kernel()
        with cuda.gpus[index]:
            volume, tables = self.kernel_inputs()
            d_beam, d_volume, d_tables = (_to_device(group) for group in (beam, volume, tables))
            d_counts = cuda.to_device(counts)
            d_tallies = cuda.to_device(np.zeros((4096, layout.N_TALLIES), dtype=np.int64))
            total = counts.size * per_pixel
            for first in range(0, total, CUDA_ELECTRONS_PER_LAUNCH):
                n = min(CUDA_ELECTRONS_PER_LAUNCH, total - first)
                blocks = (n + CUDA_THREADS_PER_BLOCK - 1) // CUDA_THREADS_PER_BLOCK
                cuda_kernel[blocks, CUDA_THREADS_PER_BLOCK](seed, first, n, per_pixel, d_beam, d_volume, d_tables,
                                                            d_counts, d_tallies)
                cuda.synchronize()
                if progress is not None:
                    progress(n)
            counts[...] = d_counts.copy_to_host()
            held = [a for group in (d_beam, d_volume, d_tables) for a in group if hasattr(a, "nbytes")]
            held += [d_counts, d_tallies]
            return d_tallies.copy_to_host(), sum(int(a.nbytes) for a in held)


def kernel_params(tables: PhysicsTables, voxel_nm: float, cutoff_eV: float, max_flights: int,
                  max_events: int | None) -> np.ndarray:
    """The kernel's float64 ``params`` vector (:mod:`datasets.kernel.layout` ``P_*`` entries)."""
    params = np.zeros(layout.N_PARAMS)
    params[layout.P_VOXEL_NM] = voxel_nm
    params[layout.P_LOG_E0] = tables.log_e0
    params[layout.P_INV_DLOG] = tables.inv_dlog
    params[layout.P_CUTOFF_EV] = float(cutoff_eV)
    params[layout.P_ICDF_LOG_E0] = tables.icdf_log_e0
    params[layout.P_ICDF_INV_DLOG] = tables.icdf_inv_dlog
    params[layout.P_MAX_FLIGHTS] = float(max_flights)
    params[layout.P_MAX_EVENTS] = float(max_events or max_flights + 1)
    params[layout.P_INELASTIC] = tables.inelastic_code
    for index, value in tables.penn_grid_params.items():
        params[index] = value
    return params


def _per_energy(values, n_energies: int) -> np.ndarray:
    values = np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype=np.float64), (n_energies,)))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"probe widths and energy spreads must be non-negative numbers, got {values.tolist()}")
    return values


def _to_device(group):
    """A named tuple of the kernel's with every array copied to the current CUDA device."""
    from numba import cuda

    return type(group)(*(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in group))


def _stats_of(counts: np.ndarray, tallies: np.ndarray, per_pixel: int, device_bytes: int) -> TransportStats:
    """The :class:`TransportStats` of one run from its counts and ``TALLY_*`` statistics."""
    def total(column):
        return int(tallies[..., column].sum())

    return TransportStats(primaries=counts.size * per_pixel, flights=total(layout.TALLY_FLIGHTS),
                          elastic_events=total(layout.TALLY_EVENTS), detected=total(layout.TALLY_DETECTED),
                          lost=total(layout.TALLY_LOST), secondaries=total(layout.TALLY_CREATED),
                          dropped_secondaries=total(layout.TALLY_DROPPED), device_bytes=device_bytes)
