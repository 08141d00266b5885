"""The full-Penn model in a mixed scheme (``penn-mixed`` + ``penn`` stopping): hard events for the
losses that can make a detectable secondary, the rest continuous; and the per-process table cache."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from datasets import penn
from datasets.errors import UsageError
from datasets.inelastic_models import penn_soft_limit_eV
from datasets.kernel import inelastic, rng
from datasets.materials import COPPER, SILICON
from datasets.physics import PhysicsConfig
from datasets.physics_tables import PhysicsTables, physics_tables
from datasets.transport import Transport

MIXED = PhysicsConfig.preset("nebula-penn-mixed")
CUTOFF_EV = 50.0


def _kernel_tables(physics):
    return Transport(np.ones((1, 1, 1, 1), np.uint8), PhysicsTables([None, SILICON, COPPER], physics)).kernel_inputs()[1]


@njit
def _sample_losses(tables, material, energy, n):
    out = np.empty((n, 2))
    for i in range(n):
        key = rng.electron_key(11, 0, 0, 0, i)
        w, _, _, _, secondary, _, _, _ = inelastic.penn_event(key, 0, energy, 0.0, 0.0, 1.0, 1.0, 0.0, material, tables)
        out[i, 0], out[i, 1] = w, secondary
    return out


@pytest.mark.parametrize("material, index, energy", [(SILICON, 1, 1000.0), (COPPER, 2, 5000.0)])
def test_soft_limit_is_the_largest_loss_without_a_detectable_secondary(material, index, energy):
    """In the all-discrete model's own events, every secondary above the cutoff comes from a loss
    above W_c = cutoff + U - F, and losses just above W_c make some: the limit is tight."""
    sample = _sample_losses(_kernel_tables(PhysicsConfig.preset("nebula-penn")), index, energy, 40_000)
    w_c = penn_soft_limit_eV(material, CUTOFF_EV)
    detectable = sample[:, 1] > CUTOFF_EV
    assert detectable.sum() > 1000 and np.all(sample[detectable, 0] > w_c)
    assert np.any(detectable & (sample[:, 0] < w_c + 5.0))
    assert w_c == pytest.approx(CUTOFF_EV + material.band.inner_potential_eV - material.band.fermi_eV)


@pytest.mark.parametrize("material", [SILICON, COPPER])
def test_hard_part_is_the_loss_spectrum_above_the_soft_limit(material):
    """Hard IMFP and stopping power against a separate quadrature of the loss spectrum above W_c;
    the soft part makes up the rest of the full-Penn values."""
    tables = penn.tables(material)
    w_c = penn_soft_limit_eV(material, CUTOFF_EV)
    kinetic = np.array([40.0, 80.0, 300.0, 1000.0, 5000.0, 10_000.0])
    hard_imfp, hard_stopping = tables.inverse_mfp_and_stopping(kinetic, w_c)
    for k, imfp, stopping in zip(kinetic[1:], hard_imfp[1:], hard_stopping[1:]):
        omega, density = tables.loss_spectrum(float(k), w_c)
        assert imfp == pytest.approx(np.trapezoid(density, omega), rel=2e-3)
        assert stopping == pytest.approx(np.trapezoid(omega * density, omega), rel=2e-3)
    assert hard_imfp[0] == 0.0  # K - F below W_c: no hard event
    total_imfp, total_stopping = tables.inverse_mfp_and_stopping(kinetic)
    soft_imfp, soft_stopping = tables._integrals_below(kinetic, np.minimum(kinetic - tables.min_excitation_eV, w_c))
    np.testing.assert_allclose(hard_imfp + soft_imfp, total_imfp, rtol=1e-12)
    np.testing.assert_allclose(hard_stopping + soft_stopping, total_stopping, rtol=1e-12)
    # hard events are few but carry most of the energy loss at keV energies
    assert np.all(hard_imfp[3:] < 0.5 * total_imfp[3:]) and np.all(hard_stopping[4:] > 0.5 * total_stopping[4:])


def test_kernel_tables_split_the_penn_stopping_power():
    tables = PhysicsTables([None, SILICON, COPPER], MIXED)
    for index, material in ((1, SILICON), (2, COPPER)):
        k = tables.grid_index(2000.0)
        energy = float(np.exp(tables.log_e0 + k / tables.inv_dlog))  # the grid point itself
        kinetic = energy + material.band.inner_potential_eV
        total_imfp, total_stopping = penn.tables(material).inverse_mfp_and_stopping([kinetic])
        hard_imfp, hard_stopping = penn.tables(material).inverse_mfp_and_stopping(
            [kinetic], penn_soft_limit_eV(material, CUTOFF_EV))
        assert tables.hard[index, k] == pytest.approx(hard_imfp[0], rel=1e-9)
        # the continuous loss is the soft part: with the hard events' mean loss, the full-Penn stopping power
        assert 0.0 < tables.stopping[index, k] < total_stopping[0]
        assert tables.stopping[index, k] + hard_stopping[0] == pytest.approx(total_stopping[0], rel=1e-9)


@pytest.mark.parametrize("material, index, energy", [(SILICON, 1, 1000.0), (COPPER, 2, 5000.0)])
def test_hard_events_draw_from_the_loss_spectrum_above_the_soft_limit(material, index, energy):
    sample = _sample_losses(_kernel_tables(MIXED), index, energy, 20_000)
    kinetic = energy + material.band.inner_potential_eV
    w_c = penn_soft_limit_eV(material, CUTOFF_EV)
    assert sample[:, 0].min() >= w_c * (1 - 1e-9)
    omega, density = penn.tables(material).loss_spectrum(kinetic, w_c)
    assert omega[0] == pytest.approx(w_c)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(omega))])
    cdf /= cdf[-1]
    assert stats.kstest(sample[:, 0], lambda x: np.interp(x, omega, cdf)).pvalue > 1e-3
    imfp, stopping = penn.tables(material).inverse_mfp_and_stopping([kinetic], w_c)
    assert sample[:, 0].mean() == pytest.approx(stopping[0] / imfp[0], rel=0.03)
    # valence and plasmon secondaries of a hard loss can always be detected, inner-shell ones often
    assert (sample[:, 1] > CUTOFF_EV).mean() > 0.5


@pytest.mark.parametrize("material, index, energy", [(SILICON, 1, 50.6), (COPPER, 2, 50.3), (SILICON, 1, 52.0)])
def test_hard_events_just_above_the_threshold_lose_more_than_the_soft_limit(material, index, energy):
    """Near the threshold the sampler may pick the table row below it, where no loss exceeds W_c:
    that row holds the next one's losses, so a hard event never loses less than W_c."""
    tables = _kernel_tables(MIXED)
    k = PhysicsTables([None, SILICON, COPPER], MIXED).grid_index(energy)
    assert tables.hard[index, 0, k] > 0.0  # hard events happen at this energy
    sample = _sample_losses(tables, index, energy, 5_000)
    assert sample[:, 0].min() >= penn_soft_limit_eV(material, CUTOFF_EV) - 1e-9


def test_mixed_physics_needs_the_penn_stopping_power():
    with pytest.raises(UsageError, match="penn-mixed.*--stopping penn"):
        PhysicsConfig.preset("nebula-penn-mixed", stopping="tabulated")
    record = MIXED.describe()
    assert record["label"] == "nebula-penn-mixed" and "mixed" in record["inelastic_reference"]
    assert PhysicsConfig.from_record(record) == MIXED


def test_mixed_film_yield_is_close_to_the_all_discrete_model():
    """Same cross sections, soft losses continuous: the film's yield moves by little (here within
    the two runs' noise plus 10 %) and the run is deterministic."""
    from datasets.scene import paper_block
    from datasets.simulate import simulate_stack

    geometry = paper_block(np.zeros((20, 20, 20), bool))
    kwargs = dict(energies_keV=[0.5, 5.0], simulated_electrons_per_pixel=10, seed=2, progress=False)
    mixed = simulate_stack(geometry, physics=MIXED, **kwargs)
    again = simulate_stack(geometry, physics=MIXED, **kwargs)
    full = simulate_stack(geometry, physics=PhysicsConfig.preset("nebula-penn"), **kwargs)
    np.testing.assert_array_equal(mixed.counts, again.counts)
    a, b = mixed.bse.mean(axis=(1, 2)), full.bse.mean(axis=(1, 2))
    noise = np.sqrt(2 * b / 4000)
    assert np.all(np.abs(a - b) < 0.10 * b + 4 * noise), (a, b)
    assert mixed.meta["physics"]["label"] == "nebula-penn-mixed"


def test_physics_tables_are_built_once_per_process():
    one = physics_tables([None, SILICON, COPPER], MIXED, CUTOFF_EV)
    assert physics_tables([None, SILICON, COPPER], MIXED, 50) is one
    assert physics_tables([None, SILICON, COPPER], MIXED, 60.0) is not one
    assert physics_tables([None, SILICON], MIXED, CUTOFF_EV) is not one


def test_physics_tables_of_an_unhashable_material_are_built_uncached():
    import dataclasses

    listed = dataclasses.replace(SILICON, inner_shells=list(SILICON.inner_shells))  # a list: unhashable
    tables = physics_tables([None, listed], PhysicsConfig.preset("nebula-like"), CUTOFF_EV)
    assert tables.materials[1] is listed and tables.imfp.shape[0] == 2
