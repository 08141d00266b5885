"""The quick dataset's design study: designs parsed, equal simulation budgets, one common
evaluation set no design trains on, a table per finished design, reuse on rerun."""

from __future__ import annotations

import pytest

from benchmark.design_study import markdown, parse_design, run_design_study
from benchmark.errors import UsageError


def test_designs_are_geometries_times_electrons():
    assert parse_design("500x120") == (500, 120, True)
    assert parse_design("500x120-once") == (500, 120, False)
    with pytest.raises(UsageError, match="GEOMETRIESxELECTRONS"):
        parse_design("500-120")


@pytest.mark.slow
def test_a_tiny_study_trains_each_design_and_scores_one_common_set(tmp_path):
    root = tmp_path / "study"
    kwargs = dict(read_electrons_per_pixel=2, train_preset="smoke", progress=False, log=lambda m: None,
                  reference_geometries=20, evaluation_geometries=8)
    table = run_design_study(root, ["20x4", "20x4-once"], **kwargs)
    assert list(table["design"]) == ["20x4", "20x4-once"]
    assert list(table["fresh_noise"]) == [True, False]  # 4 e-/px read at 2: fresh draws unless -once
    assert (table["eval_samples"] == 8).all() and table["eval_miou"].between(0, 1).all()
    assert (root / "design_study.csv").is_file() and "20 x 4" in (root / "design_study.md").read_text()
    assert not (root / "20x4-once" / "data").exists()  # the -once design trains on its base's data
    with pytest.raises(UsageError, match="below the dose"):
        run_design_study(root, ["20x1"], **kwargs)
    again = run_design_study(root, ["20x4"], **kwargs)  # finished designs are reused
    assert again["eval_miou"].iloc[0] == pytest.approx(table["eval_miou"].iloc[0])
    assert "| 20 x 4 | 2 e-/px | yes |" in markdown(again)
