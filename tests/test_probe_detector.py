"""The acquisition models inside the kernel: the Gaussian probe and energy spread
(:func:`datasets.kernel.instrument.probe_entry`) and the detectors
(:func:`datasets.kernel.instrument.detector_response`, :mod:`datasets.detectors`).

The probe's observable: with ``max_events=1`` a primary (CSDA physics: no hard collisions)
flies straight down along +z from its entry point and stops at its first elastic event, so the
(x, y) where the kernel's own ``follow_primary`` ends it *is* its entry point.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from cudasim import run_in_cuda_simulator
from numba import njit

from datasets.detectors import (
    FWHM_PER_SIGMA,
    AnnularDetector,
    PlaneDetector,
    WindowDetector,
    probe_sigmas,
)
from datasets.kernel import history, instrument, layout, rng
from datasets.materials import SILICON
from datasets.physics import PhysicsConfig
from datasets.physics_tables import PhysicsTables
from datasets.scene import paper_block
from datasets.simulate import simulate_stack
from datasets.transport import Transport, TransportStats

CSDA = PhysicsConfig.preset("csda")


# --------------------------------------------------------------------------- probe
@njit
def _entry_points(volume, tables, x0, y0, energy_eV, sigma, n, seed):
    out = np.full((n, 2), np.nan)
    stack = np.empty((layout.STACK_DEPTH, layout.STACK_FIELDS))
    for i in range(n):
        outcome, _, _, _, _, x, y, _, _, _, _ = history.follow_primary(
            rng.electron_key(seed, 0, 0, 0, i), x0, y0, energy_eV, sigma, 0.0, 0, volume, tables, stack)
        if outcome == layout.STOPPED:
            out[i, 0], out[i, 1] = x, y
    return out


def _silicon_slab(width=64):
    grid = np.zeros((1, 24, width, width), dtype=np.uint8)
    grid[0, 2:] = 1
    return Transport(grid, PhysicsTables([None, SILICON], CSDA), max_events=1)


@pytest.mark.parametrize("fwhm_nm", [1.0, 3.0])
def test_probe_entry_points_have_the_stated_fwhm(fwhm_nm):
    sigma = fwhm_nm / FWHM_PER_SIGMA
    n = 20_000
    points = _entry_points(*_silicon_slab().kernel_inputs(), 32.0, 30.0, 2000.0, sigma, n, 4)
    points = points[np.isfinite(points[:, 0])]
    assert len(points) > 0.99 * n
    d = points - [32.0, 30.0]
    assert np.abs(d.mean(axis=0)).max() < 4 * sigma / math.sqrt(len(d))
    var = d.var(axis=0)
    np.testing.assert_allclose(var, sigma ** 2, rtol=5 * math.sqrt(2 / len(d)))  # 5 standard errors
    assert abs(np.corrcoef(d.T)[0, 1]) < 0.03
    inside = (np.abs(d) < fwhm_nm / 2).mean(axis=0)  # Gaussian: P(|x| < FWHM/2) = erf(sqrt(ln 2)) = 0.7610
    np.testing.assert_allclose(inside, math.erf(math.sqrt(math.log(2))), atol=0.015)


def test_a_zero_probe_enters_at_the_pixel_centre():
    points = _entry_points(*_silicon_slab().kernel_inputs(), 32.0, 30.0, 2000.0, 0.0, 200, 4)
    points = points[np.isfinite(points[:, 0])]
    assert np.all(points == [32.0, 30.0])


def test_entry_points_beyond_the_box_fold_back_between_the_mirrors():
    points = _entry_points(*_silicon_slab(width=8).kernel_inputs(), 0.5, 7.5, 2000.0, 3.0, 2000, 1)
    points = points[np.isfinite(points[:, 0])]
    assert np.all((points >= 0) & (points < 8))
    assert points[:, 0].mean() > 1.5 and points[:, 1].mean() < 6.5  # folded back, not clipped to the walls


@njit
def _probe_energies(energy_eV, spread, n, seed):
    out = np.empty(n)
    for i in range(n):
        _, _, out[i] = instrument.probe_entry(rng.electron_key(seed, 0, 0, 0, i), 0.0, 0.0, energy_eV, 0.0, spread)
    return out


def test_energy_spread_has_the_stated_fwhm():
    fwhm = 2.0
    energies = _probe_energies(1000.0, fwhm / FWHM_PER_SIGMA, 50_000, 3)
    n = energies.size
    sigma = fwhm / FWHM_PER_SIGMA
    assert abs(energies.mean() - 1000.0) < 4 * sigma / math.sqrt(n)
    assert energies.std() == pytest.approx(sigma, rel=5 * math.sqrt(0.5 / n))
    assert (np.abs(energies - 1000.0) < fwhm / 2).mean() == pytest.approx(0.7610, abs=0.01)
    assert np.all(_probe_energies(1000.0, 0.0, 10, 3) == 1000.0)


def test_probe_widths_per_energy_and_their_validation():
    sigma, spread = probe_sigmas([0.5, 1.0, 3.0], 0.7, 3)
    np.testing.assert_allclose(sigma * 2 * math.sqrt(2 * math.log(2)), [0.5, 1.0, 3.0])
    np.testing.assert_allclose(spread, 0.7 / FWHM_PER_SIGMA)
    with pytest.raises(ValueError, match="probe_fwhm_nm"):
        probe_sigmas([1.0, 2.0], 0.0, 3)
    with pytest.raises(ValueError, match="energy_spread_eV"):
        probe_sigmas(0.0, -1.0, 3)


def test_a_probe_image_is_the_point_image_convolved_with_the_gaussian():
    """A Cu step under 4 nm of the block's top: the image of a 6 nm FWHM probe (second energy)
    equals the point-beam image convolved with the Gaussian (mirror walls: reflected), within
    shot noise; an energy whose FWHM is 0 is the point image, bit for bit."""
    from scipy import ndimage

    mask = np.zeros((20, 20, 20), bool)
    mask[0:4, :, :10] = True
    kwargs = dict(energies_keV=[1.0, 1.5], simulated_electrons_per_pixel=60, physics=CSDA, threads=1)
    point = simulate_stack(paper_block(mask), seed=1, **kwargs)
    probe = simulate_stack(paper_block(mask), seed=1, probe_fwhm_nm=[0.0, 6.0], **kwargs)
    np.testing.assert_array_equal(probe.counts[0], point.counts[0])
    other = simulate_stack(paper_block(mask), seed=2, probe_fwhm_nm=[0.0, 6.0], **kwargs)  # independent of `point`
    a, b = point.bse[1].mean(axis=0).astype(np.float64), other.bse[1].mean(axis=0)  # profiles across the step
    expected = ndimage.gaussian_filter1d(a, 6.0 / FWHM_PER_SIGMA, mode="reflect")
    var = 2 * np.clip(a * (1 - a), 0.01, None) / (20 * 60)
    chi2 = float(((b - expected) ** 2 / var).sum())
    assert chi2 < 20 + 5 * math.sqrt(40), chi2  # 20 columns
    step = lambda profile: profile[7:10].mean() - profile[10:13].mean()  # noqa: E731
    assert step(a) > 0.08 and step(b) < 0.5 * step(a)


KW = dict(energies_keV=[1.0, 4.0], simulated_electrons_per_pixel=10, physics=CSDA)


def test_probe_runs_are_seeded_reproducible_and_thread_independent():
    geometry = paper_block(np.pad(np.ones((4, 6, 6), bool), ((0, 16), (7, 7), (7, 7))))
    a = simulate_stack(geometry, seed=5, threads=1, probe_fwhm_nm=[1.0, 2.0], energy_spread_eV=0.7, **KW)
    b = simulate_stack(geometry, seed=5, threads=2, probe_fwhm_nm=[1.0, 2.0], energy_spread_eV=0.7, **KW)
    ideal = simulate_stack(geometry, seed=5, **KW)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, ideal.counts)  # the probe draws moved the primaries
    assert a.meta["probe_fwhm_nm"] == [1.0, 2.0] and a.meta["energy_spread_eV"] == 0.7
    assert "probe_fwhm_nm" not in ideal.meta and "detector" not in ideal.meta


def test_options_off_give_the_ideal_stack_bit_for_bit():
    geometry = paper_block(np.pad(np.ones((4, 6, 6), bool), ((0, 16), (7, 7), (7, 7))))
    ideal = simulate_stack(geometry, seed=2, **KW)
    off = simulate_stack(geometry, seed=2, probe_fwhm_nm=[0.0, 0.0], energy_spread_eV=0.0, detector=PlaneDetector(),
                         **KW)
    np.testing.assert_array_equal(off.counts, ideal.counts)
    np.testing.assert_array_equal(off.bse, ideal.bse)
    assert off.meta == ideal.meta


# --------------------------------------------------------------------------- detectors
def _params(detector):
    params = np.zeros(layout.N_PARAMS)
    for index, value in detector.kernel_params().items():
        params[index] = value
    return params


def test_annular_detector_counts_only_its_take_off_angles():
    params = _params(AnnularDetector(takeoff_min_deg=30.0, takeoff_max_deg=60.0, threshold_eV=0.0))
    for angle, seen in [(10.0, False), (29.0, False), (31.0, True), (45.0, True), (59.0, True), (61.0, False),
                        (89.0, False)]:
        response = instrument.detector_response(params, 2000.0, math.sin(math.radians(angle)), 2000.0)
        assert (response > 0) == seen, angle
    full = _params(AnnularDetector())
    for sin_takeoff in (0.0, 1e-9, 0.5, 1.0):
        assert instrument.detector_response(full, 2000.0, sin_takeoff, 2000.0) == layout.WEIGHT_UNIT


def test_exit_take_off_angle_refracts_at_the_barrier():
    uz = -math.cos(math.radians(50.0))  # moving up, 50 deg from the normal inside
    assert instrument.exit_sin_takeoff(1000.0, uz, 0.0) == pytest.approx(math.sin(math.radians(40.0)))
    u = 12.0  # lateral momentum kept, normal energy lowered by U: a flatter take-off outside
    expected = math.sqrt(((1000.0 + u) * uz * uz - u) / 1000.0)
    assert instrument.exit_sin_takeoff(1000.0, uz, u) == pytest.approx(expected)
    assert expected < math.sin(math.radians(40.0))


def test_energy_weighting_is_exact_on_mono_energetic_electrons():
    params = _params(AnnularDetector(threshold_eV=500.0))
    e0 = 3000.0
    for energy, weight in [(3000.0, 1.0), (1750.0, 0.5), (1125.0, 0.25), (500.0, 0.0), (400.0, 0.0)]:
        assert instrument.detector_response(params, energy, 0.7, e0) == weight * layout.WEIGHT_UNIT, energy


def test_energy_window_selects_the_low_loss_electrons():
    params = _params(WindowDetector(window_eV=50.0))
    for energy, seen in [(2000.0, True), (1960.0, True), (1950.0, True), (1949.0, False), (800.0, False)]:
        assert (instrument.detector_response(params, energy, 0.3, 2000.0) == 1) == seen, energy


def _block_run(detector, seed=3):
    geometry = paper_block(np.pad(np.ones((3, 6, 6), bool), ((0, 17), (7, 7), (7, 7))))
    stats = TransportStats()
    stack = simulate_stack(geometry, seed=seed, detector=detector, stats=stats, energies_keV=[1.0, 3.0],
                           simulated_electrons_per_pixel=8)
    return stack, stats


def test_detectors_score_the_same_histories_as_the_plane():
    """A detector draws no random number: the same electrons leave, each scored by its own rule."""
    plane, plane_stats = _block_run(None)
    full, full_stats = _block_run(AnnularDetector(threshold_eV=50.0))  # threshold = the cutoff: every electron > 0
    assert full_stats.detected == plane_stats.detected == plane.counts.sum()
    weighted = full.bse * 8
    assert np.all(weighted <= plane.counts + 1e-9) and weighted.sum() > 0.2 * plane.counts.sum()
    assert full.counts is None and full.meta["weighted_counts"] is True
    low, _ = _block_run(AnnularDetector(takeoff_max_deg=45.0, threshold_eV=50.0))
    high, high_stats = _block_run(AnnularDetector(takeoff_min_deg=45.0, threshold_eV=50.0))
    np.testing.assert_allclose(low.bse.astype(np.float64) + high.bse, full.bse, rtol=1e-6, atol=1e-7)
    assert 0 < high_stats.detected < full_stats.detected  # cos-like emission: both halves see electrons
    wide, _ = _block_run(WindowDetector(window_eV=1e6))
    np.testing.assert_array_equal(wide.counts, plane.counts)
    narrow, _ = _block_run(WindowDetector(window_eV=300.0))
    assert np.all(narrow.counts <= plane.counts) and narrow.counts.sum() < plane.counts.sum()
    assert narrow.meta["detector"] == {"kind": "window", "window_eV": 300.0}


def test_detector_parameters_are_validated():
    with pytest.raises(ValueError, match="take-off"):
        AnnularDetector(takeoff_min_deg=60.0, takeoff_max_deg=30.0)
    with pytest.raises(ValueError, match="window_eV"):
        WindowDetector(window_eV=0.0)


def test_probe_and_detectors_match_on_the_cuda_simulator():
    script = textwrap.dedent("""
        import warnings, numpy as np
        warnings.simplefilter("ignore", RuntimeWarning)
        from datasets.detectors import AnnularDetector, WindowDetector
        from datasets.materials import MATERIALS
        from datasets.physics import PhysicsConfig
        from datasets.physics_tables import PhysicsTables
        from datasets.scene import paper_block
        from datasets.simulate import _material_list
        from datasets.transport import Transport, TransportStats, material_ids_to_indices
        mask = np.zeros((20, 20, 20), bool); mask[1:6, 0:8, 0:8] = True
        materials, ids = _material_list(MATERIALS, [1, 2])
        grids = material_ids_to_indices(paper_block(mask)[None], ids)
        x = np.array([0.5, 7.5, 19.5]); y = np.array([0.5, 7.5, 10.5])
        for detector in (None, AnnularDetector(20.0, 70.0, 200.0), WindowDetector(400.0)):
            transport = Transport(grids, PhysicsTables(materials, PhysicsConfig()), detector=detector)
            runs = [transport.run(x, y, [1000.0, 4000.0], 12, seed=3, device=device, stats=TransportStats(),
                                  probe_sigma_nm=[0.8, 1.5], energy_sigma_eV=[0.5, 0.0]) for device in ("cuda", "cpu")]
            assert runs[0].dtype == runs[1].dtype and np.array_equal(runs[0], runs[1]), (detector, runs)
            assert runs[1].sum() > 0
        print("cudasim ok")
    """)
    run_in_cuda_simulator(script, timeout=900)


def test_cli_bench_times_the_acquisition_models_side_by_side(capsys):
    import json

    from datasets.__main__ import main

    assert main(["bench", "--acquisition", "--energies", "1,4", "--electrons-per-pixel", "1", "--geometries", "1",
                 "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    labels = [e["engine"] for e in result["engines"]]
    assert labels[0] == "plane detector (default)" and len(labels) == 4
    assert all(e["primaries"] == 2 * 400 for e in result["engines"])
    assert set(result["acquisition_cost"]) == set(labels[1:]) and min(result["acquisition_cost"].values()) > 0
    assert len(result["load_average"]) == 3


def test_cli_simulate_takes_the_probe_and_detector(tmp_path, capsys):
    from datasets.__main__ import main
    from datasets.stack import BseStack

    geometry = tmp_path / "g.npy"
    np.save(geometry, paper_block())
    out = tmp_path / "s.npz"
    assert main(["simulate", str(geometry), "--out", str(out), "--electrons-per-pixel", "1", "--energies", "1,2",
                 "--quiet", "--probe-fwhm-nm", "1,2", "--energy-spread-eV", "0.5", "--detector", "annular:10,80,100"]) == 0
    stack = BseStack.load(out)
    assert stack.meta["probe_fwhm_nm"] == [1.0, 2.0] and stack.meta["energy_spread_eV"] == 0.5
    assert stack.meta["detector"]["kind"] == "annular" and stack.counts is None
    assert main(["simulate", str(geometry), "--out", str(out), "--detector", "ring"]) != 0
    assert "unknown detector 'ring'" in capsys.readouterr().err
