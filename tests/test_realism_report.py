"""The report side of the realism study (case ``realism``): its figure, tables, remarks, README
table and its place in the HTML report."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from reports import build_report, figures
from reports.readme import realism_markdown
from reports.realism import ALL_IMAGE_LEVELS, realism_table, robust_differences, robust_table
from reports.results import case_groups
from reports.summary import realism_remarks

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def realism_rows(ious: dict[str, list[float]], label: str = "U", method: str = "unet3d",
                 variant: str = "full") -> pd.DataFrame:
    """Realism rows of one model: per level, the IoU of samples s0, s1, ... in order."""
    return pd.DataFrame([{"method": method, "config": "tiny", "variant": variant, "label": label,
                          "threshold_rule": "fixed-0.5", "case": "realism", "sample": f"s{k}",
                          "acquisition": level, "iou": iou, "read_electrons_per_pixel": 1000}
                         for level, values in ious.items() for k, iou in enumerate(values)])


def two_methods() -> pd.DataFrame:
    """MED-SEM loses little under degradation; 3D U-Net falls below 0.5 at drift-0.5nm."""
    steady = realism_rows({"ideal": [0.80, 0.70], "probe-1nm": [0.78, 0.70], "drift-0.25nm": [0.76, 0.70],
                           "drift-0.5nm": [0.74, 0.70], "drift-1nm": [0.72, 0.70]},
                          label="MED-SEM", method="medsem")
    fragile = realism_rows({"ideal": [0.90, 0.80], "probe-1nm": [0.60, 0.80], "drift-0.25nm": [0.50, 0.60],
                            "drift-0.5nm": [0.40, 0.50], "drift-1nm": [0.20, 0.30]}, label="3D U-Net")
    return pd.concat([steady, fragile], ignore_index=True)


def test_the_realism_figure_is_a_png_and_needs_realism_rows():
    rows = two_methods()
    robust = realism_rows({"ideal": [0.85, 0.8], "drift-1nm": [0.6, 0.5]}, label="3D U-Net (tiny, robust)",
                          variant="robust")
    assert figures.iou_vs_realism_plot(pd.concat([rows, robust])).startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match="no rows of the realism study"):
        figures.iou_vs_realism_plot(rows.assign(case="test"))
    with pytest.raises(ValueError, match="only the ideal level"):
        figures.iou_vs_realism_plot(rows[rows["acquisition"] == "ideal"])


def test_the_realism_table_holds_the_mean_iou_per_level_in_plot_order():
    table = realism_table(two_methods())
    assert list(table.frame.columns) == ["ideal", "probe-1nm", "drift-0.25nm", "drift-0.5nm", "drift-1nm"]
    assert list(table.frame.index) == ["MED-SEM", "3D U-Net"]
    assert table.frame.loc["3D U-Net", "drift-1nm"] == pytest.approx((0.20 + 0.30) / 2)
    assert table.frame.loc["MED-SEM", "probe-1nm"] == pytest.approx((0.78 + 0.70) / 2)
    assert bool(table.best.loc["3D U-Net", "ideal"]) and bool(table.best.loc["MED-SEM", "drift-1nm"])
    assert 'data-table="realism"' in table.html


def test_realism_groups_are_titled_by_level_in_catalogue_order():
    rows = two_methods()
    titles = [title for title, _ in case_groups(rows, ["realism"])]
    assert titles == ["realism: ideal", "realism: probe-1nm", "realism: drift-0.25nm", "realism: drift-0.5nm",
                      "realism: drift-1nm"]


def test_the_remarks_name_the_least_degraded_method_and_where_each_falls_below_half():
    remarks = realism_remarks(two_methods())
    assert "least affected by the acquisition is MED-SEM" in remarks[0]
    # MED-SEM: ideal 0.75, other levels 0.74, 0.73, 0.72, 0.71 -> drop 0.75 - 0.725 = 0.025
    assert "drops by 0.025 from 0.750" in remarks[0] and "3D U-Net 0." in remarks[0]
    fragile = next(r for r in remarks if r.startswith("3D U-Net under"))
    assert "falls below IoU 0.5 at drift-0.5nm (0.450)" in fragile
    assert "stays ≥ 0.5 up to probe-1nm" in fragile
    steady = next(r for r in remarks if r.startswith("MED-SEM under"))
    assert "stays ≥ 0.5 up to probe-1nm, drift-1nm" in steady and "falls below" not in steady
    assert realism_remarks(two_methods().assign(case="test")) == []


def robust_and_full() -> pd.DataFrame:
    """Robust = full + 0.1 on every sample; the robust rows shuffled and with one sample the full
    model never saw (IoU 0.99), which a paired comparison must leave out."""
    base = {"ideal": [0.7, 0.5, 0.6, 0.8], "drift-0.5nm": [0.3, 0.4, 0.2, 0.5], "gain-10pct": [0.6, 0.1, 0.4, 0.3]}
    full = realism_rows(base, label="BSE-VoxNets (tiny)", method="bsevox")
    robust = realism_rows({level: [v + 0.1 for v in values] + [0.99] for level, values in base.items()},
                          label="BSE-VoxNets (tiny, robust)", method="bsevox", variant="robust")
    return pd.concat([full, robust.sample(frac=1.0, random_state=3)], ignore_index=True)


def test_the_robust_difference_is_paired_on_the_same_samples():
    frame = robust_differences(robust_and_full())
    assert list(frame.index.get_level_values("level")) == ["ideal", "drift-0.5nm", "gain-10pct", ALL_IMAGE_LEVELS]
    assert (frame["compared with"] == "BSE-VoxNets (tiny)").all()
    for column in ("robust − full", "95% CI low", "95% CI high"):
        np.testing.assert_allclose(frame[column], 0.1, atol=1e-12)
    assert (frame["samples"] == 4).all()  # the robust-only sample is not paired
    assert 'data-table="realism-robust"' in robust_table(robust_and_full()).html
    remark = realism_remarks(robust_and_full())[-1]
    assert remark.startswith("Trained with the image degradations as augmentation, BSE-VoxNets (tiny, robust) minus")
    assert "+0.100 IoU [+0.100, +0.100] averaged over the 2 image-degradation levels (4 samples)" in remark
    assert "+0.100 IoU [+0.100, +0.100] on ideal data" in remark


def test_the_readme_realism_table_is_short_and_only_with_realism_rows():
    rows = pd.concat([two_methods(), robust_and_full()], ignore_index=True)
    lines = realism_markdown(rows).splitlines()
    assert len(lines) == 2 + 3  # header, separator, one line per ideal-trained method: no robust rows
    assert lines[0] == "| realism: mean IoU, trained on ideal data | ideal | drift-0.5nm | gain-10pct |"
    assert lines[2].startswith("| MED-SEM | 0.750 | **0.720** |")
    assert realism_markdown(rows.assign(case="test")) == ""


LEVELS = ("ideal", "probe-1nm", "drift-0.5nm", "gain-10pct")


def add_realism_runs(results) -> None:
    """Give a synthetic results folder (case test) realism rows and runs: each test run read at
    LEVELS (IoU lowered a little per level), plus a robust 3D U-Net; volumes copied from the test run."""
    rows = pd.read_parquet(results / "results.parquet")
    test = rows[rows["case"] == "test"]
    extra = []
    for variant in ("full", "robust"):
        for k, level in enumerate(LEVELS):
            for run_key, run in test.groupby("run_key"):
                if variant == "robust" and run["method"].iloc[0] != "unet3d":
                    continue
                key = f"{run_key}-realism-{variant}-{level}"
                extra.append(run.assign(case="realism", acquisition=level, variant=variant, run_key=key,
                                        iou=run["iou"] - 0.05 * k))
                shutil.copytree(results / "runs" / run_key, results / "runs" / key)
    pd.concat([rows, *extra], ignore_index=True).to_parquet(results / "results.parquet")


def test_the_report_shows_the_realism_figure_and_tables_but_no_volumes_per_level(synthetic_results, tmp_path):
    results = synthetic_results(tmp_path / "realism", methods=("medsem", "unet3d"), cases=("test",),
                                histories=False)
    add_realism_runs(results)
    html = build_report(results).read_text()
    assert 'id="fig-iou-realism"' in html
    assert 'data-table="realism"' in html and 'data-table="realism-robust"' in html
    assert "3D U-Net (tiny, robust)" in html
    assert 'id="fig-render-test"' in html  # the ordinary cases keep their 3D views ...
    assert "render-realism" not in html and "errors-realism" not in html  # ... the study has none
    assert "<td>realism: drift-0.5nm</td>" in html  # the runs table names the level


def test_a_method_below_half_on_ideal_data_is_not_said_to_fall_below_it_later():
    weak = realism_rows({"ideal": [0.45, 0.45], "probe-1nm": [0.48, 0.50], "drift-1nm": [0.30, 0.40]},
                        label="MED-SEM", method="medsem")
    remark = next(r for r in realism_remarks(weak) if r.startswith("MED-SEM under"))
    assert "already below IoU 0.5 on ideal data (0.450)" in remark and "falls below" not in remark
    assert "lowest level mean 0.350 (drift-1nm)" in remark


def test_one_method_alone_is_not_called_the_least_affected():
    remark = realism_remarks(two_methods().query("label == 'MED-SEM'"))[0]
    assert "MED-SEM's mean IoU drops by 0.025 from 0.750" in remark and "least affected" not in remark
