"""Dataset storage format and loader: round trip, splits, noise, verification and errors."""

from __future__ import annotations

import json

import fakes
import h5py
import numpy as np
import pytest
import torch

from datasets import builder, dataset_format, storage
from datasets.scene import COPPER

THIS_MODULE = fakes  # the builder's test seam: the fake simulator module


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("storage") / "data"
    return builder.build_dataset(out, preset="smoke", workers=1, progress=False, simulator=THIS_MODULE,
                                 n_geometries=40, shard_size=16, simulated_electrons_per_pixel=50,
                                 test_fraction=0.1, val_fraction=0.2)


def copy_dataset(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- format round trip ---------------------------------------------------------------------------


def test_shard_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = storage.SampleArrays(
        sample_ids=["g000007", "g000008"],
        bse=rng.random((2, 3, 4, 5), dtype=np.float32),
        counts=rng.integers(0, 9, (2, 3, 4, 5)),
        label=rng.integers(0, 2, (2, 6, 4, 5)),
        geometry=rng.integers(0, 3, (2, 8, 4, 5)),
        params=[{"mode": "inclusions", "primitives": [{"kind": "box"}]}, {"mode": "empty"}],
        seeds=np.array([2**62 + 1, 5], dtype=np.uint64),
    )
    path = tmp_path / "shard.h5"
    checksum = storage.write_shard(path, arrays, {"shard_index": 3, "energies_keV": [1.0, 2.0, 3.0]})
    assert checksum == storage.sha256_file(path) == storage.read_checksum(path)
    assert not list(tmp_path.glob("*.tmp-*"))
    with h5py.File(path, "r") as h5:
        assert h5.attrs["format"] == storage.FORMAT_NAME and h5.attrs["shard_index"] == 3
        assert h5["bse"].dtype == np.float32 and h5["bse"].chunks == (1, 3, 4, 5)
        assert h5["label"].dtype == np.uint8 and h5["counts"].dtype == np.uint32
        back = dataset_format.read_group(h5)
    for key in ("bse", "counts", "label", "geometry"):
        np.testing.assert_array_equal(back[key], getattr(arrays, key))
    np.testing.assert_array_equal(back["seed"], arrays.seeds)
    assert back["params"] == arrays.params and back["sample_id"] == arrays.sample_ids


def test_sample_arrays_reject_bad_shapes_and_nan():
    good = dict(sample_ids=["a"], bse=np.zeros((1, 2, 3, 3)), label=np.zeros((1, 2, 3, 3)),
                geometry=np.zeros((1, 4, 3, 3)), params=[{}])
    with pytest.raises(ValueError, match="bse must have 4 dimensions and 1 samples"):
        storage.SampleArrays(**{**good, "bse": np.zeros((2, 3, 3))})
    with pytest.raises(ValueError, match="NaN"):
        storage.SampleArrays(**{**good, "bse": np.full((1, 2, 3, 3), np.nan)})
    with pytest.raises(ValueError, match="params must hold 1"):
        storage.SampleArrays(**{**good, "params": []})


def test_open_dataset_api(dataset_path):
    dataset = storage.open_dataset(dataset_path)
    assert len(dataset) == 40 and dataset.energies_keV.shape == (20,)
    assert dataset.meta["settings"]["electrons_per_pixel"] == 50 and len(dataset.hash) == 64
    bse, labels, ids = dataset.arrays("test")
    assert bse.shape == (4, 20, 20, 20) and bse.dtype == np.float32
    assert labels.shape == (4, 20, 20, 20) and labels.dtype == np.uint8 and ids == dataset.splits["test"]
    for i, sid in enumerate(ids):
        sample = dataset.sample(sid)
        np.testing.assert_array_equal(bse[i], sample["bse"])
        np.testing.assert_array_equal(labels[i], (sample["geometry"][5:25] == COPPER))
    item = dataset.split("val")[0]
    assert set(item) == {"bse", "label", "id"} and item["id"] == dataset.splits["val"][0]
    assert item["bse"].dtype == torch.float32 and item["bse"].shape == (20, 20, 20)
    assert item["label"].dtype == torch.float32 and item["label"].shape == (20, 20, 20)
    batch = next(iter(torch.utils.data.DataLoader(dataset.split("train"), batch_size=4)))
    assert batch["bse"].shape == (4, 20, 20, 20) and len(batch["id"]) == 4
    assert dataset.cases() == ["nanocube", "nanowire"]
    cube = dataset.case("nanocube")
    assert [c["id"] for c in cube] == ["position1", "position2", "position3", "position4"]
    assert cube[0]["bse"].shape == (20, 20, 20) and cube[0]["label"].sum() == 125
    assert cube[0]["geometry"].shape == (26, 20, 20) and isinstance(cube[0]["params"], dict)


def test_uncached_reads_equal_cached_reads(dataset_path):
    cached = storage.open_dataset(dataset_path)
    uncached = storage.open_dataset(dataset_path, cache_bytes=0)
    assert not uncached.files.cache_all and cached.files.cache_all
    for a, b in zip(cached.arrays("train"), uncached.arrays("train")):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not uncached.files._shard_cache


# -- splits --------------------------------------------------------------------------------------


def test_splits_are_disjoint_complete_and_stable(dataset_path, tmp_path):
    dataset = storage.open_dataset(dataset_path)
    train, val, test = (set(dataset.splits[name]) for name in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(dataset.ids)
    assert (len(test), len(val)) == (4, 7)  # 10 % of 40; 20 % of the remaining 36
    assert storage.open_dataset(dataset_path).splits == dataset.splits
    ids = dataset.ids
    assert storage.make_splits(ids, 0.1, 0.2, seed=0) == {"seed": 0, **dataset.splits}
    assert storage.make_splits(ids, 0.1, 0.2, seed=1)["test"] != dataset.splits["test"]
    paper_like = storage.make_splits([storage.sample_id(i) for i in range(10_000)], 0.02, 0.05, seed=0)
    assert (len(paper_like["test"]), len(paper_like["val"]), len(paper_like["train"])) == (200, 490, 9310)


def test_saved_splits_are_reused_not_recomputed(dataset_path, tmp_path):
    path = copy_dataset(dataset_path, tmp_path / "copy")
    text = (path / "splits.json").read_text()
    builder.build_dataset(path, preset="smoke", workers=1, progress=False, simulator=THIS_MODULE,
                          n_geometries=40, shard_size=16, simulated_electrons_per_pixel=50, test_fraction=0.1, val_fraction=0.2)
    assert (path / "splits.json").read_text() == text


def test_edited_or_overlapping_splits_are_rejected(dataset_path, tmp_path):
    path = copy_dataset(dataset_path, tmp_path / "copy")
    splits = json.loads((path / "splits.json").read_text())
    splits["val"].append(splits["test"][0])
    (path / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(storage.DatasetError, match="splits.json does not match the checksum"):
        storage.open_dataset(path)
    with pytest.raises(storage.DatasetError, match="in both val and test"):
        storage.check_splits(splits, storage.open_dataset(dataset_path).ids)


# -- noise ---------------------------------------------------------------------------------------


def test_poisson_noise_is_reproducible_and_has_the_right_statistics(dataset_path):
    dataset = storage.open_dataset(dataset_path)
    clean = dataset.split("train")[3]["bse"]
    noisy = dataset.split("train", read_electrons_per_pixel=20, seed=7)[3]["bse"]
    again = dataset.split("train", read_electrons_per_pixel=20, seed=7)[3]["bse"]
    other = dataset.split("train", read_electrons_per_pixel=20, seed=8)[3]["bse"]
    assert torch.equal(noisy, again) and not torch.equal(noisy, other)
    assert torch.allclose(noisy * 20, torch.round(noisy * 20), atol=1e-4)  # whole electrons / dose
    assert abs(float(noisy.mean() - clean.mean())) < 0.02
    assert float((noisy - clean).var()) == pytest.approx(float(clean.mean()) / 20, rel=0.25)
    bse, _, ids = dataset.arrays("train", read_electrons_per_pixel=20, seed=7)
    np.testing.assert_array_equal(bse[3], noisy.numpy())
    with pytest.raises(ValueError, match="read_electrons_per_pixel"):
        dataset.split("train", read_electrons_per_pixel=0)


# -- verification and errors ---------------------------------------------------------------------


def test_missing_directory_or_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset directory not found"):
        storage.open_dataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="dataset.json is missing"):
        storage.open_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(storage.DatasetError, match="dataset.json is corrupt"):
        storage.open_dataset(tmp_path)


def test_corrupt_shard_is_named_and_never_used(dataset_path, tmp_path):
    path = copy_dataset(dataset_path, tmp_path / "copy")
    shard = path / storage.shard_name(1)
    blob = bytearray(shard.read_bytes())
    blob[-100] ^= 0x01
    shard.write_bytes(bytes(blob))
    dataset = storage.open_dataset(path)  # sizes still match: found when the shard is read
    dataset.sample("g000000")  # shard 0 is fine
    with pytest.raises(storage.DatasetError, match="shard-00001.h5 is corrupt"):
        dataset.sample("g000020")
    with pytest.raises(storage.DatasetError, match="shard-00001.h5 fails its sha256"):
        dataset.verify()


def test_truncated_and_missing_files_are_named(dataset_path, tmp_path):
    path = copy_dataset(dataset_path, tmp_path / "copy")
    with open(path / "cases.h5", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(storage.DatasetError, match="cases.h5 is truncated"):
        storage.open_dataset(path)
    (path / storage.shard_name(2)).unlink()
    with pytest.raises(storage.DatasetError, match="shard-00002.h5 is missing"):
        storage.open_dataset(path)


def test_incomplete_dataset_and_unknown_names(dataset_path, tmp_path):
    dataset = storage.open_dataset(dataset_path)
    with pytest.raises(KeyError, match="unknown split 'validation'"):
        dataset.split("validation")
    with pytest.raises(KeyError, match="unknown case 'nanosphere'; known: nanocube, nanowire"):
        dataset.case("nanosphere")
    with pytest.raises(KeyError, match="unknown sample id"):
        dataset.sample("g999999")
    path = copy_dataset(dataset_path, tmp_path / "copy")
    manifest = json.loads((path / "dataset.json").read_text())
    manifest["complete"] = False
    (path / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(storage.DatasetError, match="incomplete.*python -m datasets build"):
        storage.open_dataset(path)


def test_the_dataset_and_the_fakes_implement_the_dataset_protocol(dataset_path):
    from datasets.protocol import Dataset

    dataset = storage.open_dataset(dataset_path)
    assert isinstance(dataset, Dataset) and isinstance(fakes.ToyDataset(4, 2, 2), Dataset)
    assert not isinstance(dataset.split("train"), Dataset)  # a split is no dataset
    assert dataset.dose_study_electrons_per_pixel is None and dataset.path == dataset_path
    assert (dataset.simulated_electrons_per_pixel, dataset.read_electrons_per_pixel, dataset.thinned) == (50, 50, False)
    assert np.array_equal(dataset.split("train").energies_keV, dataset.energies_keV)
