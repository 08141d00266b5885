"""Dataset builder: presets, seeding independent of workers, resume after a kill, corrupt shards.

Most tests plug in a fast deterministic fake simulator through the builder's documented test
seam (``simulator=`` / ``BSE_DATASET_SIMULATOR``): this module itself is the fake simulator
module. One test builds a tiny dataset with the real Monte Carlo simulator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakes
import h5py
import numpy as np
import pytest

from datasets import builder, storage
from datasets.geometry import random_geometry
from datasets.presets import DATASET_PRESETS, DatasetPreset, get_preset
from datasets.scene import block_labels

REPO = Path(__file__).resolve().parents[1]
THIS_MODULE = fakes  # the builder's test seam: the fake simulator module
# other test modules pass this module as the simulator: its API, from tests/fakes.py
from fakes import SIMULATOR_VERSION, PhysicsConfig, simulate_stacks  # noqa: E402,F401

TINY = dict(n_geometries=10, shard_size=3, simulated_electrons_per_pixel=20, cases=())


def build_fake(out, **overrides):
    settings = {**TINY, **overrides}
    settings.setdefault("workers", 1)
    return builder.build_dataset(out, preset="smoke", progress=False, simulator=THIS_MODULE, **settings)


def shard_files(path) -> list[Path]:
    return sorted((Path(path) / storage.SHARDS_DIR).glob("shard-*.h5"))


# -- presets ------------------------------------------------------------------------------------


def test_presets_have_the_documented_sizes():
    paper = DATASET_PRESETS["paper"]
    assert (paper.n_geometries, paper.simulated_electrons_per_pixel, len(paper.energies_keV)) == (10_000, 1000, 20)
    assert paper.test_fraction == 0.02 and 0 < paper.val_fraction < 0.2
    assert set(DATASET_PRESETS) == {"smoke", "quick", "standard", "paper"}
    for preset in DATASET_PRESETS.values():
        assert preset.cases == ("nanocube", "nanowire")
    sizes = [DATASET_PRESETS[name].n_geometries for name in ("smoke", "quick", "standard", "paper")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_unknown_preset_and_bad_overrides_give_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset preset 'huge'; known: smoke, quick, standard, paper"):
        builder.build_dataset(tmp_path, preset="huge")
    with pytest.raises(TypeError, match="unknown dataset preset field.*n_geometry"):
        get_preset("smoke", n_geometry=3)
    with pytest.raises(ValueError, match="n_geometries"):
        get_preset("smoke", n_geometries=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        DatasetPreset("x", 3, 5, energies_keV=(2.0, 1.0))
    with pytest.raises(ValueError, match="device"):
        builder.build_dataset(tmp_path, preset="smoke", device="tpu", simulator=THIS_MODULE)
    assert get_preset("quick", n_geometries=None).n_geometries == DATASET_PRESETS["quick"].n_geometries


def test_seeds_are_derived_from_dataset_seed_and_index_only():
    assert builder.derive_seed(0, builder.STREAM_GEOMETRY, 5) == builder.derive_seed(0, builder.STREAM_GEOMETRY, 5)
    seeds = {builder.derive_seed(s, stream, i) for s in (0, 1) for stream in (1, 2, 3) for i in range(50)}
    assert len(seeds) == 2 * 3 * 50


# -- building -----------------------------------------------------------------------------------


def test_build_writes_geometries_labels_and_images_of_the_derived_seeds(tmp_path):
    path = build_fake(tmp_path / "data")
    dataset = storage.open_dataset(path)
    assert len(shard_files(path)) == 4 and len(dataset) == 10
    sample = dataset.sample("g000004")
    geometry, params = random_geometry(builder.derive_seed(0, builder.STREAM_GEOMETRY, 4))
    np.testing.assert_array_equal(sample["geometry"], geometry)
    np.testing.assert_array_equal(sample["label"], block_labels(geometry))
    assert sample["params"] == params and sample["seed"] == builder.derive_seed(0, builder.STREAM_GEOMETRY, 4)
    # shard 1 holds samples 3..5, simulated in one batch with the shard's seed
    shard_seed = builder.derive_seed(0, builder.STREAM_SHARD_SIMULATION, 1)
    geometries = np.stack([random_geometry(builder.derive_seed(0, builder.STREAM_GEOMETRY, i))[0] for i in (3, 4, 5)])
    expected = simulate_stacks(geometries, dataset.energies_keV, 20, shard_seed)[1]
    np.testing.assert_array_equal(sample["bse"], expected.bse)
    meta = dataset.meta
    assert meta["simulator"] == {"module": THIS_MODULE.__name__, "version": "fake-1"}
    assert meta["physics"] == PhysicsConfig().describe() and meta["device_type"] == "cpu"  # the simulator's default
    assert meta["electrons_per_pixel"] == 20 and meta["preset"] == "smoke"


@pytest.mark.slow
def test_result_does_not_depend_on_worker_count(tmp_path):
    one = storage.open_dataset(build_fake(tmp_path / "one", workers=1))
    two = storage.open_dataset(build_fake(tmp_path / "two", workers=2))
    assert one.hash == two.hash
    np.testing.assert_array_equal(one.arrays("train")[0], two.arrays("train")[0])


def test_dask_scheduler_gives_the_same_dataset(tmp_path):
    import distributed  # a declared dependency (dask[distributed])
    local = storage.open_dataset(build_fake(tmp_path / "local"))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        on_dask = storage.open_dataset(build_fake(tmp_path / "dask", scheduler=cluster.scheduler_address))
    assert on_dask.hash == local.hash


def test_second_build_of_a_complete_dataset_rewrites_nothing(tmp_path):
    path = build_fake(tmp_path / "data")
    before = {f: f.stat().st_mtime_ns for f in [*shard_files(path), path / "dataset.json", path / "splits.json"]}
    build_fake(path)
    assert {f: f.stat().st_mtime_ns for f in before} == before


def test_resume_into_a_directory_with_other_settings_is_refused(tmp_path):
    path = build_fake(tmp_path / "data")
    with pytest.raises(ValueError, match="other settings.*electrons_per_pixel: 20 -> 30"):
        build_fake(path, simulated_electrons_per_pixel=30)


def test_corrupt_and_truncated_shards_are_detected_and_rebuilt(tmp_path):
    path = build_fake(tmp_path / "data")
    reference_hash = storage.open_dataset(path).hash
    shards = shard_files(path)
    untouched = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in shards[2:]}
    blob = bytearray(shards[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # flip one byte in the middle (image data)
    shards[0].write_bytes(bytes(blob))
    with open(shards[1], "r+b") as fh:
        fh.truncate(shards[1].stat().st_size // 2)

    with pytest.raises(storage.DatasetError, match="shard-00001.h5 is truncated"):
        storage.open_dataset(path)
    build_fake(path)
    rebuilt = storage.open_dataset(path)
    rebuilt.verify()
    assert rebuilt.hash == reference_hash
    assert {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in shards[2:]} == untouched


def test_shard_without_matching_checksum_file_is_not_used(tmp_path):
    path = build_fake(tmp_path / "data")
    shard = shard_files(path)[0]
    storage.checksum_path(shard).write_text("0" * 64 + "  shard-00000.h5\n")
    os.utime(shard, ns=(0, 0))
    build_fake(path)
    assert shard.stat().st_mtime_ns != 0  # replaced by a fresh, verified file
    assert storage.read_checksum(shard) == storage.sha256_file(shard)


@pytest.mark.slow
def test_killed_build_resumes_without_redoing_finished_shards(tmp_path):
    """Kill a real build process after its first shard, resume, compare with an uninterrupted build."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "datasets", "build", "--preset", "smoke", "--out", str(out),
               "--workers", "1", "--electrons-per-pixel", "20", "--quiet"]
    env = {
        **os.environ,
        builder.SIMULATOR_ENV: THIS_MODULE.__name__,
        "FAKE_SIMULATOR_SLEEP_S": "1.0",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)]),
    }
    process = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / storage.shard_name(0)).exists():
            assert process.poll() is None, "build process ended before writing a shard"
            assert time.monotonic() < deadline, "build process wrote no shard in 120 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in shard_files(out)}
    assert len(finished) == 1  # smoke: 2 shards and the cases; killed during the second shard
    with pytest.raises(storage.DatasetError, match="incomplete"):
        storage.open_dataset(out)

    # a temporary file as datasets.files.atomic_path names it, left by a killed write
    (out / "shards" / ".shard-00001.h5.99999.tmp").write_bytes(b"half-written shard of a killed build")
    build_smoke = dict(preset="smoke", workers=1, progress=False, simulator=THIS_MODULE, simulated_electrons_per_pixel=20)
    builder.build_dataset(out, **build_smoke)
    assert {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in finished} == finished
    assert not list(out.rglob("*.tmp"))
    resumed = storage.open_dataset(out)
    uninterrupted = storage.open_dataset(builder.build_dataset(tmp_path / "uninterrupted", **build_smoke))
    assert resumed.hash == uninterrupted.hash
    assert resumed.splits == uninterrupted.splits


def test_build_command_line(tmp_path, capsys, monkeypatch):
    from datasets.__main__ import main

    monkeypatch.setenv(builder.SIMULATOR_ENV, THIS_MODULE.__name__)
    out = tmp_path / "cli"
    assert main(["build", "--preset", "smoke", "--out", str(out), "--workers", "1",
                 "--n-geometries", "4", "--electrons-per-pixel", "3", "--quiet"]) == 0
    assert "4 samples" in capsys.readouterr().out
    dataset = storage.open_dataset(out)
    assert dataset.simulated_electrons_per_pixel == 3 and dataset.cases() == ["nanocube", "nanowire"]
    assert main(["build", "--preset", "smoke", "--out", str(out), "--electrons-per-pixel", "4", "--quiet"]) == 1
    assert "other settings" in capsys.readouterr().err  # a data problem: exit 1 (datasets.cli_errors)
    with pytest.raises(SystemExit):
        main(["build", "--preset", "huge", "--out", str(tmp_path)])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


@pytest.mark.slow
def test_real_simulator_end_to_end(tmp_path):
    """A tiny dataset with the real Monte Carlo simulator: shapes, yields, counts, labels, cases."""
    path = builder.build_dataset(tmp_path / "real", preset="smoke", workers=1, progress=False,
                                 n_geometries=2, shard_size=2, simulated_electrons_per_pixel=1, cases=("nanocube",))
    dataset = storage.open_dataset(path)
    assert dataset.meta["simulator"]["module"] == "datasets.simulate"
    from datasets.physics import PhysicsConfig as RealPhysics

    assert dataset.meta["physics"] == RealPhysics().describe()  # the default physics (nebula-penn-mixed)
    bse, labels, ids = dataset.arrays("train")
    assert bse.shape[1:] == (20, 20, 20) and labels.shape[1:] == (20, 20, 20)
    # 1 e-/pixel: whole counts; a primary and its fast secondaries may all be detected (yield above 1)
    assert np.all(bse >= 0) and np.array_equal(bse, np.round(bse)) and 0 < bse.mean() < 1
    with h5py.File(path / storage.shard_name(0), "r") as h5:
        np.testing.assert_array_equal(h5["counts"][:] / 1.0, h5["bse"][:])
    cube = dataset.case("nanocube")
    assert [c["id"] for c in cube] == ["position1", "position2", "position3", "position4"]
    assert all(c["label"].sum() == 125 for c in cube)


def _worker_pids(parent_pid: int) -> list[int]:
    """Pids of the processes whose parent is ``parent_pid`` (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent_pid:
                children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _slow_build(out: Path, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "datasets", "build", "--preset", "smoke", "--out", str(out),
               "--workers", "2", "--electrons-per-pixel", "20", "--quiet", *extra]
    env = {**os.environ, builder.SIMULATOR_ENV: THIS_MODULE.__name__, "FAKE_SIMULATOR_SLEEP_S": "30",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)])}
    # the build as started from a terminal: SIGINT at its default even where the test runner
    # inherited it ignored (a job started with `&` from a non-interactive shell, as nohup'ed CI
    # runs are), else Python installs no KeyboardInterrupt handler and Ctrl-C cannot reach it
    return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_workers(process, n: int) -> list[int]:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"build ended early: {process.stderr.read()[-2000:]}"
        spawned = []
        for pid in _worker_pids(process.pid):  # the pool's workers, not its resource tracker
            try:
                if b"spawn_main" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                    spawned.append(pid)
            except OSError:
                continue
        if len(spawned) >= n:
            return spawned
        assert time.monotonic() < deadline, "no worker processes started in 120 s"
        time.sleep(0.2)


@pytest.mark.slow
def test_workers_exit_when_the_build_parent_is_killed(tmp_path):
    """Issue 13.7: SIGKILL of the parent must not leave ~350 MB workers running under init."""
    process = _slow_build(tmp_path / "orphans")
    try:
        workers = _wait_for_workers(process, 2)
        time.sleep(1.0)  # let them start simulating
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived their killed parent"


@pytest.mark.slow
def test_ctrl_c_stops_a_build_with_one_line_and_code_130(tmp_path):
    process = _slow_build(tmp_path / "interrupted")
    try:
        workers = _wait_for_workers(process, 2)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "interrupted: finished work is kept; rerun the same command to resume" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)]


def test_corrupt_manifest_is_rebuilt_from_the_verified_shards(tmp_path, capsys):
    """Issue 13.6: a corrupt dataset.json must not cost the good shards."""
    out = tmp_path / "data"
    build = dict(preset="smoke", workers=1, progress=False, simulator=THIS_MODULE, simulated_electrons_per_pixel=20)
    builder.build_dataset(out, **build)
    before = storage.open_dataset(out).hash
    shards = {f: f.stat().st_mtime_ns for f in shard_files(out)}
    (out / storage.MANIFEST_NAME).write_text('{"truncated": ')
    builder.build_dataset(out, **build)
    assert "rebuilding the manifest from the verified shards" in capsys.readouterr().err
    assert {f: f.stat().st_mtime_ns for f in shard_files(out)} == shards  # nothing re-simulated
    assert storage.open_dataset(out).hash == before
    assert list(out.glob(f"{storage.MANIFEST_NAME}.corrupt-*"))
    # a shard of other settings is not taken on trust when no manifest vouches for it
    (out / storage.MANIFEST_NAME).write_text("not json")
    builder.build_dataset(out, **{**build, "simulated_electrons_per_pixel": 21})
    assert all(f.stat().st_mtime_ns != shards[f] for f in shard_files(out))
    assert storage.open_dataset(out).simulated_electrons_per_pixel == 21


def test_a_second_build_waits_for_the_first_and_reuses_its_data(tmp_path, capsys):
    """Issue 13.8: two `benchmark run`s on an empty folder: the second waits for the lock."""
    out = tmp_path / "data"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"fh = open({str(out / builder.LOCK_NAME)!r}, 'w'); fcntl.flock(fh, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(2)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        build = dict(preset="smoke", workers=1, progress=False, simulator=THIS_MODULE, simulated_electrons_per_pixel=20)
        with pytest.raises(storage.DatasetError, match="another build is writing"):
            builder.build_dataset(out, **build)  # the datasets CLI still refuses
        started = time.monotonic()
        builder.build_dataset(out, wait_for_lock=True, **build)
        assert time.monotonic() - started > 0.5
        assert "waiting for it to finish, then reusing its data" in capsys.readouterr().err
        assert storage.open_dataset(out).simulated_electrons_per_pixel == 20
    finally:
        holder.kill()
        holder.wait()


def test_named_cases_can_be_simulated_several_times_with_independent_seeds(tmp_path):
    from datasets.builder import build_dataset
    from datasets.cases import split_repeat
    from datasets.presets import get_preset
    from datasets.storage import open_dataset

    once = open_dataset(build_dataset(tmp_path / "once", preset=get_preset("smoke", n_geometries=4, shard_size=4),
                                      progress=False))
    thrice = open_dataset(build_dataset(tmp_path / "thrice", progress=False,
                                        preset=get_preset("smoke", n_geometries=4, shard_size=4, case_repeats=3)))
    ids = [s["id"] for s in thrice.case("nanocube")]
    assert ids[:4] == ["position1", "position2", "position3", "position4"] and ids[4] == "position1@r1"
    assert len(ids) == 12 and split_repeat("position3@r2") == ("position3", 2)
    first = {s["id"]: s for s in once.case("nanocube")}
    repeats = {s["id"]: s for s in thrice.case("nanocube")}
    assert np.array_equal(repeats["position2"]["bse"], first["position2"]["bse"])  # repeat 0 = no repeats
    assert not np.array_equal(repeats["position2@r1"]["bse"], repeats["position2"]["bse"])  # new electrons
    assert np.array_equal(repeats["position2@r1"]["label"], repeats["position2"]["label"])  # same geometry
    assert "case_repeats" not in get_preset("smoke").settings()
