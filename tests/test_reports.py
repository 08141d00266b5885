"""Report layer: tables (best in bold, paper columns labelled), figures, partial results."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reports
from datasets.stats import bootstrap_mean_interval
from reports import build_report, figures, paper_tables, table_base, tables, volume_figures
from reports.html import runs_by_case
from reports.results import add_labels, case_groups, load_inputs, method_label, parse_depth_iou
from reports.summary import nanowire_remarks, summary_remarks

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full_results(synthetic_results, tmp_path_factory):
    return synthetic_results(tmp_path_factory.mktemp("results") / "full")


@pytest.fixture(scope="module")
def full_inputs(full_results):
    return load_inputs(full_results)


def best_cells(html: str) -> list[tuple[int, int]]:
    """(row, col) of the cells the Styler marked with the CSS class ``best``."""
    return [(int(r), int(c)) for r, c in re.findall(r'class="data row(\d+) col(\d+) best"', html)]


def test_best_mask_marks_column_best_with_ties_and_direction():
    frame = pd.DataFrame({"iou": [0.5, 0.9, 0.9], "mre": [0.1, 0.3, np.nan],
                          "empty": [np.nan] * 3})
    best = table_base.best_mask(frame, {"iou": "max", "mre": "min", "empty": "max"})
    assert best["iou"].tolist() == [False, True, True]
    assert best["mre"].tolist() == [True, False, False]
    assert not best["empty"].any()
    with pytest.raises(ValueError, match="'max' or 'min'"):
        table_base.best_mask(frame, {"iou": "largest"})


def test_nanocube_table_puts_paper_beside_ours_and_bolds_best(full_inputs):
    table = paper_tables.per_sample_table(full_inputs.rows, "nanocube")
    frame = table.frame
    # our MED-SEM used a fixed threshold: the paper's oracle-threshold MED-SEM gets its own row
    assert frame.index.tolist() == ["MED-SEM", "3D U-Net (tiny)", "BSE-VoxNets (tiny)",
                                    "MED-SEM (oracle threshold)"]
    assert frame.columns.get_level_values("source").unique().tolist() == ["ours", "paper"]
    assert np.isnan(frame.loc["MED-SEM", ("Position 1", "paper")])
    assert frame.loc["MED-SEM (oracle threshold)", ("Position 1", "paper")] == pytest.approx(0.0595)
    assert np.isnan(frame.loc["MED-SEM (oracle threshold)", ("Position 1", "ours")])
    assert frame.loc["3D U-Net (tiny)", ("Position 4", "paper")] == pytest.approx(0.465)
    # ours = mean IoU of the rows
    rows = full_inputs.rows
    expected = rows[(rows["case"] == "nanocube") & (rows["method"] == "medsem")
                    & (rows["sample"] == "position2")]["iou"].mean()
    assert frame.loc["MED-SEM", ("Position 2", "ours")] == pytest.approx(expected)
    # the bold cells are exactly the column maxima
    column = list(frame.columns).index(("Position 1", "ours"))
    winner = frame.index.get_loc(frame[("Position 1", "ours")].idxmax())
    assert (winner, column) in best_cells(table.html)
    assert len(best_cells(table.html)) == int(table.best.to_numpy().sum())
    assert "paper" in table.html and "Table 3" in table.title


def test_nanowire_table_matches_paper_table4_and_adds_methods_not_run(full_inputs):
    only_medsem = full_inputs.rows[full_inputs.rows["method"] == "medsem"]
    frame = paper_tables.per_sample_table(only_medsem, "nanowire").frame
    assert frame.index.tolist() == ["MED-SEM", "MED-SEM (oracle threshold)", "3D U-Net", "BSE-VoxNets"]
    paper = [frame.loc["BSE-VoxNets", (f"r = {r} nm", "paper")] for r in (2, 4, 6, 8, 10)]
    assert paper == pytest.approx([0.920, 0.984, 0.974, 0.995, 0.918])
    assert frame.loc["BSE-VoxNets", ("Mean", "paper")] == pytest.approx(np.mean(paper))
    assert np.isnan(frame.loc["BSE-VoxNets", ("r = 2 nm", "ours")])  # not run


def test_ablation_table_lists_paper_variants_with_mre(full_inputs):
    table = paper_tables.ablation_table(full_inputs.rows)
    frame = table.frame
    assert frame.index.tolist() == ["full", "no-sope", "no-s2mlp", "no-convffn"]
    assert frame[("MRE (%)", "paper")].tolist() == pytest.approx([8.5, 9.3, 38.6, 14.8])
    assert frame.loc["no-s2mlp", ("Modules", "S2-MLPv2")] == "✗"
    ours = full_inputs.rows.query("case == 'ablation' and variant == 'no-sope'")["mre"].mean()
    assert frame.loc["no-sope", ("MRE (%)", "ours")] == pytest.approx(100 * ours)
    assert table.best.loc["full", ("MRE (%)", "paper")]  # the paper's lowest MRE is bold


def test_config_table_compares_networks_with_paper_table2(full_inputs):
    table = paper_tables.config_table(full_inputs.rows)
    frame = table.frame
    assert "MED-SEM" not in frame.index
    assert {"3D U-Net (tiny)", "BSE-VoxNets (tiny)", "BSE-VoxNets (moderate)"} <= set(frame.index)
    assert frame.loc["BSE-VoxNets (moderate)", ("Test mIoU", "paper")] == pytest.approx(0.953)
    assert frame.loc["BSE-VoxNets (lite)", ("Parameters", "paper")] == pytest.approx(16e6)
    assert frame.loc["BSE-VoxNets (medium)", ("MACs / FLOPs per volume", "paper (FLOPs)")] == 5e9
    assert table.best.loc["BSE-VoxNets (moderate)", ("Test mIoU", "paper")]
    assert "16M" in table.html and "paper (FLOPs)" in table.html


def test_miou_table_uses_saved_interval_else_computes_one(full_inputs):
    rows = full_inputs.rows
    saved = tables.miou_table(rows, full_inputs.summaries).frame
    mean = saved.loc["MED-SEM", "mIoU"]
    assert saved.loc["MED-SEM", "95% CI low"] == pytest.approx(mean - 0.01)  # summary.json's
    assert saved.loc["MED-SEM", "interval from"] == "summary.json"
    computed = tables.miou_table(rows).frame
    test_iou = rows.query("case == 'test' and method == 'medsem'")["iou"]
    assert computed.loc["MED-SEM", "mIoU"] == pytest.approx(test_iou.mean())
    assert computed.loc["MED-SEM", "95% CI low":"95% CI high"].tolist() == pytest.approx(
        list(bootstrap_mean_interval(test_iou).as_tuple()[1:3]))
    assert computed.loc["MED-SEM", "interval from"] == "rows (here)"


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean():
    values = np.linspace(0.5, 1.0, 20)
    mean, low, high, n = bootstrap_mean_interval(values).as_tuple()
    assert (mean, low, high, n) == bootstrap_mean_interval(values).as_tuple()
    assert low < mean < high and n == 20
    assert np.isnan(bootstrap_mean_interval([0.7]).low)
    assert bootstrap_mean_interval([np.nan]).n == 0


def test_one_bootstrap_for_harness_and_report():
    """The harness's and the report's intervals are the same function's (datasets.stats)."""
    from benchmark import metrics
    from reports import summary

    assert metrics.bootstrap_mean_interval is bootstrap_mean_interval
    assert summary.paired_difference_interval is metrics.paired_difference_interval
    for source in Path(reports.__file__).parent.glob("*.py"):  # no second bootstrap in the report
        text = source.read_text()
        assert "default_rng" not in text and "def bootstrap" not in text, source.name


def test_labels_and_per_depth_parsing():
    assert method_label("bsevox", "lite", "no-sope") == "BSE-VoxNets (lite, no-sope)"
    assert method_label("medsem", None, "full") == "MED-SEM"
    rows = pd.DataFrame({"method": ["medsem"] * 2, "config": [None] * 2,
                         "variant": ["full"] * 2, "threshold_rule": ["oracle", "validation"]})
    assert add_labels(rows)["label"].tolist() == ["MED-SEM (oracle threshold)",
                                                  "MED-SEM (validation threshold)"]
    depth = parse_depth_iou(json.dumps([1.0, float("nan"), 0.5]))
    assert depth[0] == 1.0 and np.isnan(depth[1]) and depth[2] == 0.5


def test_nanowire_remark_names_the_failing_radii():
    rows = add_labels(pd.DataFrame({
        "method": "medsem", "config": None, "variant": "full", "threshold_rule": "fixed-0.5",
        "case": "nanowire", "sample": [f"radius{r}nm" for r in (2, 4, 6, 8, 10)],
        "iou": [0.1, 0.3, 0.6, 0.7, 0.9],
    }))
    (remark,) = nanowire_remarks(rows)
    assert remark.startswith("MED-SEM fails below 6 nm") and "2 nm (0.100)" in remark


def test_voxel_faces_counts_exposed_faces():
    one = np.zeros((3, 3, 3), bool)
    one[1, 1, 1] = True
    quads, normals = volume_figures.voxel_faces(one)
    assert quads.shape == (6, 4, 3) and normals.shape == (6, 3)
    two = one.copy()
    two[1, 1, 2] = True  # neighbour along x hides one face of each
    assert len(volume_figures.voxel_faces(two)[0]) == 10
    assert len(volume_figures.voxel_faces(np.zeros((2, 2, 2)))[0]) == 0


def test_figure_functions_return_png(full_inputs):
    rows = full_inputs.rows
    by_case = runs_by_case(full_inputs)
    paper = paper_tables.load_paper_results()
    run = by_case["nanocube"][0]
    pngs = [
        volume_figures.render_reconstructions(by_case["nanocube"], max_samples=2),
        volume_figures.render_errors(by_case["nanocube"], max_samples=2),
        volume_figures.error_depth_plot({"nanocube": by_case["nanocube"]}),
        figures.iou_by_sample_plot(rows, "nanowire", paper["table4_nanowire"]),
        figures.per_depth_iou_plot(rows, ["nanocube"]),
        figures.training_curves_plot(full_inputs.histories),
        figures.timing_plot(rows),
        volume_figures.bse_strip(run.bse[0], run.energies_keV, "strip"),
    ]
    for png in pngs:
        assert png.startswith(PNG_SIGNATURE) and len(png) > 2000
    with pytest.raises(ValueError, match="20 BSE images but 3 energies"):
        volume_figures.bse_strip(run.bse[0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least one run"):
        volume_figures.render_reconstructions([])


def test_report_from_partial_results_says_what_is_missing(synthetic_results, tmp_path):
    root = synthetic_results(tmp_path / "partial", methods=("medsem",), cases=("nanowire",),
                             histories=False, dataset=False)
    path = build_report(root)
    assert path == root / "report.html"
    html = path.read_text()
    assert "Methods not run: 3D U-Net, BSE-VoxNets." in html
    assert "no models/*/history.csv" in html and "data/dataset.json is missing" in html
    assert 'data-table="table4"' in html and 'data-table="table3"' in html  # paper's values
    assert "MED-SEM keeps IoU" in html or "MED-SEM fails below" in html
    # IoU per case, 3D render, error view, error vs depth, IoU vs radius, per-depth IoU, timing,
    # BSE strip
    assert html.count("<img ") == 8
    assert not re.search(r"""(src|href)=["']https?:""", html)  # self-contained


def test_report_from_empty_or_corrupt_results(tmp_path):
    (tmp_path / "runs" / "broken").mkdir(parents=True)
    (tmp_path / "runs" / "broken" / "volumes.npz").write_bytes(b"not a zip file")
    (tmp_path / "results.parquet").write_bytes(b"not parquet")
    out = build_report(tmp_path, out=tmp_path / "sub" / "r.html")
    html = out.read_text()
    assert "results.parquet is unreadable" in html
    assert "runs/broken/volumes.npz is unreadable" in html
    assert "No result rows were found" in html
    assert remarks_of(tmp_path)[0].startswith("No result rows")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "nowhere")


def remarks_of(results_dir) -> list[str]:
    return summary_remarks(load_inputs(results_dir))


def test_cli_reports_missing_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "reports", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_reports_import_only_the_row_schema_of_benchmark():
    """Layering: reports sits above benchmark and uses only its result-row schema and the scaling
    study's analysis (pure functions of rows; AST of every module), never the harness."""
    package = Path(reports.__file__).parent
    imported = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert "reports.results" in imported
    assert {name for name in imported if name.split(".")[0] == "benchmark"} == {"benchmark.schema",
                                                                                 "benchmark.scaling_fit"}


def test_nebula_table_puts_our_simulator_beside_nebulas_and_the_drop():
    import pandas as pd

    from reports.paper_tables import nebula_table

    rows = []
    for method, ours, theirs in (("unet3d", 0.8, 0.5), ("bsevox", 0.7, 0.6)):
        for case, samples in (("nanocube", ["position1", "position2"]), ("nanowire", ["radius2nm", "radius10nm"])):
            for s in samples:
                rows.append({"method": method, "config": "tiny", "variant": "full", "label": method, "case": case,
                             "sample": s, "iou": ours})
                rows.append({"method": method, "config": "tiny", "variant": "full", "label": method, "case": "nebula",
                             "sample": s, "iou": theirs})
    table = nebula_table(pd.DataFrame(rows))
    assert table.frame.loc["unet3d", ("all 9", "drop")] == pytest.approx(0.3)
    assert table.frame.loc["bsevox", ("nanowire", "Nebula")] == pytest.approx(0.6)
    assert table.best.loc["bsevox", ("all 9", "Nebula")] and not table.best.loc["bsevox", ("all 9", "ours")]
    assert 'data-table="nebula"' in table.html


def test_strata_are_the_cu_volume_and_the_depth_of_its_top():
    from reports.tables import sample_strata

    labels = np.zeros((3, 20, 4, 4), np.uint8)
    labels[0, 7:9, :2, :2] = 1  # 8 voxels, top 7 nm below the surface
    labels[1, 0, 0, 0] = 1  # 1 voxel at the surface
    strata = sample_strata(labels)
    assert strata["cu_volume_nm3"].tolist() == [8.0, 1.0, 0.0]
    assert strata["cu_top_nm"].tolist()[:2] == [7.0, 0.0] and np.isnan(strata["cu_top_nm"][2])


def test_tables_show_the_first_seed_and_the_seed_table_all():
    from reports.results import first_seed_rows
    from reports.tables import seed_table

    base = {"method": "unet3d", "config": "small", "variant": "full", "case": "test", "label": "U",
            "class_mean_iou": 0.8}
    rows = pd.DataFrame([{**base, "sample": s, "seed": seed, "iou": iou}
                         for seed, iou in ((0, 0.6), (1, 0.7), (2, 0.8)) for s in ("a", "b")]
                        + [{**base, "method": "medsem", "label": "M", "sample": "a", "seed": 0, "iou": 0.5}])
    first = first_seed_rows(rows)
    assert set(first["seed"]) == {0} and len(first) == 3
    table = seed_table(rows).frame
    assert list(table.index) == ["U"]  # one seed only: not in the seed table
    assert table.loc["U", "mean mIoU"] == pytest.approx(0.7) and table.loc["U", "sd"] == pytest.approx(0.1)
    assert (table.loc["U", "min"], table.loc["U", "max"]) == (pytest.approx(0.6), pytest.approx(0.8))


def test_case_repeats_are_averaged_in_the_case_tables_and_spread_in_their_own():
    from reports.paper_tables import per_sample_table
    from reports.results import with_repeats
    from reports.tables import repeat_table

    base = {"method": "unet3d", "config": "small", "variant": "full", "case": "nanocube", "label": "U", "seed": 0,
            "threshold_rule": "validation"}
    rows = pd.DataFrame([{**base, "sample": sid, "iou": iou}
                         for sid, iou in (("position1", 0.9), ("position1@r1", 0.8), ("position1@r2", 0.7),
                                          ("position4", 0.4))])
    rows = with_repeats(rows)
    assert rows["sample"].tolist() == ["position1"] * 3 + ["position4"]
    assert rows["repeat"].tolist() == [0, 1, 2, 0]
    table = per_sample_table(rows, "nanocube").frame
    assert table.loc["U", ("Position 1", "ours")] == pytest.approx(0.8)  # mean over the 3 repeats
    spread = repeat_table(rows).frame
    assert list(spread.columns) == ["nanocube: Position 1"]  # position 4 has one simulation only
    assert spread.loc["U", "nanocube: Position 1"] == "0.800 ± 0.100"


def dose_rows(ious: dict[int, float], label: str = "U") -> pd.DataFrame:
    """Dose-study rows (case ``dose``) of one sample read at each dose of ``ious``."""
    return pd.DataFrame([{"method": "unet3d", "config": "tiny", "variant": "full", "label": label,
                          "case": "dose", "sample": "a", "iou": v,
                          "read_electrons_per_pixel": d, "simulated_electrons_per_pixel": 1000}
                         for d, v in ious.items()])


def test_the_dose_remarks_say_how_many_electrons_each_method_needs():
    from reports.summary import dose_remarks

    remarks = dose_remarks(dose_rows({100: 0.695, 10: 0.50, 1000: 0.70, 50: 0.685}))
    assert "U 0.500 -> 0.700" in remarks[0] and "at 10 -> 1000 e-/pixel" in remarks[0]
    assert "U from 100 e-/pixel (best 0.700)" in remarks[1]  # 50 is more than 0.01 short, 100 within it
    assert "more electrons do not help" in remarks[2]


def test_the_dose_study_is_grouped_by_its_read_dose_lowest_first():
    rows = pd.concat([dose_rows({300: 0.6, 25: 0.4, 1000: 0.7}),
                      dose_rows({25: 0.5}).assign(case="test", read_electrons_per_pixel=60)])
    groups = case_groups(rows, ["test", "dose"])
    assert [title for title, _ in groups] == ["test", "dose 25 e-/pixel", "dose 300 e-/pixel",
                                             "dose 1000 e-/pixel"]
    assert groups[2][1]["iou"].tolist() == [0.6]
    assert case_groups(rows, ["nanocube"]) == []


def test_the_dose_figure_reads_the_dose_column():
    rows = pd.concat([dose_rows({10: 0.3, 100: 0.5, 1000: 0.6}).assign(sample=s) for s in "abc"])
    assert figures.iou_vs_dose_plot(rows).startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match="no rows of the dose study"):
        figures.iou_vs_dose_plot(rows.assign(case="test"))
