"""The one contract every registered method must meet (methods.available()).

Shapes, value range, determinism, save/load round trip and error messages. Learned methods are
fitted first on a tiny synthetic split (seconds); MED-SEM gets a PSF from a very short
simulation in a temporary cache.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import methods
from methods.base import HyperParam, Method

ENERGIES_KEV = np.round(np.arange(1, 21) * 0.5, 1)
SIZE = 20
#: per-method hyper-parameters that keep the contract test fast (any other method: defaults)
FAST_PARAMS = {
    "medsem": {"psf_electrons": 2, "iterations": 20, "calibrate": True},
    "unet3d": {"config": "tiny", "preset": "smoke", "epochs": 1, "batch_size": 4},
    "bsevox": {"config": "tiny", "preset": "smoke", "epochs": 1, "batch_size": 4},
}


class TinySplit(torch.utils.data.Dataset):
    """Random Cu boxes with a toy depth-weighted BSE signal; the storage split's dict layout."""

    energies_keV = ENERGIES_KEV

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.labels = np.zeros((n, SIZE, SIZE, SIZE), np.float32)
        for label in self.labels:
            lo = rng.integers(0, 12, size=3)
            hi = lo + rng.integers(3, 8, size=3)
            label[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1.0
        reach = 1.0 + ENERGIES_KEV[:, None] * 2.0  # probing depth (layers) grows with energy
        weights = np.exp(-np.arange(SIZE)[None, :] / reach) / reach
        self.bse = (0.05 + 0.2 * np.einsum("ez,nzhw->nehw", weights, self.labels)).astype(np.float32)
        self.bse += rng.normal(0, 0.002, self.bse.shape).astype(np.float32)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"bse": torch.from_numpy(self.bse[i]), "label": torch.from_numpy(self.labels[i]), "id": f"tiny-{i}"}


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """A private PSF cache, and one torch thread (simulation and training crawl when threads
    compete on a busy 2-core CI machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BSE_BENCH_CACHE", str(tmp_path_factory.mktemp("bse-bench-cache")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=methods.available())
def fitted(request, cache_env, tmp_path_factory):
    """(method fitted on the tiny split, a test batch) for every registered method."""
    name = request.param
    method = methods.create(name, **FAST_PARAMS.get(name, {}))
    torch.manual_seed(0)
    out_dir = tmp_path_factory.mktemp(f"fit-{name}")
    method.fit(TinySplit(8, seed=0), TinySplit(4, seed=1), out_dir=out_dir, progress=False)
    return method, TinySplit(3, seed=2).bse


def test_registry_lists_known_methods_and_rejects_unknown_names():
    assert {"medsem", "unet3d", "bsevox"} <= set(methods.available())
    with pytest.raises(KeyError, match="unknown method .*; known: .*medsem"):
        methods.get("no-such-method")


@pytest.mark.parametrize("name", methods.available())
def test_class_declares_itself(name):
    klass = methods.get(name)
    assert issubclass(klass, Method) and klass.name == name
    assert klass.hyperparams and all(isinstance(hp, HyperParam) for hp in klass.hyperparams.values())
    json.dumps({k: hp.default for k, hp in klass.hyperparams.items()})  # defaults are JSON-able
    with pytest.raises(ValueError, match="unknown parameter.*known"):
        klass(not_a_parameter=1)


@pytest.mark.parametrize("name", [n for n in methods.available() if methods.get(n).requires_training])
def test_untrained_learned_method_refuses_to_reconstruct(name):
    method = methods.create(name, **FAST_PARAMS.get(name, {}))
    with pytest.raises(RuntimeError, match="training"):
        method.reconstruct(np.zeros((1, len(ENERGIES_KEV), SIZE, SIZE), np.float32), ENERGIES_KEV)


def test_shapes_dtype_and_range(fitted):
    method, bse = fitted
    prob = method.reconstruct(bse, ENERGIES_KEV)
    assert prob.shape == (3, method.depth, SIZE, SIZE) and prob.dtype == np.float32
    assert np.all(np.isfinite(prob)) and prob.min() >= 0.0 and prob.max() <= 1.0
    single = method.reconstruct(bse[0], ENERGIES_KEV)  # (E, H, W) -> batch of one
    assert single.shape == (1, method.depth, SIZE, SIZE)
    from_tensor = method.reconstruct(torch.from_numpy(bse[:1]), ENERGIES_KEV)
    np.testing.assert_allclose(from_tensor, single, atol=1e-6)
    described = method.describe()
    assert described["method"] == method.name and set(described["params"]) == set(method.hyperparams)


def test_reconstruction_is_deterministic(fitted):
    method, bse = fitted
    np.testing.assert_array_equal(method.reconstruct(bse, ENERGIES_KEV), method.reconstruct(bse, ENERGIES_KEV))


def test_save_load_round_trip(fitted, tmp_path):
    method, bse = fitted
    method.save(tmp_path / "saved")
    info = json.loads((tmp_path / "saved" / "method.json").read_text())
    assert info["method"] == method.name
    loaded = Method.load(tmp_path / "saved")
    assert type(loaded) is type(method) and loaded.params == method.params
    np.testing.assert_allclose(loaded.reconstruct(bse, ENERGIES_KEV), method.reconstruct(bse, ENERGIES_KEV), atol=1e-5)


def test_bad_input_errors_name_the_problem(fitted):
    method, bse = fitted
    with pytest.raises(ValueError, match=r"shape \(B, E, H, W\)"):
        method.reconstruct(bse[0, 0], ENERGIES_KEV)
    nan = bse.copy()
    nan[0, 3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        method.reconstruct(nan, ENERGIES_KEV)
    with pytest.raises(ValueError, match="energies_keV has shape"):
        method.reconstruct(bse, ENERGIES_KEV[:5])
    # a fitted (trained or calibrated) model is tied to the energies it was fitted on
    assert method.energies_keV is not None
    with pytest.raises(ValueError, match="20 energies, got a stack with 19"):
        method.reconstruct(bse[:, :19], ENERGIES_KEV[:19])
    with pytest.raises(ValueError, match="differ from the trained energies"):
        method.reconstruct(bse, ENERGIES_KEV + 0.25)
    with pytest.raises(TypeError, match="numeric"):
        method.reconstruct(np.full(bse.shape, "x"), ENERGIES_KEV)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="method.json"):
        Method.load(tmp_path)
    (tmp_path / "method.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        Method.load(tmp_path)
    (tmp_path / "method.json").write_text(json.dumps({"method": "no-such-method", "params": {}}))
    with pytest.raises(KeyError, match="unknown method .no-such-method.; known: "):
        Method.load(tmp_path)
    (tmp_path / "method.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="missing entries"):
        Method.load(tmp_path)
