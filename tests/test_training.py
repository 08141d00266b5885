"""The shared training loop: exact resume, checkpoint errors, outputs, early stop, grid search."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import ToyDataset

from methods.base import Method, create
from methods.checkpoints import load_checkpoint
from methods.grid_search import grid_search
from methods.toys import ToySplit
from methods.training import TRAIN_PRESETS, TrainSettings, mean_iou, train, train_on_splits

FAST = TrainSettings(epochs=3, batch_size=3, lr=3e-3, eval_every=1, patience=50, lam=0.5,
                     lovasz_fraction=0.34)


def test_mean_iou_counts_per_sample_and_empty_union():
    labels = torch.zeros(2, 2, 2, 2)
    labels[0, 0, 0, :] = 1
    logits = torch.full((2, 2, 2, 2), -5.0)
    logits[0, 0, 0, 0] = 5.0  # one of two Cu voxels found; sample 1 empty in both -> IoU 1
    assert mean_iou(logits, labels) == pytest.approx((0.5 + 1.0) / 2)


def test_presets_and_paper_settings():
    paper = TRAIN_PRESETS["paper"]
    assert (paper.epochs, paper.lr, paper.weight_decay, paper.eval_every, paper.patience) == (
        250, 1e-4, 1e-4, 5, 100)
    assert paper.lam == pytest.approx(1 / 12)
    assert set(TRAIN_PRESETS) == {"smoke", "quick", "standard", "paper", "paper-gpu", "study"}
    gpu = TRAIN_PRESETS["paper-gpu"]  # the one-GPU-call variant: the paper's lr and wd, bf16, compiled
    assert (gpu.lr, gpu.weight_decay, gpu.amp_dtype, gpu.compile) == (1e-4, 1e-4, "bfloat16", True)
    assert FAST.lovasz_start() == 3  # the last epoch of three uses the Lovasz hinge


def test_resume_equals_uninterrupted_training(tmp_path):
    data = ToySplit(6, seed=3)
    full = create("bsevox", config="tiny")
    train_on_splits(full, data, data, tmp_path / "full", FAST, progress=False)

    part = create("bsevox", config="tiny")
    out = train_on_splits(part, data, data, tmp_path / "part", FAST, progress=False, until_epoch=2)
    assert out == {"interrupted_at_epoch": 2}
    resumed = create("bsevox", config="tiny")
    train_on_splits(resumed, data, data, tmp_path / "part", FAST, progress=False, resume=True)

    a = load_checkpoint(tmp_path / "full" / "latest.pt")
    b = load_checkpoint(tmp_path / "part" / "latest.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert [h["loss"] for h in a["history"]] == ["wbce", "wbce", "lovasz"]


def test_training_outputs_and_reload(tmp_path):
    data = ToySplit(6, seed=1)
    method = create("unet3d", config="tiny")
    summary = train_on_splits(method, data, data, tmp_path, FAST, progress=False,
                              energies_keV=data.energies_keV)
    for name in ("method.json", "best.pt", "latest.pt", "history.csv", "training_curve.png",
                 "summary.json"):
        assert (tmp_path / name).exists(), name
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns[:6]) == ["epoch", "train_loss", "val_miou", "val_threshold", "lr", "seconds"]
    assert history["val_threshold"].between(0.05, 0.95).all()  # chosen on validation, as evaluated
    assert history["epoch"].tolist() == [1, 2, 3]
    assert json.loads((tmp_path / "summary.json").read_text())["best_epoch"] == summary["best_epoch"]
    assert summary["parameters"] > 0 and summary["macs"] > 0
    loaded = Method.load(tmp_path)
    np.testing.assert_allclose(loaded.energies_keV, data.energies_keV)
    np.testing.assert_array_equal(loaded.reconstruct(data.bse[:2]), method.reconstruct(data.bse[:2]))
    # save elsewhere (weights in model.pt) and load again
    method.save(tmp_path / "copy")
    again = Method.load(tmp_path / "copy")
    np.testing.assert_array_equal(again.reconstruct(data.bse[:2]), method.reconstruct(data.bse[:2]))


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(tmp_path):
    data = ToySplit(4, seed=2)
    settings = replace(FAST, epochs=2, batch_size=2)
    train_on_splits(create("unet3d", config="tiny"), data, data, tmp_path, settings, progress=False)
    with pytest.raises(ValueError, match="different run"):
        train_on_splits(create("unet3d", config="tiny"), data, data, tmp_path,
                        replace(settings, lr=1e-2), progress=False, resume=True)
    with pytest.raises(ValueError, match="different run"):
        train_on_splits(create("unet3d", config="small"), data, data, tmp_path, settings,
                        progress=False, resume=True)
    # weights of a different network
    bad = create("unet3d", config="small")
    with pytest.raises(ValueError, match="does not match"):
        bad._load_state(tmp_path)
    (tmp_path / "latest.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        train_on_splits(create("unet3d", config="tiny"), data, data, tmp_path, settings,
                        progress=False, resume=True)
    truncated = (tmp_path / "best.pt").read_bytes()[:200]
    (tmp_path / "best.pt").write_bytes(truncated)
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        Method.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_early_stopping_with_patience(tmp_path):
    data = ToySplit(4, seed=4)
    frozen = TrainSettings(epochs=20, batch_size=2, lr=0.0, weight_decay=0.0, eval_every=1,
                           patience=2, lovasz_fraction=0.0)
    summary = train_on_splits(create("unet3d", config="tiny"), data, data, tmp_path, frozen,
                              progress=False)
    # lr = 0: the weights never change, so the mIoU of epoch 1 is never beaten
    assert summary["stopped_early"] and summary["best_epoch"] == 1
    assert summary["epochs_run"] == 3


def test_train_uses_dataset_splits_and_energies(tmp_path):
    dataset = ToyDataset(n_train=4, n_val=2, n_test=2)
    method = create("unet3d", config="tiny")
    summary = train(method, dataset, tmp_path, replace(FAST, epochs=1, batch_size=2), progress=False)
    assert summary["n_train"] == 4 and summary["n_val"] == 2
    assert method.fitted and method.energies_keV is not None
    with pytest.raises(ValueError, match="trained on 20 energies"):
        method.reconstruct(np.zeros((1, 5, 20, 20), np.float32))
    assert "training_data" not in json.loads((tmp_path / "method.json").read_text())  # toy data: no dose

    dataset.simulated_electrons_per_pixel = dataset.read_electrons_per_pixel = 60  # a real dataset's dose: recorded
    train(create("unet3d", config="tiny"), dataset, tmp_path / "dosed", replace(FAST, epochs=1, batch_size=2),
          progress=False)
    info = json.loads((tmp_path / "dosed" / "method.json").read_text())
    assert info["training_data"] == {"electrons_per_pixel": 60}


class ValOnlyDataset(ToyDataset):
    """Refuses to hand out its test split: model selection must never look at it."""

    def split(self, name, **kwargs):
        if name == "test":
            raise AssertionError("grid search read the test split")
        return super().split(name, **kwargs)


def test_grid_search_selects_on_validation_and_resumes(tmp_path):
    dataset = ValOnlyDataset(n_train=4, n_val=2, n_test=2)
    settings = TrainSettings(epochs=1, batch_size=2, eval_every=1, lovasz_fraction=0.0)
    grid = {"lr": [1e-3, 1e-2], "weight_decay": [1e-4], "lam": [0.5, 0.25]}
    table = grid_search("unet3d", "tiny", dataset, grid=grid, settings=settings, out_dir=tmp_path,
                        max_trials=3, seed=0, progress=False)
    assert len(table) == 3 and table["best_val_miou"].notna().all()
    saved = pd.read_csv(tmp_path / "grid_results.csv")
    assert len(saved) == 3
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["selected_on"] == "validation split"
    assert best["best"]["best_val_miou"] == pytest.approx(table["best_val_miou"].max())
    stamp = (tmp_path / "grid_results.csv").stat().st_mtime_ns
    again = grid_search("unet3d", "tiny", dataset, grid=grid, settings=settings, out_dir=tmp_path,
                        max_trials=3, seed=0, progress=False)
    assert (tmp_path / "grid_results.csv").stat().st_mtime_ns == stamp  # nothing retrained
    pd.testing.assert_frame_equal(again, table)
    with pytest.raises(KeyError, match="unknown setting"):
        grid_search("unet3d", "tiny", dataset, grid={"momentum": [0.9]}, out_dir=tmp_path)


@pytest.mark.slow
def test_tiny_bsevox_overfits_a_handful_of_samples(tmp_path):
    data = ToySplit(4, seed=0)
    settings = TrainSettings(epochs=80, batch_size=4, lr=8e-3, lam=0.5, lovasz_fraction=0.25,
                             eval_every=10, patience=1000)
    method = create("bsevox", config="tiny")
    train_on_splits(method, data, data, tmp_path, settings, progress=False)
    prob = method.reconstruct(data.bse, data.energies_keV)
    pred, gt = prob > 0.5, data.labels > 0.5
    iou = [(p & g).sum() / (p | g).sum() for p, g in zip(pred, gt)]
    assert np.mean(iou) > 0.95, iou


def test_inputs_are_normalised_per_energy_with_train_statistics(tmp_path):
    """The network sees each energy standardised with the train split's mean and std, saved with
    the weights: a stack scaled per energy after training is not what the network was fitted on."""
    data = ToySplit(6, seed=4)
    method = create("bsevox", config="tiny", preset="smoke")
    train_on_splits(method, data, data, tmp_path, FAST, progress=False, energies_keV=data.energies_keV)
    x = torch.from_numpy(data.bse)
    torch.testing.assert_close(method.network.mean, x.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(method.network.std, x.double().transpose(0, 1).reshape(20, -1).std(1).float(),
                               rtol=1e-4, atol=1e-6)
    loaded = Method.load(tmp_path)
    torch.testing.assert_close(loaded.network.mean, method.network.mean)



def test_the_unet_takes_its_inputs_as_simulated_by_default():
    from methods.network import PerEnergyNormalised

    assert not isinstance(create("unet3d", config="tiny").init_network(20), PerEnergyNormalised)
    assert isinstance(create("unet3d", config="tiny", normalise_inputs=True).init_network(20), PerEnergyNormalised)


def test_the_default_lambda_search_goes_both_ways():
    from methods.grid_search import DEFAULT_GRID, PAPER_GRID

    lams = DEFAULT_GRID["lam"]
    assert min(lams) == pytest.approx(1 / 15) and max(lams) == pytest.approx(14 / 15)
    assert len(lams) == 27 and len(set(lams)) == 27  # 1/2 once
    assert all(lam <= 0.5 for lam in PAPER_GRID["lam"])  # the paper's: Cu weighted down only
    assert sum(lam > 0.5 for lam in lams) == 13 and sum(lam < 0.5 for lam in lams) == 13


@pytest.mark.parametrize("name,config", [("bsevox", "tiny"), ("unet3d", "tiny")])
def test_channels_last_training_follows_the_same_losses(tmp_path, name, config):
    """``channels_last`` is a speed setting: the same steps on the same values, only the memory
    order of the convolution weights and inputs differs, so the losses agree to float rounding
    (Adam's normalised steps then let tiny differences grow in near-zero weights, as between two
    machines: equal quality is a paired validation measurement, README) and a saved model stays
    reusable."""
    from methods.train_settings import RESUMABLE_DIFFERENCES

    data = ToySplit(6, seed=3)
    plain, fast = create(name, config=config), create(name, config=config)
    train_on_splits(plain, data, data, tmp_path / "plain", FAST, progress=False)
    train_on_splits(fast, data, data, tmp_path / "fast", replace(FAST, channels_last=True), progress=False)
    a, b = load_checkpoint(tmp_path / "plain" / "latest.pt"), load_checkpoint(tmp_path / "fast" / "latest.pt")
    convs = [k for k, v in b["model"].items() if v.dim() in (4, 5)]
    assert convs and any(not b["model"][k].is_contiguous() for k in convs)  # stored channels-last
    np.testing.assert_allclose([h["train_loss"] for h in b["history"]], [h["train_loss"] for h in a["history"]],
                               rtol=2e-3)
    assert "channels_last" in RESUMABLE_DIFFERENCES
