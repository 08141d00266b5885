"""MED-SEM: forward operator, PSF estimation and cache, calibration, and recovery of a cube."""

import warnings

import numpy as np
import pytest
from fakes import FakeDataset
from scipy import ndimage

from methods.binarize import iou_per_sample
from methods.medsem import (
    LayerBlurOperator,
    LayerPsf,
    MedSem,
    fit_layer_psf,
    solve_bounded_least_squares,
)
from methods.medsem import psf as psf_module
from methods.medsem.method import calibrate_gain_offset, separate_layers, shot_noise_weights

DEPTH = 20


def analytic_psf(energies_keV=(0.5, 1.0, 2.0, 4.0, 8.0), depth=DEPTH) -> LayerPsf:
    """TEST-ONLY stand-in PSF (never the method's default): Gaussian width growing with energy
    and depth, depth weight decaying over an energy-dependent penetration range."""
    energies = np.asarray(energies_keV, dtype=float)
    z = np.arange(depth)[None, :] + 0.5
    penetration_nm = 1.0 + 3.0 * energies[:, None]
    weights = 0.05 * np.exp(-z / penetration_nm)
    sigma_nm = 0.4 + 0.15 * energies[:, None] + 0.05 * z
    background = 0.3 / (1.0 + energies)
    return LayerPsf(energies, background, weights, sigma_nm, source={"kind": "analytic-test"})


def test_dct_operator_equals_mirror_padded_convolution():
    rng = np.random.default_rng(0)
    volume = rng.random((1, 12, 16))
    for sigma in (0.3, 1.7, 4.0):
        op = LayerBlurOperator(np.array([[2.0]]), np.array([[sigma]]), (12, 16))
        m = np.arange(-40, 41)
        g = np.exp(-0.5 * (m / sigma) ** 2)
        g /= g.sum()
        padded = np.pad(volume[0], 40, mode="symmetric")  # mirror walls: x[-1] = x[0]
        direct = ndimage.convolve(padded, 2.0 * np.outer(g, g), mode="constant")[40:52, 40:56]
        np.testing.assert_allclose(op.forward(volume)[0], direct, atol=1e-12)


def test_forward_and_adjoint_are_adjoint():
    psf = analytic_psf()
    op = LayerBlurOperator(psf.weights, psf.sigma_nm, (12, 16))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, DEPTH, 12, 16))
    y = rng.standard_normal((3, 5, 12, 16))
    lhs = np.sum(op.forward(x) * y)
    rhs = np.sum(x * op.adjoint(y))
    assert lhs == pytest.approx(rhs, rel=1e-10)
    assert op.forward(x).shape == (3, 5, 12, 16)
    with pytest.raises(ValueError, match="shape"):
        op.forward(x[:, :5])


def test_forward_model_conserves_layer_contrast():
    """A uniform Cu layer at depth z changes every pixel by exactly w[E, z] (unit-sum PSF)."""
    psf = analytic_psf()
    op = LayerBlurOperator(psf.weights, psf.sigma_nm, (20, 20))
    volume = np.zeros((DEPTH, 20, 20))
    volume[3] = 1.0
    np.testing.assert_allclose(op.forward(volume), np.broadcast_to(psf.weights[:, 3, None, None], (5, 20, 20)))


def _probe_images(psf: LayerPsf, noise=0.0, seed=0):
    """Probe images as the simulator would give them if the analytic model were exact."""
    _, masks = psf_module.probe_geometries()
    op = LayerBlurOperator(psf.weights, psf.sigma_nm, (20, 20))
    probes = np.stack([op.forward(m.astype(float))[None] for m in masks])[:, 0]  # (Z, E, H, W)
    probes += psf.background[None, :, None, None]
    reference = np.broadcast_to(psf.background[:, None, None], probes.shape[1:]).copy()
    rng = np.random.default_rng(seed)
    return reference + noise * rng.standard_normal(reference.shape), probes + noise * rng.standard_normal(probes.shape)


def test_fit_layer_psf_recovers_weights_and_widths():
    truth = analytic_psf()
    reference, probes = _probe_images(truth, noise=1e-4)
    _, masks = psf_module.probe_geometries()
    clear = truth.weights > 0.2 * truth.weights.max()
    # pool=(0, 0): every (E, z) fitted on its own probe only, up to the sigma grid step (9 %)
    exact = fit_layer_psf(truth.energies_keV, reference, probes, masks.any(axis=1), pool=(0, 0))
    ratio = exact.sigma_nm[clear] / truth.sigma_nm[clear]
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio
    # default: sigma pooled over neighbouring energies/depths, still close for a smooth PSF
    fitted = fit_layer_psf(truth.energies_keV, reference, probes, masks.any(axis=1))
    ratio = fitted.sigma_nm[clear] / truth.sigma_nm[clear]
    assert np.all((ratio > 0.75) & (ratio < 1.33)), ratio
    strong = truth.weights > 0.01 * truth.weights.max()
    np.testing.assert_allclose(fitted.weights[strong], truth.weights[strong], rtol=0.08)
    np.testing.assert_allclose(fitted.background, truth.background, rtol=1e-3)


def test_fit_layer_psf_weights_are_non_negative_and_non_increasing_in_depth():
    truth = analytic_psf()
    reference, probes = _probe_images(truth, noise=3e-3, seed=4)  # noisy probes
    _, masks = psf_module.probe_geometries()
    fitted = fit_layer_psf(truth.energies_keV, reference, probes, masks.any(axis=1))
    assert fitted.weights.min() >= 0 and np.all(np.diff(fitted.weights, axis=1) <= 1e-15)
    assert np.abs(fitted.weights - truth.weights).max() < 0.2 * truth.weights.max()


def test_psf_cache_is_reused_and_keyed(monkeypatch, tmp_path):
    truth = analytic_psf()
    calls = []

    def fake_simulation(geometries, energies, settings, *args):
        calls.append(settings["electrons_per_pixel"])
        reference, probes = _probe_images(truth)
        return np.concatenate([reference[None], probes]).astype(np.float32)

    monkeypatch.setattr(psf_module, "_simulate_probe_images", fake_simulation)
    first = psf_module.simulated_layer_psf(truth.energies_keV, simulated_electrons_per_pixel=7, cache_dir=tmp_path)
    second = psf_module.simulated_layer_psf(truth.energies_keV, simulated_electrons_per_pixel=7, cache_dir=tmp_path)
    assert calls == [7]  # the second call read the cache
    np.testing.assert_array_equal(first.weights, second.weights)
    assert first.source["cache_key"] == second.source["cache_key"]
    psf_module.simulated_layer_psf(truth.energies_keV, simulated_electrons_per_pixel=8, cache_dir=tmp_path)
    assert calls == [7, 8]  # other settings, other key
    assert len(list(tmp_path.glob("layer-psf-*.npz"))) == 2

    monkeypatch.setenv("BSE_BENCH_CACHE", str(tmp_path / "root"))
    assert psf_module.psf_cache_dir() == tmp_path / "root" / "psf"
    psf_module.simulated_layer_psf(truth.energies_keV, simulated_electrons_per_pixel=7)
    assert calls == [7, 8, 7] and (tmp_path / "root" / "psf").is_dir()

    Path = type(tmp_path)
    Path(first.source["cache_file"]).write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="corrupt PSF cache"):
        psf_module.simulated_layer_psf(truth.energies_keV, simulated_electrons_per_pixel=7, cache_dir=tmp_path)


def _shallow_box(depth=DEPTH, size=20):
    volume = np.zeros((depth, size, size))
    volume[0:4, 6:14, 5:13] = 1.0
    return volume


def test_deconvolution_recovers_a_box_from_noiseless_forward_data():
    psf = analytic_psf()
    op = LayerBlurOperator(psf.weights, psf.sigma_nm, (20, 20))
    truth = _shallow_box()
    contrast = op.forward(truth)[None]
    estimate = solve_bounded_least_squares(op, contrast, np.ones(5), smoothness=1e-3, iterations=300)
    assert estimate.min() >= 0 and estimate.max() <= 1
    assert iou_per_sample(estimate >= 0.5, truth[None])[0] > 0.7


def test_layer_separation_explains_the_data_and_orders_depths():
    psf = analytic_psf()
    op = LayerBlurOperator(psf.weights, psf.sigma_nm, (20, 20))
    truth = np.zeros((2, DEPTH, 20, 20))
    truth[0, 1] = 1.0  # full Cu layers: no blur, pure depth signatures
    truth[1, 12] = 1.0
    contrast = op.forward(truth)
    layers, weights = separate_layers(contrast, psf.weights, np.ones(5), regularisation=1e-4)
    assert layers.min() >= 0 and layers.shape == (2, DEPTH, 20, 20)
    np.testing.assert_allclose(weights, np.stack([psf.weights] * 2))  # no blind refinement by default
    explained = np.einsum("ez,bzhw->behw", psf.weights, layers)
    assert np.abs(explained - contrast).max() < 0.05 * np.abs(contrast).max()
    centroid = (layers.mean(axis=(2, 3)) * np.arange(DEPTH)).sum(1) / layers.mean(axis=(2, 3)).sum(1)
    assert centroid[0] < 5 < centroid[1]
    # blind refinement (NMF also updates the mixing): depth spectra keep their physical norm
    blind_layers, blind = separate_layers(contrast, psf.weights, np.ones(5), iterations=20)
    assert blind.min() >= 0 and blind_layers.min() >= 0
    assert blind.shape == (2, *psf.weights.shape)
    for refined in blind:
        np.testing.assert_allclose(np.linalg.norm(refined, axis=0), np.linalg.norm(psf.weights, axis=0), rtol=1e-6)
        assert not np.allclose(refined, psf.weights)
    blind_method = MedSem(psf=psf, bss_iterations=10, iterations=10)
    assert blind_method.reconstruct(contrast + psf.background[None, :, None, None], psf.energies_keV).shape == truth.shape


def test_calibration_recovers_gain_and_offset():
    rng = np.random.default_rng(2)
    predicted = rng.random((4, 3, 5, 5))
    gain, offset = np.array([1.5, 0.8, 2.0]), np.array([0.01, -0.02, 0.0])
    measured = gain[None, :, None, None] * predicted + offset[None, :, None, None]
    fitted_gain, fitted_offset = calibrate_gain_offset(predicted, measured)
    np.testing.assert_allclose(fitted_gain, gain)
    np.testing.assert_allclose(fitted_offset, offset, atol=1e-12)


def test_medsem_fit_calibrates_and_save_load_keeps_psf(tmp_path):
    psf = analytic_psf()
    method = MedSem(psf=psf, iterations=50, calibrate=True)
    op = LayerBlurOperator(psf.weights, psf.sigma_nm, (20, 20))
    rng = np.random.default_rng(3)
    labels = (rng.random((6, DEPTH, 20, 20)) < 0.2).astype(np.float32)
    bse = 1.3 * op.forward(labels) + psf.background[None, :, None, None]
    info = method.fit([{"bse": b, "label": lab} for b, lab in zip(bse, labels)], progress=False)
    # plain lists carry no energies: calibration then needs matching explicit energies later
    assert info["calibrated"] and np.allclose(info["gain"], 1.3, atol=1e-6)
    np.testing.assert_allclose(method.energies_keV, psf.energies_keV)
    before = method.reconstruct(bse[:2], psf.energies_keV)
    method.save(tmp_path / "m")
    assert (tmp_path / "m" / "psf.npz").exists() and (tmp_path / "m" / "calibration.npz").exists()
    loaded = MedSem.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.reconstruct(bse[:2], psf.energies_keV), before)


def test_shot_noise_weights_favour_low_yield_energies():
    weights = shot_noise_weights([0.3, 0.1, 0.01])
    assert weights.mean() == pytest.approx(1.0) and np.all(np.diff(weights) > 0)


def test_medsem_recovers_a_shallow_cube_from_simulated_stacks(tmp_path):
    """End to end with the Monte Carlo simulator: few energies and electrons to stay fast."""
    from datasets import simulate
    from datasets.scene import block_labels, paper_block

    energies = (0.5, 1.0, 1.5, 2.5, 4.0)
    copper = np.zeros((DEPTH, 20, 20), bool)
    copper[0:4, 6:14, 6:14] = True
    geometries = np.stack([paper_block(copper), paper_block()])
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the simulator crawls when its threads compete on a busy CI box
    try:
        stacks = simulate.simulate_stacks(geometries, energies_keV=energies, simulated_electrons_per_pixel=40, seed=5)
        method = MedSem(psf_electrons=10, cache_dir=tmp_path)
        prob = method.reconstruct(np.stack([s.bse for s in stacks]), energies)
    finally:
        torch.set_num_threads(threads)
    label = block_labels(geometries[0])
    assert iou_per_sample(prob[:1] >= 0.5, label[None])[0] > 0.4  # 0.59-0.63 seen
    # pure Si: (almost) nothing reconstructed
    assert (prob[1] >= 0.5).mean() < 0.02


def test_fit_warns_when_the_psf_physics_differs_from_the_data():
    meta = {"physics": {"elastic": "mott", "stopping": "joyluo", "inelastic": "none", "barrier": "none"},
            "settings": {"cutoff_eV": 50.0}}
    empty = (np.zeros((0, 20, 20, 20), np.float32), np.zeros((0, 20, 20, 20), np.uint8), [])
    dataset = FakeDataset({"train": empty, "val": empty, "test": empty}, meta=meta)
    assert MedSem.psf_params_for(meta) == {
        "physics": {"elastic": "mott", "stopping": "joyluo", "inelastic": "none", "barrier": "none"},
        "cutoff_eV": 50.0,
    }
    with pytest.warns(UserWarning, match="psf_params_for"):
        MedSem().fit(dataset, progress=False)
    matching = MedSem(**MedSem.psf_params_for(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert matching.fit(dataset, progress=False) == {"calibrated": False}


def test_concurrent_psf_cache_writes_of_one_process_do_not_collide(tmp_path, monkeypatch):
    """Issue 13.8: concurrent first runs (threads of one process) must not share a temporary file."""
    import threading
    import time

    from methods.medsem.psf import LayerPsf

    inside, most = [0], [0]
    original = np.savez

    def slow_savez(handle, **arrays):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.3)
        original(handle, **arrays)
        inside[0] -= 1

    monkeypatch.setattr(np, "savez", slow_savez)
    psf = LayerPsf(energies_keV=np.array([1.0]), background=np.zeros(1), weights=np.ones((1, 2)),
                   sigma_nm=np.ones((1, 2)))
    errors = []

    def save():
        try:
            psf.save(tmp_path / "psf.npz")
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=save) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and most[0] == 1
    assert np.array_equal(LayerPsf.load(tmp_path / "psf.npz").weights, psf.weights)
    assert not [p for p in tmp_path.iterdir() if p.name != "psf.npz"]  # no temporary left
