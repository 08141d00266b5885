"""The kernel's data layout: the named array groups it reads, their index constants, its codes.

Both drivers receive the beam as one :class:`Beam`, the geometry batch as one :class:`Volume` and
the physics as one :class:`Tables`: Numba-typed named tuples of arrays built by
:meth:`datasets.transport.Transport.kernel_inputs` (host arrays for the CPU, device arrays for
CUDA, the same field order). Nothing here is compiled; the compiled functions read the fields by
name.
"""

from __future__ import annotations

from collections import namedtuple

#: The voxel geometries of a batch: ``grid[g, z, y, x]`` material indices (uint8, 0 vacuum);
#: ``safety[g, z, y, x]`` distance (nm) from the voxel to any other material; ``planes[g] =
#: (z_top, z_bot)`` nm (``z_bot = FAR_NM`` for a semi-infinite target).
Volume = namedtuple("Volume", ["grid", "safety", "planes"])

#: The beam raster: ``x[p]``, ``y[p]`` (nm) of each pixel, ``energy[e]`` (eV) of each beam energy;
#: the probe: ``sigma[e]`` (nm) the Gaussian beam profile's standard deviation at energy e
#: (FWHM / (2 sqrt(2 ln 2)); 0: a point beam at the pixel centre, no draw) and ``spread[e]`` (eV)
#: the standard deviation of the primaries' energy around ``energy[e]`` (0: mono-energetic).
Beam = namedtuple("Beam", ["x", "y", "energy", "sigma", "spread"])

#: The physics on the kernel's log energy grid (:class:`datasets.physics_tables.PhysicsTables`):
#: ``imfp[m, k]`` (1/nm) elastic plus hard-inelastic inverse mean free path; ``hard[m, 0, k]`` its
#: hard-inelastic part and ``hard[m, 1 + j, k]`` that of shell j; ``stopping[m, k]`` (eV/nm) the
#: continuous (soft) loss; ``majorant[k] >= max_m imfp[m, k]``; ``surface[m] = (barrier U,
#: binding B_j of each shell j)`` eV; full-Penn model: ``band[m]`` (``BAND_*`` columns),
#: ``loss_icdf`` and ``q_cdf`` (:func:`datasets.kernel.inelastic.penn_event`); the elastic
#: sampler's ``model`` code, ``z_of[m]`` and Mott ``icdf``; ``params``, the float64 vector of
#: ``P_*`` entries.
Tables = namedtuple("Tables", ["imfp", "hard", "stopping", "majorant", "surface", "band", "loss_icdf", "q_cdf",
                               "model", "z_of", "icdf", "params"])

#: Indices into ``Tables.params``.
(P_VOXEL_NM, P_LOG_E0, P_INV_DLOG, P_CUTOFF_EV, P_ICDF_LOG_E0, P_ICDF_INV_DLOG, P_MAX_FLIGHTS,
 P_MAX_EVENTS, P_INELASTIC, P_LOSS_LOG_K0, P_LOSS_INV_DLOG, P_OMEGA_LOG0, P_OMEGA_INV_DLOG, P_Q_LOG0,
 P_Q_INV_DLOG, P_DETECTOR, P_DET_LOW, P_DET_HIGH, P_DET_THRESHOLD_EV, P_DET_WINDOW_EV) = range(20)
N_PARAMS = 20
#: Detectors known to the kernel (``params[P_DETECTOR]``, :mod:`datasets.kernel.instrument`): the
#: plane (every electron leaving the top plane above the cutoff counts 1), the annular solid-state
#: diode (``P_DET_LOW <= sin(take-off) <= P_DET_HIGH``, response ``(E - P_DET_THRESHOLD_EV) /
#: (E0 - P_DET_THRESHOLD_EV)``) and the low-loss energy filter (``E >= E0 - P_DET_WINDOW_EV``).
DETECTOR_PLANE, DETECTOR_ANNULAR, DETECTOR_WINDOW = 0, 1, 2
#: Fixed-point unit of a weighted (annular) count: the kernel tallies ``round(w * WEIGHT_UNIT)``
#: as an integer, so CUDA's atomic sums stay exact and order independent (CPU = GPU bit for bit).
WEIGHT_UNIT = 4294967296.0  # 2^32
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
#: Secondaries waiting in one cascade (a full stack drops further secondaries, counted).
STACK_DEPTH = 32
STACK_FIELDS = 8  # x, y, z (nm), ux, uy, uz, E (eV), creation index
#: "No limit" for a flight (finite: fast math must not meet infinities).
FAR_NM = 1.0e30
#: Per-flight statistics of a tally bin (``tallies[..., i]``).
#: ``TALLY_DETECTED``: electrons the detector responded to (unweighted).
TALLY_FLIGHTS, TALLY_EVENTS, TALLY_LOST, TALLY_CREATED, TALLY_DROPPED, TALLY_DETECTED = range(6)
N_TALLIES = 6
