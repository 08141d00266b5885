"""The ``python -m benchmark`` command line: errors, --json output, reconstruct, report, list."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_runner import FakeDataset, FakeMethod

from benchmark import cli, listing, reconstruct
from benchmark.errors import BenchmarkError
from benchmark.listing import compute_method_listing
from benchmark.runner import Benchmark
from methods import base

REPO = Path(__file__).resolve().parent.parent
REQUIRED_KEYS = {"method", "config", "case", "sample", "iou", "mre", "seconds_per_volume", "device"}


@pytest.fixture
def fake_setup(monkeypatch):
    """The ``fake`` method registered and every command using the fake dataset."""
    monkeypatch.setitem(base.REGISTRY, "fake", f"{FakeMethod.__module__}:FakeMethod")
    monkeypatch.setattr(FakeMethod, "calls", 0)
    monkeypatch.setattr(FakeMethod, "fail", False)

    def fake_benchmark(args):
        return Benchmark(args.preset, results_dir=args.results, device=args.device, seed=args.seed,
                         threads=args.threads, dataset=FakeDataset(), progress=False)

    monkeypatch.setattr(cli, "_benchmark", fake_benchmark)


def test_unknown_method_exits_2_listing_known_methods(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--method", "nosuch", "--case", "test",
         "--preset", "smoke", "--results", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert "unknown method 'nosuch'" in done.stderr
    assert "bsevox, medsem, unet3d" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "data").exists()  # rejected before any work


@pytest.mark.parametrize("argv, expected", [
    (["run", "--method", "fake", "--case", "nosuch"],
     "unknown case 'nosuch'; known: nanocube, test, ablation"),
    (["run", "--method", "fake", "--case", "test", "--preset", "nosuch"],
     "unknown preset 'nosuch'; known: smoke, quick, standard, paper"),
    (["run", "--method", "bsevox", "--case", "test", "--config", "huge"],
     "unknown bsevox config 'huge'; known: tiny, s1m, s5m, lite, small, medium, moderate"),
    (["run", "--method", "fake", "--case", "dose", "--read-dose", "7"],
     "unknown dose level (e-/pixel) '7'; known: 2"),
    (["run", "--method", "fake", "--case", "test", "--read-dose", "2"], "add --case dose"),
    (["run", "--method", "fake", "--case", "test", "--threshold-rule", "best"],
     "unknown threshold rule 'best'"),
    (["list", "--preset", "nosuch"], "unknown preset 'nosuch'"),
    (["run", "--method", "fake", "--case", "test", "--device", "gpu"], "unknown device 'gpu'"),
])
def test_unknown_names_exit_2(tmp_path, capsys, fake_setup, argv, expected):
    if argv[0] == "run":
        argv = [*argv, "--results", str(tmp_path)]
        if "--preset" not in argv:
            argv += ["--preset", "smoke"]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert expected in captured.err and captured.out == ""


def test_run_json_is_one_parsable_list(tmp_path, capsys, fake_setup):
    argv = ["run", "--method", "fake", "--case", "test", "--case", "nanocube", "--preset", "smoke",
            "--threshold-rule", "fixed-0.5", "--results", str(tmp_path), "--json"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    rows = json.loads(out, parse_constant=reject)  # strict JSON: NaN written as null
    assert isinstance(rows, list) and len(rows) == 3
    for row in rows:
        assert REQUIRED_KEYS <= set(row)
        assert isinstance(row["per_depth_iou"], list) and len(row["per_depth_iou"]) == 20
    assert [(r["case"], r["sample"]) for r in rows] == [("test", "t0"), ("test", "t1"),
                                                        ("nanocube", "position1")]
    assert rows[1]["iou"] == pytest.approx(0.5)
    assert rows[0]["config"] == "default" and rows[0]["device"].startswith("cpu (")
    # the same command again is served from the cache
    calls = FakeMethod.calls
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == rows
    assert FakeMethod.calls == calls


def test_threads_option_is_recorded_with_the_device(tmp_path, capsys, fake_setup):
    import torch

    before = torch.get_num_threads()
    try:
        assert cli.main(["run", "--method", "fake", "--case", "nanocube", "--preset", "smoke",
                         "--results", str(tmp_path), "--threads", "1", "--json"]) == 0
    finally:
        torch.set_num_threads(before)
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["device"].endswith(", 1 thread)")
    assert cli.main(["run", "--method", "fake", "--case", "test", "--threads", "0",
                     "--preset", "smoke", "--results", str(tmp_path)]) == 2


def test_run_text_output_and_bad_custom_file(tmp_path, capsys, fake_setup):
    assert cli.main(["run", "--method", "fake", "--case", "nanocube", "--preset", "smoke",
                     "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "position1" in out and "mIoU" in out and str(tmp_path / "results.parquet") in out
    bad = tmp_path / "geometry.npy"
    np.save(bad, np.full((26, 20, 20), 7, np.uint8))
    assert cli.main(["run", "--method", "fake", "--case", str(bad), "--preset", "smoke",
                     "--results", str(tmp_path)]) == 2
    assert "unknown material ids [7]" in capsys.readouterr().err


def test_reconstruct_writes_probability_and_binary_volumes(tmp_path, capsys, fake_setup):
    from datasets.stack import BseStack

    bse = FakeDataset().arrays("test")[0][1]  # sample t1: two bright columns
    stack_path = BseStack(bse=bse, energies_keV=[1.0, 3.0]).save(tmp_path / "stack.npz")
    out = tmp_path / "volume.npy"
    assert cli.main(["reconstruct", "--method", "fake", "--stack", str(stack_path), "--out", str(out),
                     "--threshold-rule", "fixed-0.5", "--preset", "smoke",
                     "--results", str(tmp_path / "res")]) == 0
    prob = np.load(out)
    binary = np.load(tmp_path / "volume_binary.npy")
    assert prob.shape == binary.shape == (20, 4, 4) and prob.dtype == np.float32
    assert binary.dtype == np.uint8 and int(binary.sum()) == 2 * 20  # two bright columns
    assert str(tmp_path / "volume_binary.npy") in capsys.readouterr().out
    # a missing stack file is a clear error
    assert cli.main(["reconstruct", "--method", "fake", "--stack", str(tmp_path / "none.npz"),
                     "--out", str(out), "--preset", "smoke"]) == 1
    assert "not found" in capsys.readouterr().err
    assert cli.main(["reconstruct", "--method", "fake", "--stack", str(stack_path), "--out", str(out),
                     "--threshold-rule", "oracle", "--preset", "smoke"]) == 2


def test_energy_mismatch_names_the_energies():
    reconstruct.check_energies([1.0, 2.0], None, "medsem")  # a method that accepts any energies
    reconstruct.check_energies([1.0, 2.0], np.array([1.0, 2.0]), "bsevox-tiny")
    with pytest.raises(BenchmarkError, match=r"missing from the stack: \[2.0\] keV; not trained on: \[2.5\] keV"):
        reconstruct.check_energies([1.0, 2.5], [1.0, 2.0], "bsevox-tiny")
    with pytest.raises(BenchmarkError, match=r"missing from the stack: \[3.0\] keV"):
        reconstruct.check_energies([1.0, 2.0], [1.0, 2.0, 3.0], "bsevox-tiny")


def test_report_calls_reports_build_report(tmp_path, capsys, monkeypatch, fake_setup):
    import reports

    assert cli.main(["report", str(tmp_path)]) == 1
    assert "no results in" in capsys.readouterr().err
    assert cli.main(["run", "--method", "fake", "--case", "test", "--preset", "smoke",
                     "--results", str(tmp_path), "--threshold-rule", "fixed-0.5"]) == 0
    capsys.readouterr()
    seen = []

    def fake_build_report(results_dir):
        seen.append(Path(results_dir))
        return Path(results_dir) / "report.html"

    monkeypatch.setattr(reports, "build_report", fake_build_report)
    assert cli.main(["report", str(tmp_path)]) == 0
    assert seen == [tmp_path]
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")


@pytest.mark.slow
def test_list_json(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {m["method"] for m in listing["methods"]} >= {"bsevox", "medsem", "unet3d"}
    medsem = next(m for m in listing["methods"] if m["method"] == "medsem")
    assert medsem["requires_training"] is False and medsem["configs"] == []
    rows = {(r["method"], r["config"]): r for r in listing["network_configs"]}
    assert {("bsevox", "tiny"), ("bsevox", "lite"), ("unet3d", "base")} <= set(rows)
    assert all(r["parameters"] > 0 and r["macs"] > 0 for r in rows.values())
    assert [c["case"] for c in listing["cases"]][:4] == ["nanocube", "nanowire", "test", "ablation"]
    assert [p["name"] for p in listing["presets"]] == ["smoke", "quick", "standard", "paper"]
    assert listing["methods"] == [{**m, "configs": list(m["configs"])} for m in compute_method_listing()["methods"]]
    assert cli.main(["list", "--json"]) == 0  # the second time from the cache: the same listing
    assert json.loads(capsys.readouterr().out) == listing


# --------------------------------------------------------------------------- issue 13: reconstruct
def _stack(tmp_path, bse, name="stack.npz"):
    np.savez(tmp_path / name, bse=np.asarray(bse, np.float32), energies_keV=np.array([1.0, 3.0]))
    return tmp_path / name


def _reconstruct(tmp_path, stack, *extra, out=None):
    out = out or tmp_path / "volume.npy"
    return cli.main(["reconstruct", "--method", "fake", "--stack", str(stack), "--out", str(out),
                     "--preset", "smoke", "--results", str(tmp_path / "res"), *extra])


@pytest.mark.parametrize("values, message", [
    (-0.2, r"negative values \(min -0.2\)"),
    (3.7, r"values above 1 \(max 3.7\)"),
    (57.0, "raw counts, divide them by the electrons per pixel, or pass --electrons-per-pixel N"),
])
def test_reconstruct_refuses_what_cannot_be_a_yield(tmp_path, capsys, fake_setup, values, message):
    bse = np.full((2, 4, 4), 0.1)
    bse[0, 1, 1] = values
    assert _reconstruct(tmp_path, _stack(tmp_path, bse)) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "volume.npy").exists()


def test_reconstruct_accepts_counts_when_told_the_dose(tmp_path, capsys, fake_setup):
    counts = np.full((2, 4, 4), 10.0)
    counts[0, 2, 2] = 90.0
    assert _reconstruct(tmp_path, _stack(tmp_path, counts), "--electrons-per-pixel", "100") == 0
    assert np.load(tmp_path / "volume_binary.npy")[:, 2, 2].all()


def test_reconstruct_uses_no_data_and_says_which_threshold(tmp_path, capsys, monkeypatch):
    """No dataset build to reconstruct one stack: the saved threshold, else a stated 0.5."""
    monkeypatch.setitem(base.REGISTRY, "fake", f"{FakeMethod.__module__}:FakeMethod")
    stack = _stack(tmp_path, np.full((2, 4, 4), 0.1))
    assert _reconstruct(tmp_path, stack) == 0
    out = capsys.readouterr().out
    assert "threshold 0.50: default 0.5: no validation threshold saved for fake" in out
    assert not (tmp_path / "res" / "data").exists()


@pytest.mark.parametrize("content, message", [
    ("npy", "is a single NumPy array (.npy), not a BSE stack"),
    ("text", "is not a .npz (zip) file"),
])
def test_reconstruct_names_a_file_that_is_not_a_stack(tmp_path, capsys, fake_setup, content, message):
    path = tmp_path / "plain.npz"
    if content == "npy":
        with path.open("wb") as handle:
            np.save(handle, np.zeros((2, 4, 4)))
    else:
        path.write_text("this is a text file renamed .npz\n")
    assert _reconstruct(tmp_path, path) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "pickle" not in err


def test_reconstruct_checks_the_output_before_the_work(tmp_path, capsys, fake_setup):
    (tmp_path / "outdir.npy").mkdir()
    calls = FakeMethod.calls
    assert _reconstruct(tmp_path, _stack(tmp_path, np.full((2, 4, 4), 0.1)), out=tmp_path / "outdir.npy") == 2
    assert "is a directory" in capsys.readouterr().err
    assert FakeMethod.calls == calls  # nothing was reconstructed
    assert not list(tmp_path.glob("**/*.tmp*"))


def test_learned_method_refuses_another_lateral_size(tmp_path):
    class Sized(FakeMethod):
        pass

    method = Sized()
    method.image_shape = (4, 4)
    method.reconstruct(np.full((2, 4, 4), 0.1, np.float32), [1.0, 3.0])
    with pytest.raises(ValueError, match="trained on 4 x 4 images, got 4 x 5"):
        method.reconstruct(np.full((2, 4, 5), 0.1, np.float32), [1.0, 3.0])


def test_doctor_names_every_problem_and_what_would_be_rebuilt(tmp_path, capsys, monkeypatch):
    """Issue 13: `benchmark doctor` checks dataset checksums, runs, models, thresholds; changes nothing."""
    import test_builder

    from datasets import builder

    monkeypatch.setitem(base.REGISTRY, "fake", f"{FakeMethod.__module__}:FakeMethod")
    results = tmp_path / "res"
    builder.build_dataset(results / "data", preset="smoke", workers=1, progress=False, simulator=test_builder)
    bench = Benchmark("smoke", results_dir=results, progress=False, log=lambda m: None)
    bench.run_all(bench.plan(["fake"], ["test"], threshold_rule="fixed-0.5"))
    assert cli.main(["doctor", "--results", str(results)]) == 0
    assert "0 with problems" in capsys.readouterr().out

    shard = results / "data" / "shards" / "shard-00000.h5"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    [run] = list((results / "runs").iterdir())
    (run / "rows.parquet").write_bytes(b"PAR1 truncated")
    (results / "models" / "fake-broken").mkdir(parents=True)
    (results / "models" / "fake-broken" / "method.json").write_text("{not json")
    before = sorted(p.name for p in results.rglob("*"))
    assert cli.main(["doctor", "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert "3 with problems" in out
    assert "shard-00000.h5 fails its sha256 checksum" in out and "deletes and rebuilds this file" in out
    assert "rows.parquet is unreadable" in out and "sets it aside and recomputes it" in out
    assert "fake-broken" in out and "to retrain it" in out
    assert sorted(p.name for p in results.rglob("*")) == before  # nothing changed


def test_reconstruct_uses_the_saved_threshold_and_says_when_energies_differ(tmp_path, capsys, fake_setup):
    from benchmark.runner import ModelSpec

    bench = cli._benchmark(cli.build_parser().parse_args(["run", "--method", "fake", "--case", "test",
                                                         "--preset", "smoke", "--results", str(tmp_path / "res")]))
    threshold = bench.thresholds.validation(ModelSpec("fake"))  # saved with the FakeDataset's energies 1, 3 keV
    assert _reconstruct(tmp_path, _stack(tmp_path, np.full((2, 4, 4), 0.1))) == 0
    assert f"threshold {threshold:.2f}: saved validation threshold" in capsys.readouterr().out
    np.savez(tmp_path / "other.npz", bse=np.full((2, 4, 4), 0.1, np.float32), energies_keV=np.array([1.0, 2.0]))
    assert _reconstruct(tmp_path, tmp_path / "other.npz") == 0
    assert "chosen on stacks of other energies (1-3 keV, 2 energies)" in capsys.readouterr().out


def test_reconstruct_of_another_lateral_size_is_refused_or_announced(tmp_path, capsys, fake_setup):
    class Learned(FakeMethod):
        requires_training = True

    stack = tmp_path / "wide.npz"
    np.savez(stack, bse=np.full((2, 20, 21), 0.1, np.float32), energies_keV=np.array([1.0, 3.0]))
    from benchmark.runner import ModelSpec

    with pytest.raises(BenchmarkError, match="trained on 20 x 20 images; the stack is 20 x 21"):
        reconstruct.check_lateral_size(Learned(), ModelSpec("fake").tag(), (20, 21))  # old models: the paper scene's size
    assert _reconstruct(tmp_path, stack) == 0  # a classical method: reconstructed on purpose, and said so
    assert "reconstructs the 20 x 21 stack as given" in capsys.readouterr().err
    assert np.load(tmp_path / "volume.npy").shape == (20, 20, 21)


# --------------------------------------------------------------------------- issue 23: help agrees with the code
def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_names_every_subcommand_once(capsys):
    text = _help(capsys)
    commands = [*cli.command_functions(), *cli.FORWARDED_COMMANDS]
    assert sorted(cli.COMMANDS) == sorted(commands)
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(sub.choices) == sorted(commands)
    for name in commands:
        assert re.search(rf"^    {re.escape(name)}\b", text, re.MULTILINE), name
    flat = " ".join(text.split())
    assert "design-study" in flat and "show" in flat
    assert not re.search(r",\s*$", flat.split("positional arguments")[0])  # the description ends cleanly
    for line in text.splitlines():  # no doubled words ("train train") in any help text
        words = line.split()
        if words and words[0] in commands:
            words = words[1:]  # the command column itself
        assert not re.search(r"\b(\w+) \1\b", " ".join(words)), line


def test_run_help_lists_every_case_from_the_registry(capsys):
    from benchmark.cases import CUSTOM_CASE_PATTERN, named_cases
    from benchmark.presets import get_preset
    from datasets.presets import get_preset as get_dataset_preset

    flat = " ".join(_help(capsys, "run").split())
    cases = named_cases(get_dataset_preset(get_preset("quick").dataset_preset).cases)
    assert {"nanocube", "nanowire", "test", "ablation", "nebula", "dose"} <= set(cases)
    for case in [*cases, CUSTOM_CASE_PATTERN]:
        assert re.search(rf"(^|[ ,]){re.escape(case)}[ ,]", flat), case
    assert "--read-dose N with --case dose: run only the dose level N e-/pixel" in flat
    from benchmark.runner import DEFAULT_THRESHOLD_RULE
    from methods.binarize import THRESHOLD_RULES

    assert cli.DEFAULT_THRESHOLD_RULE == DEFAULT_THRESHOLD_RULE
    assert f"{', '.join(THRESHOLD_RULES)} (default {DEFAULT_THRESHOLD_RULE})" in flat


def test_design_study_help_shows_the_default_designs(capsys):
    from benchmark.design_study import DEFAULT_DESIGNS

    assert ",".join(DEFAULT_DESIGNS) in " ".join(_help(capsys, "design-study").split())


def test_list_shows_every_registered_case_and_method(capsys, monkeypatch, fake_setup):
    """The cases of ``list`` come from ``benchmark.cases.named_cases``; methods from the registry."""
    from benchmark.cases import CUSTOM_CASE_PATTERN, named_cases
    from benchmark.runner import method_names
    from datasets.presets import get_preset as get_dataset_preset

    fake_methods = {"methods": [{"method": name, "requires_training": False, "configs": [], "parameters": {}}
                                for name in method_names()], "network_configs": []}
    monkeypatch.setattr(listing, "method_listing", lambda use_cache=True: fake_methods)
    for preset in ("smoke", "quick", "standard", "paper"):
        assert cli.main(["list", "--json", "--preset", preset]) == 0
        shown = [c["case"] for c in json.loads(capsys.readouterr().out)["cases"]]
        from benchmark.presets import get_preset

        stored = get_dataset_preset(get_preset(preset).dataset_preset).cases
        assert shown == [*named_cases(stored), CUSTOM_CASE_PATTERN]
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    for case in ("dose", "nebula", "ablation"):
        assert re.search(rf"^  {re.escape(case)} ", text, re.MULTILINE), case
    assert re.search(r"^  dose .*one run per dose \(--read-dose N picks one\)", text, re.MULTILINE)
    assert "dose:" not in text
    assert re.search(r"^  fake \(classical\)", text, re.MULTILINE)


def test_list_reads_the_cache_without_importing_torch(tmp_path):
    """A cached method listing (keyed by the methods' source hash) is shown without torch."""
    import os

    from methods.base import REGISTRY

    cached = {"methods": [{"method": "cachedmethod", "requires_training": True, "configs": ["c1"],
                           "parameters": {"depth": {"default": 20, "retrain": True, "doc": "layers"}}}],
              "network_configs": [{"method": "cachedmethod", "config": "c1", "parameters": 7, "macs": 2e9}]}
    path = tmp_path / "bse-bench" / f"list-{listing.CACHE_FORMAT}-{listing.method_sources_hash(REGISTRY)}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(cached))
    code = ("import sys; from benchmark import cli; assert cli.main(['list']) == 0; "
            "print('torch imported:', 'torch' in sys.modules)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cachedmethod (learned)" in result.stdout and "torch imported: False" in result.stdout
    assert re.search(r"cachedmethod +c1 +7 +2.000", result.stdout)


def test_method_sources_hash_changes_with_the_registry(monkeypatch):
    from methods.base import REGISTRY

    before = listing.method_sources_hash(dict(REGISTRY))
    assert listing.method_sources_hash(dict(REGISTRY)) == before
    monkeypatch.setitem(REGISTRY, "fake", f"{FakeMethod.__module__}:FakeMethod")
    assert listing.method_sources_hash(dict(REGISTRY)) != before

def test_threads_do_not_split_the_cache_and_doubled_results_are_refused_then_fixed(tmp_path, capsys, fake_setup):
    """Issue 23: the README's `run` with and without --threads is one cached run and one row set;
    a results.parquet that counts a result twice (old code) is refused by doctor and the report
    with the command that removes the extra rows, and that command fixes it."""
    import pandas as pd
    import torch

    from reports.results import load_inputs

    argv = ["run", "--method", "fake", "--case", "test", "--preset", "smoke", "--results", str(tmp_path),
            "--threshold-rule", "fixed-0.5"]
    before = torch.get_num_threads()
    try:
        assert cli.main([*argv, "--threads", "1"]) == 0
        calls = FakeMethod.calls
        capsys.readouterr()
        assert cli.main([*argv, "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    captured = capsys.readouterr()
    assert FakeMethod.calls == calls and "cached: fake on test" in captured.err
    summary = captured.out.strip().splitlines()[-3]  # the per-run line: n counts each sample once
    assert summary.split()[-2] == "2", captured.out
    results_path = tmp_path / "results.parquet"
    rows = pd.read_parquet(results_path)
    assert len(rows) == 2 and len(list((tmp_path / "runs").iterdir())) == 1

    stray = rows.assign(run_key="f" * 16, device="cpu (Some CPU, 2 threads)")  # what the old code kept
    pd.concat([rows, stray], ignore_index=True).to_parquet(results_path)
    fix = f"python -m benchmark doctor --results {tmp_path} --fix"
    assert cli.main(["doctor", "--results", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "counts 1 result set(s) more than once" in out
    assert re.search("case test, read_electrons_per_pixel 2, acquisition ideal, seed 0", out)  # schema.RUN_IDENTITY
    assert "f" * 16 in out and fix in out
    assert cli.main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "results.parquet in" in err and "counts 1 result set(s) more than once" in err and fix in err
    with pytest.raises(ValueError, match="more than once"):
        load_inputs(tmp_path)

    assert cli.main([*fix.split()[3:], "--json"]) == 1  # `doctor --results DIR --fix`; no dataset here
    captured = capsys.readouterr()
    assert "rebuilt" in captured.err and "2 rows (was 4) from 1 runs" in captured.err
    problems = [f["item"] for f in json.loads(captured.out) if not f["ok"]]
    assert problems == [str(tmp_path / "data")]  # the fake dataset has no folder; results.parquet is fine
    assert len(pd.read_parquet(results_path)) == 2
    assert len(load_inputs(tmp_path).rows) == 2
