"""Acquisition operators (``datasets.acquisition``): drift moves an image by the drawn sub-pixel
shift, the noises have their stated variance, brightness/contrast is the exact affine map, all
seeded per (seed, sample index) and bit-reproducible; records round-trip; ``datasets degrade``."""

import json

import numpy as np
import pytest

from datasets import acquisition as acq
from datasets.__main__ import main as datasets_main
from datasets.errors import UnknownNameError
from datasets.stack import BseStack


def _blob(size=32, centre=(15.3, 16.6), sigma=3.0, energies=20):
    y, x = np.mgrid[:size, :size]
    image = 0.8 * np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat(image[None], energies, axis=0)


def _centroid(image):
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(image * y).sum(), (image * x).sum()]) / image.sum()


def _within_3_se(samples, expected_variance):
    """Sample variance within 3 standard errors of ``expected_variance`` (SE from the 4th moment)."""
    d = samples - samples.mean()
    var = float((d ** 2).mean())
    se = float(np.sqrt(((d ** 4).mean() - var ** 2) / d.size))
    assert abs(var - expected_variance) < 3 * se, (var, expected_variance, se)


def test_drift_moves_a_blob_by_the_drawn_subpixel_shift_first_image_fixed():
    bse = _blob()
    out, draws = acq.Acquisition([acq.Drift(1.0)]).run(bse, seed=4, index=2)
    shifts = np.array(draws[0]["drift.shift_px"])
    assert shifts.shape == (20, 2) and np.all(shifts[0] == 0) and np.all(shifts[1:] != 0)
    assert np.any(np.abs(shifts % 1) > 0.1)  # sub-pixel parts, not whole pixels
    moved = np.array([_centroid(o) - _centroid(b) for o, b in zip(out.astype(np.float64), bse)])
    np.testing.assert_allclose(moved, shifts, atol=0.02)
    np.testing.assert_array_equal(out[0], bse[0].astype(np.float32))


def test_drift_pixel_size_scales_the_shift_and_reflects_at_the_border():
    op = acq.Drift(2.0, pixel_nm=2.0)  # 2 nm of 2 nm pixels: RMS 1 pixel
    assert op.draw(op.generator(0, 0), (3, 1, 1))["shift_px"].shape == (3, 2)
    ramp = np.tile(np.arange(5, dtype=float), (5, 1))  # x ramp
    shifted = acq.shift_image(ramp, 0.0, 1.5)  # content moves right by 1.5 px
    np.testing.assert_allclose(shifted[0], [0.5, 0.0, 0.5, 1.5, 2.5])  # x - 1.5 reflected about -0.5
    np.testing.assert_allclose(acq.shift_image(ramp, 0.0, 0.0), ramp)


def test_drawn_drift_shifts_have_the_stated_amplitude_statistics():
    amplitude = 0.5
    op = acq.Drift(amplitude)
    shifts = np.concatenate([op.draw(op.generator(7, i), (20, 1, 1))["shift_px"][1:] for i in range(1000)])
    r2 = (shifts ** 2).sum(axis=1)  # E|d|^2 = amplitude^2 (RMS length = amplitude); each axis N(0, A^2 / 2)
    assert abs(r2.mean() - amplitude ** 2) < 3 * r2.std() / np.sqrt(r2.size)
    for axis in (0, 1):
        _within_3_se(shifts[:, axis], amplitude ** 2 / 2)
        assert abs(shifts[:, axis].mean()) < 3 * np.sqrt(amplitude ** 2 / 2 / shifts.shape[0])
    angle = np.arctan2(shifts[:, 0], shifts[:, 1])  # uniform direction: each quadrant ~ 1/4
    counts = np.histogram(angle, bins=4, range=(-np.pi, np.pi))[0] / angle.size
    assert np.all(np.abs(counts - 0.25) < 3 * np.sqrt(0.25 * 0.75 / angle.size))


@pytest.mark.parametrize("op, variance", [(acq.GainNoise(0.1), (0.1 * 0.4) ** 2), (acq.ReadoutNoise(0.02), 0.02 ** 2)])
def test_noise_has_the_stated_mean_and_variance(op, variance):
    bse = np.full((20, 64, 64), 0.4)
    out = acq.Acquisition([op], clip=False)(bse, seed=1).astype(np.float64)
    assert abs(out.mean() - 0.4) < 3 * np.sqrt(variance / out.size)
    _within_3_se(out, variance)
    assert out.dtype == np.float64 and acq.Acquisition([op])(bse).dtype == np.float32


def test_gain_noise_is_multiplicative_and_zero_sigma_is_the_identity():
    bse = np.stack([np.full((64, 64), 0.1), np.full((64, 64), 0.5)])
    out = acq.GainNoise(0.05)(bse, seed=2).astype(np.float64)
    np.testing.assert_allclose(out.std(axis=(1, 2)) / out.mean(axis=(1, 2)), 0.05, rtol=0.1)
    assert (out > 0).all()
    np.testing.assert_array_equal(acq.GainNoise(0.0)(bse), bse.astype(np.float32))


def test_brightness_contrast_is_the_exact_affine_map_per_energy():
    rng = np.random.default_rng(0)
    bse = rng.uniform(0.1, 0.6, size=(20, 8, 8))
    op = acq.BrightnessContrast((0.8, 1.2), (-0.05, 0.05))
    out = acq.Acquisition([op], clip=False)(bse, seed=3, index=9)
    draw = op.draw(op.generator(3, 9, 0), bse.shape)
    expected = bse * draw["gain"][:, None, None] + draw["offset"][:, None, None]
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    for e in range(20):
        a, b = np.polyfit(bse[e].ravel(), out[e].astype(np.float64).ravel(), 1)
        assert abs(a - draw["gain"][e]) < 1e-5 and abs(b - draw["offset"][e]) < 1e-5
    assert np.all((draw["gain"] >= 0.8) & (draw["gain"] <= 1.2)) and len(set(draw["gain"])) == 20


def test_seeded_bit_reproducible_and_independent_of_the_batch():
    rng = np.random.default_rng(1)
    batch = rng.uniform(0.1, 0.6, size=(3, 4, 16, 16))
    chain = acq.Acquisition([acq.Drift(0.5), acq.GainNoise(0.05), acq.ReadoutNoise(0.01), acq.BrightnessContrast()])
    first = chain(batch, seed=11, index=5)
    np.testing.assert_array_equal(first, chain(batch, seed=11, index=5))
    np.testing.assert_array_equal(first[1], chain(batch[1], seed=11, index=6))  # sample 6 alone = in a batch
    np.testing.assert_array_equal(first[2], chain(batch[::-1][:1], seed=11, index=[7])[0])
    assert not np.array_equal(chain(batch[0], seed=11, index=5), chain(batch[0], seed=11, index=6))
    assert not np.array_equal(chain(batch[0], seed=11, index=5), chain(batch[0], seed=12, index=5))
    import torch

    tensor = chain(torch.from_numpy(batch.astype(np.float32)), seed=11, index=5)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), chain(batch.astype(np.float32), seed=11, index=5))


def test_composition_order_is_recorded_and_matters_and_records_round_trip():
    ops = [acq.Drift(0.5), acq.GainNoise(0.05)]
    forward, backward = acq.Acquisition(ops), acq.Acquisition(ops[::-1])
    assert [r["op"] for r in forward.describe()["operators"]] == ["drift", "gain_noise"]
    assert [r["op"] for r in backward.describe()["operators"]] == ["gain_noise", "drift"]
    bse = np.full((3, 8, 8), 0.3)
    assert not np.array_equal(forward(bse, seed=0), backward(bse, seed=0))
    full = acq.Acquisition([*ops, acq.ReadoutNoise(0.01), acq.BrightnessContrast((0.9, 1.1), (0, 0.01))], clip=False)
    record = json.loads(json.dumps(full.describe()))
    assert acq.from_record(record) == full and acq.from_record(record).clip is False
    for name, op in acq.LEVELS.items():
        assert acq.from_record(op.describe()) == op
        assert acq.level(name).operators == [op]
    assert list(acq.DEGRADATIONS["drift"]) == ["drift-0.25nm", "drift-0.5nm", "drift-1nm"]
    assert list(acq.DEGRADATIONS["gain_noise"]) == ["gain-2pct", "gain-5pct", "gain-10pct"]


def test_clip_keeps_yields_in_zero_one():
    bse = np.full((2, 32, 32), 0.01)
    assert acq.Acquisition([acq.ReadoutNoise(0.05)], clip=False)(bse).min() < 0
    out = acq.Acquisition([acq.ReadoutNoise(0.05)])(bse)
    assert out.min() == 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("make, message", [
    (lambda: acq.Drift(0.5)(np.zeros((4, 4))), r"shape \(E, H, W\) or \(N, E, H, W\)"),
    (lambda: acq.Drift(0.5)(np.full((2, 4, 4), np.nan)), "NaN or infinite"),
    (lambda: acq.Drift(-1.0), "drift amplitude_nm must be a finite number >= 0"),
    (lambda: acq.Drift(1.0, pixel_nm=0), "pixel_nm must be > 0"),
    (lambda: acq.GainNoise(float("nan")), "relative_sigma must be a finite number"),
    (lambda: acq.ReadoutNoise(-0.1), "readout noise sigma"),
    (lambda: acq.BrightnessContrast((1.2, 0.8)), "low <= high"),
    (lambda: acq.BrightnessContrast((-1, 1)), "low >= 0"),
    (lambda: acq.Drift(0.5)(np.zeros((2, 2, 4, 4)), index=[1]), "1 sample indices for a batch of 2"),
    (lambda: acq.Drift(0.5)(np.zeros((2, 4, 4)), seed=-1), "seed must be >= 0"),
    (lambda: acq.from_record({"op": "drift", "amplitude": 1}), "bad parameters for acquisition operator 'drift'"),
    (lambda: acq.Acquisition([lambda x: x]), "an Acquisition holds operators"),
])
def test_bad_input_raises_a_clear_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_names_are_looked_up():
    with pytest.raises(UnknownNameError, match="unknown acquisition level 'drift-2nm'; known: drift-0.25nm"):
        acq.level("drift-2nm")
    with pytest.raises(UnknownNameError, match="unknown acquisition operator 'blur'; known: drift, gain_noise"):
        acq.from_record({"op": "blur"})


def test_degrade_command_writes_the_stack_with_its_acquisition_record(tmp_path, capsys):
    labels = np.zeros((20, 16, 16), np.uint8)
    labels[:, 4, 4] = 1
    stack = BseStack(bse=_blob(16, (7.5, 8.0), energies=3), energies_keV=[1.0, 2.0, 3.0],
                     counts=np.zeros((3, 16, 16), np.int64), simulated_electrons_per_pixel=100, cutoff_eV=50.0,
                     meta={"source": "test"}, labels=labels).save(tmp_path / "s.npz")
    argv = ["degrade", str(stack), "--drift-nm", "0.5", "--gain-noise", "0.05", "--readout-noise", "0.01",
            "--gain-range", "0.9", "1.1", "--seed", "3", "--out", str(tmp_path / "d.npz")]
    assert datasets_main(argv) == 0
    assert "drift, gain_noise, readout_noise, brightness_contrast; seed 3" in capsys.readouterr().out
    out = BseStack.load(tmp_path / "d.npz")
    record = out.meta["acquisition"]
    assert out.meta["source"] == "test" and record["seed"] == 3 and record["sample_index"] == 0
    assert len(record["draws"]["drift.shift_px"]) == 3 and len(record["draws"]["brightness_contrast.gain"]) == 3
    expected = acq.from_record(record)
    assert [op.name for op in expected.operators] == ["drift", "gain_noise", "readout_noise", "brightness_contrast"]
    np.testing.assert_array_equal(out.bse, expected(BseStack.load(stack).bse, seed=3, index=0))
    assert out.counts is None and out.simulated_electrons_per_pixel == 100 and out.cutoff_eV == 50.0
    np.testing.assert_array_equal(out.labels, labels)
    first = (tmp_path / "d.npz").read_bytes()
    assert datasets_main(argv) == 0 and BseStack.load(tmp_path / "d.npz").meta == out.meta
    assert len(first) > 0 and not list(tmp_path.glob(".*tmp"))
    assert datasets_main(["degrade", str(stack), "--level", "gain-5pct", "--out", str(tmp_path / "g.npz")]) == 0
    assert BseStack.load(tmp_path / "g.npz").meta["acquisition"]["operators"] == [acq.LEVELS["gain-5pct"].describe()]


@pytest.mark.parametrize("extra, message", [
    ([], "no degradation asked"),
    (["--level", "nope"], "unknown acquisition level 'nope'"),
    (["--drift-nm", "-1"], "drift amplitude_nm must be"),
])
def test_degrade_command_names_bad_requests(tmp_path, capsys, extra, message):
    stack = BseStack(bse=np.full((2, 4, 4), 0.2), energies_keV=[1.0, 2.0]).save(tmp_path / "s.npz")
    assert datasets_main(["degrade", str(stack), "--out", str(tmp_path / "d.npz"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d.npz").exists()


def test_stack_conditions_take_given_then_recorded_then_ideal_for_a_simulated_stack():
    assert acq.stack_conditions({}, simulated=True) == acq.IDEAL_CONDITIONS
    assert set(acq.stack_conditions({}, simulated=False).values()) == {None}  # a user's stack: unknown
    record = acq.Acquisition([acq.Drift(0.3), acq.GainNoise(0.05), acq.Drift(0.4)]).describe()
    meta = {"probe": {"fwhm_nm": 1.5}, "detector": {"kind": "annular", "takeoff_min_deg": 20.0, "takeoff_max_deg": 70.0, "threshold_eV": 200.0}, "scene": {"voxel_nm": 1.0},
            "acquisition": record}
    conditions = acq.stack_conditions(meta, simulated=True)
    assert conditions["probe_fwhm_nm"] == 1.5 and conditions["detector"] == "annular"
    assert abs(conditions["drift_nm"] - 0.5) < 1e-12  # RMS sum of 0.3 and 0.4
    assert conditions["image_operators"] == [acq.GainNoise(0.05).describe()]
    assert acq.stack_conditions(meta, simulated=True, probe_fwhm_nm=0.0, detector="plane")["probe_fwhm_nm"] == 0.0
    assert acq.condition_differences(conditions, acq.IDEAL_CONDITIONS) == [
        "probe FWHM 1.5 nm (trained: 0 nm)", "detector 'annular' (trained: 'plane')", "drift 0.5 nm (trained: 0 nm)",
        "image degradations gain_noise (trained: none)"]
    assert acq.condition_differences(acq.stack_conditions({}, simulated=False), acq.IDEAL_CONDITIONS) == []
    with pytest.raises(ValueError, match="unknown acquisition conditions"):
        acq.stack_conditions({}, simulated=True, beam="x")
