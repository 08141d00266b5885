"""Issue 13.5: every command line answers bad input with one line and a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_builder

from datasets import builder
from datasets.cli_errors import error_message, run_cli
from methods.__main__ import main as methods_main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "smoke"
    return builder.build_dataset(out, preset="smoke", workers=1, progress=False, simulator=test_builder)


def _train(*argv):
    return methods_main(["train", "--method", "bsevox", "--config", "tiny", "--preset", "smoke", "--quiet", *argv])


@pytest.mark.parametrize("argv, code, message", [
    (["--data", "no/such/dir"], 2, "--data no/such/dir: no such dataset directory"),
    (["--device", "cuda"], 2, "requested but no CUDA GPU is available here"),
    (["--device", "foo"], 2, "unknown device 'foo'"),
    (["--epochs", "0"], 2, "--epochs must be a positive integer, got 0"),
    (["--batch-size", "0"], 2, "--batch-size must be a positive integer, got 0"),
])
def test_methods_train_rejects_bad_values_in_one_line(smoke_data, capsys, argv, code, message):
    if argv[0] == "--device" and argv[1] == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    full = ["--data", str(smoke_data), *argv] if argv[0] != "--data" else argv
    assert _train(*full) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_methods_train_unknown_config_lists_the_known_ones(smoke_data, capsys):
    assert methods_main(["train", "--method", "bsevox", "--config", "huge", "--data", str(smoke_data)]) == 2
    assert "unknown bsevox config 'huge'; known: tiny, s1m, s5m, lite" in capsys.readouterr().err


def test_resume_with_other_settings_and_corrupt_checkpoint_are_one_line(smoke_data, tmp_path, capsys):
    out = tmp_path / "model"
    assert _train("--data", str(smoke_data), "--epochs", "1", "--out", str(out)) == 0
    capsys.readouterr()
    assert _train("--data", str(smoke_data), "--epochs", "1", "--out", str(out)) == 2  # neither --resume nor --overwrite
    assert "--resume to continue it" in capsys.readouterr().err
    assert _train("--data", str(smoke_data), "--epochs", "2", "--lr", "0.5", "--out", str(out), "--resume") == 1
    err = capsys.readouterr().err
    assert "was made by a different run" in err and "Traceback" not in err
    (out / "latest.pt").write_bytes(b"\x80\x02garbage that is no checkpoint")
    assert _train("--data", str(smoke_data), "--epochs", "1", "--out", str(out), "--resume") == 1
    err = capsys.readouterr().err
    assert f"corrupt checkpoint {out / 'latest.pt'}" in err
    assert "weights_only=False" not in err and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    def broken(_):
        raise TypeError("a bug")

    assert run_cli(broken, None) == 1
    assert capsys.readouterr().err == "error: a bug\n"
    assert run_cli(broken, None, debug=True) == 1
    assert "Traceback" in capsys.readouterr().err


def test_error_message_is_one_line_and_names_missing_files():
    assert error_message(KeyError("unknown 'x'")) == "unknown 'x'"
    assert error_message(ValueError("first line\nsecond line")) == "first line"
    err = FileNotFoundError(2, "No such file or directory", "/nope.npz")
    assert "/nope.npz" in error_message(err)


def test_datasets_simulate_to_a_directory_fails_before_simulating(tmp_path):
    geometry = tmp_path / "g.npy"
    from datasets.scene import paper_block

    np.save(geometry, paper_block())
    (tmp_path / "out.npz").mkdir()
    done = subprocess.run([sys.executable, "-m", "datasets", "simulate", str(geometry), "--out",
                           str(tmp_path / "out.npz"), "--electrons-per-pixel", "100000"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "is a directory" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("**/*.tmp*"))


@pytest.mark.parametrize("lams, message", [("abc", "comma-separated numbers"), ("0.5,1.5", "must lie in (0, 1)")])
def test_grid_search_rejects_bad_lambdas_in_one_line(smoke_data, tmp_path, capsys, lams, message):
    argv = ["grid-search", "--method", "bsevox", "--config", "tiny", "--preset", "smoke", "--data", str(smoke_data),
            "--lams", lams, "--out", str(tmp_path / "grid"), "--quiet"]
    assert methods_main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "grid").exists()  # nothing trained
