"""The main job under a time budget: clean stops that a rerun continues, the status file, the
report's "What ran" section and the pack (the CPU dry run of the one-GPU-call paper run)."""

from __future__ import annotations

import json
import shutil
import tarfile
import time

import pandas as pd
import pytest
import torch

from benchmark import cli
from benchmark.main_job import DONE, NOT_STARTED, STATUS_FILE, run_main_job, training_order
from benchmark.presets import get_preset
from benchmark.runner import Benchmark, ModelSpec, RunSpec
from datasets import builder, storage
from datasets.budget import BudgetExhausted, TimeBudget
from methods import base
from methods.base import create
from methods.checkpoints import load_checkpoint
from methods.toys import ToySplit
from methods.training import TrainSettings, train_on_splits
from reports.results import load_inputs

FAST = TrainSettings(epochs=3, batch_size=3, lr=3e-3, eval_every=1, patience=50, lam=0.5, lovasz_fraction=0.34)


def test_time_budget_arithmetic():
    budget = TimeBudget(100.0, started=time.monotonic() - 95.0)
    assert 4.0 < budget.remaining() <= 5.0 and budget.expired(reserve=10.0) and not budget.expired()
    assert TimeBudget(None).deadline() is None and not TimeBudget(None).expired(1e9)
    with pytest.raises(ValueError, match="positive number of seconds"):
        TimeBudget(0)


def test_training_stops_at_the_deadline_and_resumes_exactly(tmp_path):
    data = ToySplit(6, seed=3)
    full = create("bsevox", config="tiny")
    train_on_splits(full, data, data, tmp_path / "full", FAST, progress=False)
    part = create("bsevox", config="tiny")
    out = train_on_splits(part, data, data, tmp_path / "part", FAST, progress=False, deadline=time.monotonic())
    assert out == {"interrupted_at_epoch": 1, "epochs": 3, "reason": "time budget"}
    assert (tmp_path / "part" / "latest.pt").is_file() and not (tmp_path / "part" / "summary.json").exists()
    train_on_splits(create("bsevox", config="tiny"), data, data, tmp_path / "part", FAST, progress=False, resume=True)
    a, b = load_checkpoint(tmp_path / "full" / "latest.pt"), load_checkpoint(tmp_path / "part" / "latest.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_dataset_build_stops_at_the_deadline_and_resumes(tmp_path):
    import test_builder

    settings = dict(preset="smoke", workers=1, progress=False, simulator=test_builder.THIS_MODULE,
                    simulated_electrons_per_pixel=20, shard_size=2)
    with pytest.raises(BudgetExhausted, match="rerun to continue"):
        builder.build_dataset(tmp_path / "cut", deadline=time.monotonic(), **settings)
    assert json.loads((tmp_path / "cut" / "dataset.json").read_text()).get("complete") is not True
    builder.build_dataset(tmp_path / "cut", **settings)
    builder.build_dataset(tmp_path / "whole", **settings)
    assert storage.open_dataset(tmp_path / "cut").hash == storage.open_dataset(tmp_path / "whole").hash


def test_paper_preset_trains_in_the_stated_order():
    bench = Benchmark("paper")
    plan = [RunSpec(ModelSpec(m, c, v), "test", "validation") for m, c, v in (
        ("bsevox", "small", "full"), ("bsevox", "lite", "no-sope"), ("unet3d", "base", "full"),
        ("bsevox", "medium", "full"), ("bsevox", "moderate", "full"), ("bsevox", "lite", "full"),
        ("medsem", "default", "full"))]
    order = [(m.method, m.config, m.variant) for m in training_order(bench, plan)]
    assert order == [("bsevox", "lite", "full"), ("bsevox", "moderate", "full"), ("unet3d", "base", "full"),
                     ("bsevox", "small", "full"), ("bsevox", "medium", "full"), ("bsevox", "lite", "no-sope")]
    assert get_preset("paper").train_preset == "paper-gpu"


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """The dry run: ``benchmark main --preset smoke --device cpu --time-budget 1200``, with the
    one-file learned method of ``fake_learned_method.py`` registered beside the real ones."""
    root = tmp_path_factory.mktemp("smoke") / "results"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(base.REGISTRY, "fakelearned", "fake_learned_method:FakeLearned")
        assert cli.main(["main", "--preset", "smoke", "--results", str(root), "--time-budget", "1200",
                         "--threads", "1"]) == 0
    return root


@pytest.mark.slow
def test_dry_run_completes_every_stage_and_reports_it(smoke_results):
    status = json.loads((smoke_results / STATUS_FILE).read_text())
    assert status["complete"] and status["time_budget_s"] == 1200
    stages = {item["stage"] for item in status["items"]}
    assert stages == {"data", "training", "evaluation"}
    assert all(item["status"] == DONE for item in status["items"])
    html = (smoke_results / "report.html").read_text()
    assert "What ran" in html and "time budget 1200 s" in html


@pytest.mark.slow
def test_a_learned_method_joins_with_one_file(smoke_results):
    """Registered from one file, the fake learned method was trained through ``Method.fit`` and
    scored on every case like the real ones; its own label names it in the rows and the report."""
    rows = pd.read_parquet(smoke_results / "results.parquet")
    mine = rows[rows["method"] == "fakelearned"]
    assert set(mine["case"]) >= {"test", "nanocube", "nanowire"} and "ablation" not in set(mine["case"])
    assert set(mine["label"]) == {"Fake learned (one file)"} and set(mine["config"]) == {"one"}
    assert (smoke_results / "models" / "fakelearned-one" / "state.npz").is_file()
    assert "Fake learned (one file)" in (smoke_results / "report.html").read_text()
    assert set(rows.loc[rows["method"] == "bsevox", "label"]) == {"BSE-VoxNets"}


@pytest.mark.slow
def test_an_exhausted_budget_stops_cleanly_and_a_rerun_continues(smoke_results, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(smoke_results, root)
    removed = root / "models" / "unet3d-tiny"
    shutil.rmtree(removed)  # as if its training had not started
    bench = Benchmark("smoke", results_dir=root, progress=False)
    status = run_main_job(bench, TimeBudget(60.0, started=time.monotonic() - 59.0))
    by_name = {(i.stage, i.name): i.status for i in status.items}
    assert by_name[("training", "unet3d-tiny")] == NOT_STARTED
    assert by_name[("training", "bsevox-tiny")] == DONE  # trained before
    skipped = [i for i in status.items if i.stage == "evaluation" and i.name.startswith("unet3d")]
    assert skipped and all(i.status != DONE for i in skipped)
    cached = [i for i in status.items if i.stage == "evaluation" and i.name.startswith("bsevox")]
    assert cached and all(i.status == DONE and i.note == "cached" for i in cached)  # cached runs cost nothing
    assert not status.complete
    status = run_main_job(Benchmark("smoke", results_dir=root, progress=False), TimeBudget(None))
    assert status.complete and (removed / "summary.json").is_file()


@pytest.mark.slow
def test_pack_fits_the_limit_and_holds_results_and_half_precision_weights(smoke_results, tmp_path):
    archive = tmp_path / "pack.tar.gz"
    assert cli.main(["pack", str(smoke_results), "--max-mib", "20", "--out", str(archive)]) == 0
    assert archive.stat().st_size <= 20 * 2**20
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("PACK_MANIFEST.json"))
        weights = torch.load(tar.extractfile("models/bsevox-tiny/best.fp16.pt"), weights_only=False)
    assert {"results.parquet", "main_job.json", "report.html", "models/bsevox-tiny/history.csv"} <= set(names)
    assert all(v.dtype == torch.float16 for v in weights["model"].values() if v.is_floating_point())
    assert manifest["dataset"]["bytes_on_disk"] > 0 and "not packed" in manifest["dataset"]["note"]
    small = tmp_path / "small.tar.gz"  # the report (4 MB of embedded figures) does not fit 1 MiB
    assert cli.main(["pack", str(smoke_results), "--max-mib", "1", "--out", str(small)]) == 0
    with tarfile.open(small) as tar:
        names = tar.getnames()
        left = json.load(tar.extractfile("PACK_MANIFEST.json"))["left_out"]
    assert small.stat().st_size <= 2**20 and "report.html" in left  # what did not fit is listed
    assert "results.parquet" in names and "models/bsevox-tiny/best.fp16.pt" in names  # the first priorities


@pytest.mark.slow
def test_models_train_in_parallel_worker_processes(smoke_results, tmp_path):
    from dataclasses import replace as replace_preset

    root = tmp_path / "copy"
    shutil.copytree(smoke_results, root)
    for name in ("unet3d-tiny", "bsevox-tiny-no-sope"):
        shutil.rmtree(root / "models" / name)
    preset = replace_preset(get_preset("smoke"), train_workers=2)
    status = run_main_job(Benchmark(preset, results_dir=root, progress=False), TimeBudget(None))
    assert status.complete
    notes = {i.name: i.note for i in status.items if i.stage == "training"}
    assert notes["unet3d-tiny"].startswith("in a worker process") and notes["bsevox-tiny"] == "trained before"
    assert (root / "models" / "bsevox-tiny-no-sope" / "summary.json").is_file()


@pytest.mark.slow
def test_a_model_made_with_other_settings_is_set_aside_and_retrained(smoke_results, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(smoke_results, root)
    summary_path = root / "models" / "bsevox-tiny" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["settings"]["lr"] = 0.123  # as if trained with another learning rate
    summary_path.write_text(json.dumps(summary))
    messages = []
    bench = Benchmark("smoke", results_dir=root, progress=False, log=messages.append)
    spec = ModelSpec("bsevox", "tiny")
    assert not bench.models.is_trained(spec)
    bench.models.ensure_trained(spec)
    assert bench.models.is_trained(spec) and (root / "models" / ".stale-bsevox-tiny-0" / "summary.json").is_file()
    assert any("training settings differ (lr)" in m for m in messages)
    assert "stale" not in " ".join(load_inputs(root).histories)  # the report leaves set-aside models out


@pytest.mark.slow
def test_extra_seeds_are_trained_run_and_reported_as_mean_and_spread(smoke_results, tmp_path):
    from dataclasses import replace as replace_preset

    from reports.html import build_report
    from reports.tables import seed_table, stratified_table

    root = tmp_path / "copy"
    shutil.copytree(smoke_results, root)
    preset = replace_preset(get_preset("smoke"), extra_seeds=(1,))
    status = run_main_job(Benchmark(preset, results_dir=root, progress=False), TimeBudget(None))
    assert status.complete
    trained = {i.name for i in status.items if i.stage == "training" and i.note != "trained before"}
    assert trained == {"bsevox-tiny (seed 1)", "unet3d-tiny (seed 1)"}
    assert (root / "models" / "bsevox-tiny-seed1" / "summary.json").is_file()
    rows = pd.read_parquet(root / "results.parquet")
    second = rows[rows["seed"] == 1]
    assert set(second["method"]) == {"bsevox", "unet3d"} and set(second["variant"]) == {"full"}
    assert set(second["case"]) == {"test", "nanocube", "nanowire"}

    inputs = load_inputs(root)
    assert set(inputs.rows["seed"]) == {0} and set(inputs.seed_rows["seed"]) == {0, 1}
    table = seed_table(inputs.seed_rows).frame
    assert set(table.index) == {"BSE-VoxNets (tiny)", "3D U-Net (tiny)"} and (table["seeds"] == "0, 1").all()
    per_seed = second[(second["case"] == "test") & (second["method"] == "bsevox")]["iou"].mean()
    assert f"{per_seed:.3f}" in table.loc["BSE-VoxNets (tiny)", "per-seed mIoU"]
    strata = stratified_table(inputs.rows, inputs.runs).frame
    assert len(strata) and strata.notna().any().any()
    html = build_report(root).read_text()
    assert "Test mIoU over training seeds" in html and "by the depth of the Cu" in html
    rerun = run_main_job(Benchmark(preset, results_dir=root, progress=False), TimeBudget(None))
    assert all(i.note in ("trained before", "cached") for i in rerun.items if i.stage != "data")


@pytest.mark.slow
def test_main_with_another_thread_count_serves_every_run_from_the_cache(smoke_results, tmp_path, capsys):
    """Issue 23 with the real methods: `main --threads 2` after `main --threads 1` computes nothing
    and counts every result once (results.parquet unchanged, one row per sample)."""
    from benchmark.schema import RESULT_IDENTITY

    root = tmp_path / "copy"
    shutil.copytree(smoke_results, root)
    before = pd.read_parquet(root / "results.parquet")
    threads = torch.get_num_threads()
    try:
        assert cli.main(["main", "--preset", "smoke", "--results", str(root), "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    status = json.loads((root / STATUS_FILE).read_text())
    evaluation = [i for i in status["items"] if i["stage"] == "evaluation"]
    assert evaluation and all(i["note"] == "cached" for i in evaluation)
    after = pd.read_parquet(root / "results.parquet")
    assert not after.duplicated(RESULT_IDENTITY).any()
    assert sorted(after["run_key"].unique()) == sorted(before["run_key"].unique()) and len(after) == len(before)


@pytest.mark.slow
def test_the_realism_case_ran_the_presets_levels_with_their_simulated_stacks_cached(smoke_results):
    from benchmark.presets import get_preset
    from datasets.realism import realism_level

    rows = pd.read_parquet(smoke_results / "results.parquet")
    realism = rows[rows["case"] == "realism"]
    levels = get_preset("smoke").realism_levels
    assert sorted(set(realism["acquisition"])) == sorted(levels)
    assert set(rows.loc[rows["case"] != "realism", "acquisition"]) == {"ideal"}
    simulated = [name for name in levels if realism_level(name).kind == "simulation"]
    cached = sorted(p.name.rsplit("-", 1)[0] for p in (smoke_results / "cache" / "realism").glob("*.npz"))
    assert cached == sorted(simulated)
    per_level = realism.groupby(["method", "acquisition"])["sample"].nunique()
    assert per_level.nunique() == 1  # every method scored on the same samples at every level
