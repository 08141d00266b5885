"""The per-material lookup tables the transport kernel reads, made from a :class:`PhysicsConfig`."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from datasets.cross_sections import GRID_E_MAX_EV, GRID_E_MIN_EV, GRID_POINTS, energy_grid_eV
from datasets.inelastic_models import penn_soft_limit_eV
from datasets.kernel import layout
from datasets.materials import Material
from datasets.physics import PhysicsConfig


class PhysicsTables:
    """Per-material lookup tables on the log energy grid: what the transport kernel reads.

    ``materials[0]`` must be ``None`` (vacuum: no scattering, no energy loss). The kernel looks up
    the nearest grid point (0.3 % energy steps). ``imfp`` (M, K) 1/nm is the inverse mean free path
    of all discrete collisions (elastic + hard inelastic), ``hard`` (M, K) its hard-inelastic part
    and ``stopping`` (M, K) eV/nm the continuous loss (the soft part when hard collisions are
    simulated); ``elastic_imfp`` (M, K) is kept for reports. ``majorant`` (K,) is the largest
    ``imfp`` over the materials (for delta tracking); ``surface`` (M, 1 + S) = (barrier U, binding
    of each of the S shells with hard collisions) eV, ``hard_table`` (M, 1 + S, K) = (all hard
    collisions, each shell's); ``elastic_code``, ``z_of`` (M,) and ``icdf`` (M, K', J) feed the angular sampler.
    Hard collisions transfer more than ``cutoff_eV + phi`` (their secondary can be detected).
    """

    def __init__(self, materials: list[Material | None], config: PhysicsConfig, cutoff_eV: float = 50.0):
        if materials[0] is not None:
            raise ValueError("material index 0 is reserved for vacuum")
        self.materials = materials
        self.config = config
        grid = energy_grid_eV()
        elastic, stopping, inelastic = config.elastic_model(), config.stopping_model(), config.inelastic_model()
        self.cutoff_eV = float(cutoff_eV)
        n = len(materials)
        shells = [[] if m is None else inelastic.shells(m) for m in materials]
        n_shells = max(1, max(len(s) for s in shells))
        self.elastic_imfp, self.stopping = np.zeros((n, GRID_POINTS)), np.zeros((n, GRID_POINTS))
        self.shell_imfp = np.zeros((n, n_shells, GRID_POINTS))
        self.surface = np.zeros((n, 1 + n_shells))
        for i, material in enumerate(materials):
            if material is None:
                continue
            self.elastic_imfp[i] = elastic.inverse_mfp_per_nm(material, grid)
            total = stopping.stopping_eV_per_nm(material, grid)
            hard_loss = np.zeros(GRID_POINTS)
            for j, (_, binding) in enumerate(shells[i]):
                self.shell_imfp[i, j] = inelastic.hard_inverse_mfp_per_nm(material, grid, j, self.cutoff_eV)
                hard_loss += inelastic.hard_stopping_eV_per_nm(material, grid, j, self.cutoff_eV)
                self.surface[i, 1 + j] = binding
            if config.inelastic == "penn":  # every loss discrete
                self.surface[i, 0] = self._barrier(material)
                continue
            if np.any(hard_loss > total):
                worst = float(grid[np.argmax(hard_loss / total)])
                raise ValueError(f"{config.inelastic} hard-collision stopping exceeds the {config.stopping} stopping "
                                 f"power of {material.name} (near {worst:.0f} eV): the soft part would be negative")
            self.stopping[i] = np.maximum(total - hard_loss, 1e-3)
            self.surface[i, 0] = self._barrier(material)
        self.inelastic_code = int(inelastic.kernel_code)
        self._penn_tables(materials)
        self.hard = self.shell_imfp.sum(axis=1)
        #: what the kernel reads: [:, 0] all hard collisions, [:, 1 + j] those with shell j
        self.hard_table = np.ascontiguousarray(np.concatenate([self.hard[:, None], self.shell_imfp], axis=1))
        self.imfp = self.elastic_imfp + self.hard
        self.n_grid = GRID_POINTS
        self.log_e0 = math.log(GRID_E_MIN_EV)
        self.inv_dlog = (GRID_POINTS - 1) / (math.log(GRID_E_MAX_EV) - math.log(GRID_E_MIN_EV))
        self.majorant = self.imfp.max(axis=0) * 1.0001 + 1e-6
        self.elastic_code = int(elastic.kernel_code)
        self.z_of = np.array([0.0 if m is None else m.Z for m in materials])
        table = elastic.angular_table(materials)
        if table is None:
            self.icdf, self.icdf_log_e0, self.icdf_inv_dlog = np.ones((len(materials), 1, 2)), 0.0, 0.0
        else:
            icdf, icdf_grid = table
            self.icdf = np.ascontiguousarray(icdf, dtype=np.float64)
            self.icdf_log_e0 = float(np.log(icdf_grid[0]))
            self.icdf_inv_dlog = float((len(icdf_grid) - 1) / (np.log(icdf_grid[-1]) - np.log(icdf_grid[0])))

    def _barrier(self, material: Material) -> float:
        if self.config.barrier == "step":
            return material.barrier_eV
        if self.config.barrier == "inner-potential":
            if material.band is None:
                raise ValueError(f"material {material.name} has no band structure for the 'inner-potential' barrier")
            return material.band.inner_potential_eV
        return 0.0

    def _penn_tables(self, materials: list[Material | None]) -> None:
        """``band`` (M, 4 + shells), ``loss_icdf`` (M, K, P), ``q_cdf`` (M, W, Q) and their grids
        (``penn_grid_params``: kernel parameter index -> value) for the full-Penn model; 1-element
        placeholders otherwise."""
        from datasets import penn

        self.penn_grid_params: dict[int, float] = {}
        if self.config.inelastic not in ("penn", "penn-mixed"):
            self.band, self.loss_icdf, self.q_cdf = np.zeros((len(materials), 4)), np.zeros((1, 1, 2)), np.zeros((1, 1, 2))
            return
        n_shells = max(len(m.inner_shells) for m in materials if m is not None)
        self.band = np.zeros((len(materials), layout.BAND_SHELLS + 2 * n_shells))
        self.loss_icdf = np.zeros((len(materials), penn.N_K_ROWS, penn.N_PROBABILITIES))
        self.q_cdf = np.zeros((len(materials), penn.N_OMEGA, penn.N_Q))
        for i, material in enumerate(materials):
            if material is None:
                continue
            tables = penn.tables(material)
            self.q_cdf[i] = tables.q_cdf
            if self.config.inelastic == "penn-mixed":  # the hard events' losses only
                self.loss_icdf[i] = tables.loss_icdf_above(penn_soft_limit_eV(material, self.cutoff_eV))
            else:
                self.loss_icdf[i] = tables.loss_icdf
            self.band[i, layout.BAND_FERMI] = material.band.fermi_eV
            self.band[i, layout.BAND_GAP] = material.band.gap_eV
            self.band[i, layout.BAND_U] = material.band.inner_potential_eV
            self.band[i, layout.BAND_N_SHELLS] = len(material.inner_shells)
            self.band[i, layout.BAND_VALENCE] = material.valence_electrons
            for j, (electrons, binding) in enumerate(material.inner_shells):
                self.band[i, layout.BAND_SHELLS + 2 * j] = binding
                self.band[i, layout.BAND_SHELLS + 2 * j + 1] = electrons

        def log_grid(grid):  # (ln x0, 1 / d ln x) of a log-spaced grid
            return math.log(grid[0]), (len(grid) - 1) / (math.log(grid[-1]) - math.log(grid[0]))

        for (lo, inv), grid in (((layout.P_LOSS_LOG_K0, layout.P_LOSS_INV_DLOG), penn.k_rows_eV()),
                                ((layout.P_OMEGA_LOG0, layout.P_OMEGA_INV_DLOG), penn.omega_grid_eV()),
                                ((layout.P_Q_LOG0, layout.P_Q_INV_DLOG), penn.q_grid_sqrt_eV())):
            self.penn_grid_params[lo], self.penn_grid_params[inv] = log_grid(grid)

    def grid_index(self, energy_eV: float) -> int:
        """The kernel's nearest grid point of an energy."""
        k = int((math.log(energy_eV) - self.log_e0) * self.inv_dlog + 0.5)
        return min(max(k, 0), self.n_grid - 1)


@lru_cache(maxsize=16)
def _cached_tables(materials: tuple, config: PhysicsConfig, cutoff_eV: float) -> PhysicsTables:
    return PhysicsTables(list(materials), config, cutoff_eV)


def physics_tables(materials: list[Material | None], config: PhysicsConfig, cutoff_eV: float = 50.0) -> PhysicsTables:
    """The :class:`PhysicsTables` of ``(materials, config, cutoff)``, built once per process and
    shared (the full-Penn models' integrals take seconds; a simulation calls this per batch).
    Read them, never write to them. A material that cannot be hashed (a list among its fields)
    gets tables built for this call only."""
    try:
        return _cached_tables(tuple(materials), config, float(cutoff_eV))
    except TypeError as err:
        if "unhashable" not in str(err):
            raise
        return PhysicsTables(list(materials), config, cutoff_eV)
