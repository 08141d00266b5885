"""Inelastic models of the Monte Carlo: hard (discrete) collisions that create secondaries.

``none`` (continuous slowing down only), ``moller`` (Moller collisions with the valence
electrons), ``moller-shells`` (plus close collisions with the inner shells), ``penn`` (every
inelastic collision from the full Penn algorithm) and ``penn-mixed`` (its collisions that can
create a detectable secondary; the rest continuous). Each gives, per shell, the inverse mean free
path and stopping power of its hard collisions on an energy grid; the events themselves are
sampled in :mod:`datasets.kernel.inelastic`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from datasets.kernel import layout
from datasets.materials import Material

#: pi e^4 in eV^2 nm^2 (e^2 = 1.439964 eV nm)
PI_E4_EV2_NM2 = math.pi * 1.439964**2


class InelasticModel(ABC):
    """Discrete (hard) inelastic collisions, each creating a secondary electron.

    The hard/soft split (e.g. Joy 1995 ch. 6; Salvat et al., PENELOPE-2014 manual sec. 3.2.2):
    collisions with an electron of shell i (binding B_i below the vacuum level) transferring W
    above ``W_c,i = cutoff + B_i`` (its secondary leaves with W - B_i, so it can still be
    detected; no softer collision's can) are discrete events; the rest is lost continuously with
    the restricted stopping power ``S_soft = S - sum_i S_hard,i``.
    """

    name: str = ""
    version: str = "1"
    reference: str = ""
    kernel_code: int = layout.INELASTIC_MOLLER

    @abstractmethod
    def shells(self, material: Material) -> list[tuple[int, float]]:
        """``(electrons per atom, binding eV below the vacuum level)`` of each shell with hard collisions."""

    def hard_inverse_mfp_per_nm(self, material: Material, energy_eV: np.ndarray, shell: int, cutoff_eV: float) -> np.ndarray:
        """Inverse mean free path (1/nm) of hard collisions with ``shell`` (index into :meth:`shells`)."""
        electrons, binding = self.shells(material)[shell]
        return moller_inverse_mfp_per_nm(material.atoms_per_nm3 * electrons, energy_eV, cutoff_eV + binding)

    def hard_stopping_eV_per_nm(self, material: Material, energy_eV: np.ndarray, shell: int, cutoff_eV: float) -> np.ndarray:
        """Energy lost per nm (eV/nm) in those collisions."""
        electrons, binding = self.shells(material)[shell]
        return moller_stopping_eV_per_nm(material.atoms_per_nm3 * electrons, energy_eV, cutoff_eV + binding)


def _moller_domain(energy_eV, w_cut_eV):
    e = np.asarray(energy_eV, dtype=np.float64)
    ok = e > 2.0 * w_cut_eV * 1.01  # 1 %: the kernel's nearest-grid lookup must never see E < 2 W_c
    return np.where(ok, e, 4.0 * w_cut_eV), ok


def moller_inverse_mfp_per_nm(electrons_per_nm3: float, energy_eV, w_cut_eV: float) -> np.ndarray:
    """``n sigma(W_c)`` of Moller collisions (module docstring of :class:`MollerHardCollisions`), 1/nm."""
    e, ok = _moller_domain(energy_eV, w_cut_eV)
    sigma = PI_E4_EV2_NM2 / e * (1 / w_cut_eV - 1 / (e - w_cut_eV) + np.log(w_cut_eV / (e - w_cut_eV)) / e)
    return np.where(ok, electrons_per_nm3 * sigma, 0.0)


def moller_stopping_eV_per_nm(electrons_per_nm3: float, energy_eV, w_cut_eV: float) -> np.ndarray:
    """``n int_{W_c}^{E/2} W d sigma`` of Moller collisions, eV/nm."""
    e, ok = _moller_domain(energy_eV, w_cut_eV)

    def antiderivative(w):  # of W d sigma/dW over pi e^4 / E: ln W + E/(E - W) + 2 ln(E - W)
        return np.log(w) + e / (e - w) + 2 * np.log(e - w)

    s = PI_E4_EV2_NM2 / e * (antiderivative(e / 2) - antiderivative(w_cut_eV))
    return np.where(ok, electrons_per_nm3 * s, 0.0)


class NoHardCollisions(InelasticModel):
    name = "none"
    reference = "continuous slowing down only (no secondaries)"

    def shells(self, material):
        return []


class MollerHardCollisions(InelasticModel):
    """Moller collisions with the valence electrons, taken as free (Moller 1932; Murata et al.
    1981 and Joy 1995 ch. 6, the 'fast secondary' model), per electron::

        d sigma / dW = (pi e^4 / E) [1/W^2 + 1/(E - W)^2 - 1/(W (E - W))],   W_c <= W <= E/2
        sigma(W_c)   = (pi e^4 / E) [1/W_c - 1/(E - W_c) + ln(W_c / (E - W_c)) / E]
        S_hard(W_c)  = (pi e^4 / E) [ln(E / (2 W_c)) + E/(E/2) - E/(E - W_c) + 2 ln((E/2)/(E - W_c))]

    times ``n_atoms * valence_electrons``; the secondary leaves with W - phi. Zero where E <= 2 W_c.
    """

    name = "moller"
    reference = "Moller, Ann. Phys. 406, 531 (1932); Murata et al., J. Appl. Phys. 52, 4396 (1981); Joy 1995 ch. 6"

    def shells(self, material):
        if material.valence_electrons <= 0:
            raise ValueError(f"material {material.name} declares no valence electrons; the '{self.name}' model needs them")
        return [(material.valence_electrons, material.binding_eV)]


class ShellMollerHardCollisions(MollerHardCollisions):
    """``moller`` plus close (binary-encounter) collisions with the inner shells: Moller's cross
    section per shell electron for W above ``cutoff + B_i``, the secondary leaving with W - B_i
    (the close-collision part of PENELOPE's inelastic model, Salvat et al. 2014 sec. 3.2.2).
    Distant (dipole) ionisations of inner shells are not included."""

    name = "moller-shells"
    reference = ("Moller 1932 per shell, binding energies from the X-ray Data Booklet; close collisions as in "
                 "Salvat et al., PENELOPE-2014 (NEA/NSC/DOC(2015)3) sec. 3.2.2")

    def shells(self, material):
        return super().shells(material) + [(n, b + material.binding_eV) for n, b in material.inner_shells]


class PennInelastic(InelasticModel):
    """Every inelastic collision from the optical energy-loss function with the full Penn
    algorithm (:mod:`datasets.penn`; Penn, Phys. Rev. B 35, 482 (1987); Shinotsuka et al., Surf.
    Interface Anal. 47, 871 (2015)), events and secondaries as in Nebula (van Kessel and Hagen,
    SoftwareX 12, 100605 (2020); :func:`datasets.kernel.inelastic.penn_event`). All losses are discrete:
    it needs the ``none`` stopping model. Cross sections are looked up at the kinetic energy
    inside the material, ``K = E + U`` (E vacuum-referenced, U the band structure's inner
    potential)."""

    name = "penn"
    reference = ("full Penn algorithm (Penn, PRB 35, 482 (1987); Shinotsuka et al., SIA 47, 871 (2015)) on cstool 1.0.7 "
                 "optical ELF data (Palik; Henke et al. 1993); secondaries as Nebula (Mao et al., JAP 104, 114907 "
                 "(2008); Kieft and Bosch, J. Phys. D 41, 215310 (2008))")
    kernel_code = layout.INELASTIC_PENN

    def shells(self, material):
        return [(0, 0.0)]  # one table: every inelastic collision (the inner shells are chosen per event)

    def _tables(self, material):
        from datasets import penn

        if material.band is None:
            raise ValueError(f"material {material.name} has no band structure; the '{self.name}' model needs one")
        return penn.tables(material)

    def hard_inverse_mfp_per_nm(self, material, energy_eV, shell, cutoff_eV):
        kinetic = np.asarray(energy_eV, dtype=np.float64) + material.band.inner_potential_eV
        return self._tables(material).inverse_mfp_and_stopping(kinetic)[0]

    def hard_stopping_eV_per_nm(self, material, energy_eV, shell, cutoff_eV):
        kinetic = np.asarray(energy_eV, dtype=np.float64) + material.band.inner_potential_eV
        return self._tables(material).inverse_mfp_and_stopping(kinetic)[1]


def penn_soft_limit_eV(material: Material, cutoff_eV: float) -> float:
    """``W_c = cutoff + U - F``: the largest full-Penn loss none of whose secondaries could be
    detected (the fastest, from the top of the Fermi sea, leaves with ``F + W - U`` eV vacuum-
    referenced; an inner-shell one with less)."""
    return float(cutoff_eV) + material.band.inner_potential_eV - material.band.fermi_eV


class PennMixedInelastic(PennInelastic):
    """The full-Penn model in a mixed (class II) scheme: the losses ``W > W_c`` that can create a
    detectable secondary (:func:`penn_soft_limit_eV`) are discrete :func:`penn_event` events,
    sampled from the Penn loss spectrum above ``W_c``, with the same momentum transfer,
    deflection and secondaries as ``penn``; the softer ones are a continuous loss, the restricted
    stopping power ``S_soft(K) = int_0^W_c w d(1/lambda)/dw dw`` (the ``penn`` stopping model's
    total minus the hard part). What it leaves out: the energy straggling of the soft losses and
    the primary's deflection in them (below a few degrees above 100 eV). Pairs with the ``penn``
    stopping model."""

    name = "penn-mixed"
    reference = PennInelastic.reference + "; soft losses (no detectable secondary) continuous (mixed scheme)"

    def hard_inverse_mfp_per_nm(self, material, energy_eV, shell, cutoff_eV):
        kinetic = np.asarray(energy_eV, dtype=np.float64) + material.band.inner_potential_eV
        return self._tables(material).inverse_mfp_and_stopping(kinetic, penn_soft_limit_eV(material, cutoff_eV))[0]

    def hard_stopping_eV_per_nm(self, material, energy_eV, shell, cutoff_eV):
        kinetic = np.asarray(energy_eV, dtype=np.float64) + material.band.inner_potential_eV
        return self._tables(material).inverse_mfp_and_stopping(kinetic, penn_soft_limit_eV(material, cutoff_eV))[1]


INELASTIC_MODELS: dict[str, type[InelasticModel]] = {
    "none": NoHardCollisions, "moller": MollerHardCollisions, "moller-shells": ShellMollerHardCollisions,
    "penn": PennInelastic, "penn-mixed": PennMixedInelastic}
