"""``python -m methods train-bench``: training throughput of step variants, side by side."""

import pytest

from datasets.errors import UnknownNameError
from methods.__main__ import main as methods_main
from methods.train_bench import format_rows, make_case, train_bench


def test_rows_give_rates_ratios_and_utilisation():
    rows = train_bench([("bsevox", "tiny")], ["eager", "batch-x2", "channels-last"], batch_size=4,
                       steps=1, rounds=1, progress=lambda m: None)
    assert [r["variant"] for r in rows] == ["eager", "batch-x2", "channels-last"]
    assert [r["batch_size"] for r in rows] == [4, 8, 4]
    assert rows[0]["ratio_to_eager"] == pytest.approx(1.0)
    for row in rows:
        assert row["samples_per_s"] > 0 and 0 < row["utilisation"] and row["matmul_gflops"] > 0
        # 6 MACs-FLOPs per sample (forward + backward) at the measured rate
        assert row["train_gflops"] == pytest.approx(6 * make_case("bsevox", "tiny", "eager", 1).macs_per_sample
                                                    * row["samples_per_s"] / 1e9)
    assert "channels-last" in format_rows(rows)


def test_a_run_without_eager_compares_configs_without_a_ratio():
    import math

    rows = train_bench([("bsevox", "tiny"), ("unet3d", "tiny")], ["channels-last"], batch_size=2, steps=1,
                       rounds=1, progress=lambda m: None)
    assert [(r["config"], r["variant"]) for r in rows] == [("tiny", "channels-last")] * 2
    assert all(math.isnan(r["ratio_to_eager"]) and r["samples_per_s"] > 0 for r in rows)
    assert "nan" not in format_rows(rows)


def test_unknown_variant_is_named(capsys):
    with pytest.raises(UnknownNameError, match="fp8"):
        make_case("bsevox", "tiny", "fp8", 4)
    assert methods_main(["train-bench", "--configs", "bsevox:tiny", "--variants", "fp8"]) == 2
    assert "fp8" in capsys.readouterr().err
