"""Issue 23 items 5 and 6: a report a person can read.

One colour per method in every figure, readable panel grids, the loss switch marked, paper names
in legends, a short top with the rest collapsed, the paper's MED-SEM values only beside
oracle-threshold rows, a title that names the preset, no '[nan, nan]' for one sample, dose-study runs
in numeric order.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpl_image

from reports import build_report, figures, paper_tables, plotting, style, volume_figures
from reports.html import history_label, report_title
from reports.results import add_labels, load_inputs
from reports.summary import paired_remarks


def png_pixels(png: bytes) -> np.ndarray:
    """(H, W, 3) uint8 pixels of PNG bytes."""
    rgb = mpl_image.imread(io.BytesIO(png), format="png")[..., :3]
    return np.rint(rgb * 255).astype(np.uint8)


def has_color(pixels: np.ndarray, color) -> bool:
    target = np.rint(np.asarray(color) * 255).astype(np.uint8)
    return bool((np.abs(pixels.astype(int) - target).max(axis=-1) <= 1).any())


def scored_rows(entries) -> pd.DataFrame:
    """Result rows from (method, config, case, sample, iou, threshold_rule, seconds) tuples."""
    frame = pd.DataFrame(entries, columns=["method", "config", "case", "sample", "iou",
                                           "threshold_rule", "seconds_per_volume"])
    return add_labels(frame.assign(variant="full", device="cpu", per_depth_iou=None))


def test_a_method_has_one_colour_whatever_the_figure_and_the_order():
    assert style.method_color("3D U-Net (tiny)") == style.method_color("3D U-Net (lite)")  # config: same
    assert style.method_color("3D U-Net") != style.method_color("BSE-VoxNets")
    oracle, validation = (style.method_color("MED-SEM (oracle threshold)"),
                          style.method_color("MED-SEM (validation threshold)"))
    assert oracle != validation and validation == style.method_color("MED-SEM")
    variants = {style.method_color(f"BSE-VoxNets (tiny, {v})") for v in ("no-sope", "no-s2mlp", "no-convffn")}
    assert len(variants) == 3 and style.method_color("BSE-VoxNets (tiny)") not in variants
    assert style.method_color("My method (x)") == style.method_color("My method (x)")  # stable pick
    assert list(style.method_palette(["B", "A"]).values()) == [style.method_color("B"), style.method_color("A")]
    assert style.split_label("BSE-VoxNets (tiny, no-sope)") == ("BSE-VoxNets", ["tiny", "no-sope"])


def test_bar_figures_draw_each_method_in_its_palette_colour():
    rows = scored_rows([("unet3d", "tiny", "test", "a", 0.6, "validation", 0.04),
                        ("bsevox", "tiny", "test", "a", 0.8, "validation", 0.06)])
    unet, bsevox = style.method_color("3D U-Net (tiny)"), style.method_color("BSE-VoxNets (tiny)")
    for png in (figures.timing_plot(rows), figures.case_overview_plot(rows, ["test"])):
        pixels = png_pixels(png)
        assert has_color(pixels, unet) and has_color(pixels, bsevox)
    # only the methods of the figure: the palette is keyed by label, not by position
    only_bsevox = png_pixels(figures.timing_plot(rows[rows["method"] == "bsevox"]))
    assert has_color(only_bsevox, bsevox) and not has_color(only_bsevox, unet)


def test_timing_axis_is_linear_so_bar_lengths_compare():
    rows = scored_rows([("unet3d", "tiny", "test", "a", 0.6, "validation", 0.041),
                        ("bsevox", "tiny", "test", "a", 0.8, "validation", 0.062)])
    pixels = png_pixels(figures.timing_plot(rows))
    lengths = [int((np.abs(pixels.astype(int) - np.rint(np.asarray(style.method_color(label)) * 255))
                    .max(axis=-1) <= 1).sum(axis=1).max())
               for label in ("3D U-Net (tiny)", "BSE-VoxNets (tiny)")]
    assert lengths[1] / lengths[0] == pytest.approx(0.062 / 0.041, rel=0.05)  # linear: 1.5, not 1:6


def test_panel_grids_wrap_after_four_panels():
    fig, axes = plotting.panel_grid(6)
    columns = {round(ax.get_position().x0, 3) for ax in axes}
    rows = {round(ax.get_position().y0, 3) for ax in axes}
    assert len(axes) == 6 and len(columns) == 4 and len(rows) == 2
    with pytest.raises(ValueError, match="at least one panel"):
        plotting.panel_grid(0)
    width = mpl_image.imread(io.BytesIO(volume_figures.bse_strip(np.random.default_rng(0).random((10, 8, 8)),
                                                          np.arange(1, 11)))).shape[1]
    assert width <= style.MAX_FIGURE_WIDTH_INCHES * style.DPI


def test_the_loss_switch_is_found_in_the_histories():
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [0.3, 0.2, 2.0, 1.8],
                            "val_miou": [0.5, 0.6, 0.7, 0.7], "loss": ["wbce", "wbce", "lovasz", "lovasz"]})
    assert figures.loss_switch_epochs({"BSE-VoxNets (tiny)": history}) == [2.5]
    assert figures.loss_switch_epochs({"a": history.assign(loss="wbce")}) == []
    assert figures.loss_switch_epochs({"a": history.drop(columns="loss")}) == []
    assert figures.training_curves_plot({"BSE-VoxNets (tiny)": history}).startswith(b"\x89PNG")


def test_training_curves_are_named_like_the_tables(tmp_path):
    model = tmp_path / "models" / "bsevox-tiny-no-sope"
    model.mkdir(parents=True)
    (model / "method.json").write_text(json.dumps(
        {"method": "bsevox", "params": {"config": "tiny", "sope": False, "s2mlp": True, "convffn": True}}))
    assert history_label(tmp_path, "bsevox-tiny-no-sope") == "BSE-VoxNets (tiny, no-sope)"
    assert history_label(tmp_path, "unet3d-tiny") == "3D U-Net (tiny)"  # no method.json: the folder name
    assert history_label(tmp_path, "unknownthing-x") == "unknownthing-x"


def test_paper_values_stand_only_beside_the_papers_threshold_rule():
    rows = scored_rows([("medsem", None, "nanocube", "position1", 0.30, "validation", 0.05),
                        ("medsem", None, "nanocube", "position1", 0.40, "oracle", 0.05),
                        ("bsevox", "tiny", "nanocube", "position1", 0.90, "validation", 0.05)])
    frame = paper_tables.per_sample_table(rows, "nanocube").frame
    column = ("Position 1", "paper")
    assert np.isnan(frame.loc["MED-SEM (validation threshold)", column])
    assert frame.loc["MED-SEM (oracle threshold)", column] == pytest.approx(0.0595)
    assert frame.loc["BSE-VoxNets (tiny)", column] == pytest.approx(0.902)  # no special rule
    # only the validation rule run: the paper's MED-SEM gets a row of its own
    alone = paper_tables.per_sample_table(rows[rows["threshold_rule"] != "oracle"], "nanocube").frame
    assert np.isnan(alone.loc["MED-SEM (validation threshold)", column])
    assert alone.loc["MED-SEM (oracle threshold)", column] == pytest.approx(0.0595)
    assert np.isnan(alone.loc["MED-SEM (oracle threshold)", ("Position 1", "ours")])
    assert paper_tables.paper_label("medsem") == "MED-SEM (oracle threshold)"
    assert paper_tables.paper_label("bsevox") == "BSE-VoxNets"


def test_one_sample_gives_no_nan_interval():
    rows = scored_rows([("unet3d", "tiny", "test", "a", 0.6, "validation", 0.04),
                        ("bsevox", "tiny", "test", "a", 0.8, "validation", 0.06)])
    remarks = paired_remarks(rows.assign(variant="full"))
    assert len(remarks) == 1 and "n=1, no interval" in remarks[0] and "nan" not in remarks[0]
    two = pd.concat([rows, rows.assign(sample="b", iou=rows["iou"] - 0.1)], ignore_index=True)
    assert "[0.200, 0.200]" in paired_remarks(two)[0]


def test_report_top_is_short_and_names_the_preset(synthetic_results, tmp_path):
    results = synthetic_results(tmp_path / "folder-name-not-preset")
    items = [{"stage": "evaluation", "name": f"run {k}", "status": "done", "seconds": 1.0, "note": ""}
             for k in range(60)]
    (results / "main_job.json").write_text(json.dumps(
        {"time_budget_s": None, "seconds": 60.0, "complete": True, "items": items}))
    html = build_report(results).read_text()
    assert "<title>BSE reconstruction benchmark — preset smoke</title>" in html
    assert "folder-name-not-preset</title>" not in html
    verdict, tables_at, what_ran = (html.index('id="verdict"'), html.index('id="tables"'),
                                    html.index("What ran"))
    assert verdict < html.index('data-table="test-miou"') < html.index('id="fig-overview"') < tables_at
    assert tables_at < what_ran  # the stage list and the remarks are at the end ...
    closed = re.findall(r"<details[^>]*>\s*<summary[^>]*>([^<]*)", html)
    assert "What ran " in closed and any(s.startswith("All ") for s in closed)  # ... and collapsed
    assert html.count("<summary") >= 10
    assert "internal" not in html and "bsevox-tiny" not in html.split('id="provenance"')[0]


def test_title_falls_back_to_the_folder_without_a_preset(synthetic_results, tmp_path):
    results = synthetic_results(tmp_path / "named")
    inputs = load_inputs(results)
    assert report_title(inputs) == "BSE reconstruction benchmark — preset smoke"
    inputs.rows = inputs.rows.assign(preset=None)
    assert report_title(inputs) == "BSE reconstruction benchmark — results folder named"


def test_dose_runs_are_listed_by_their_read_dose_in_the_runs_table(synthetic_results, tmp_path):
    results = synthetic_results(tmp_path / "dose", methods=("medsem",), cases=("test",))
    rows = pd.read_parquet(results / "results.parquet")
    doses = pd.concat([rows.assign(case="dose", read_electrons_per_pixel=n, simulated_electrons_per_pixel=1000,
                                   run_key=f"medsem-dose{n}") for n in (100, 25, 1000)], ignore_index=True)
    pd.concat([rows, doses], ignore_index=True).to_parquet(results / "results.parquet")
    html = build_report(results).read_text()
    runs = html[html.index('id="runs"'):]
    positions = [runs.index(f"<td>dose {n} e-/pixel</td>") for n in (25, 100, 1000)]
    assert positions == sorted(positions)
    assert 'id="fig-iou-dose"' in html  # the dose figure, drawn from the read-dose column


def test_the_verdict_compares_the_best_two_on_the_same_samples(tmp_path):
    from reports.results import ReportInputs
    from reports.summary import verdict_remarks

    rows = scored_rows([(m, c, "test", s, iou, "validation", 0.01)
                        for m, c, base in (("medsem", None, 0.3), ("unet3d", "tiny", 0.6), ("bsevox", "tiny", 0.8))
                        for s, iou in (("a", base), ("b", base + 0.1), ("c", base - 0.05))])
    rows = rows.assign(preset="quick", run_key=rows["method"], class_mean_iou=rows["iou"], mre=0.1)
    verdict = verdict_remarks(ReportInputs(results_dir=tmp_path, rows=rows))
    assert verdict[0].startswith("Best on the held-out test split: BSE-VoxNets (tiny)")
    paired = [r for r in verdict if r.startswith("Paired")]
    assert paired == ["Paired on the 3 test samples: BSE-VoxNets (tiny) beats 3D U-Net (tiny) by 0.200 IoU "
                      "[0.200, 0.200], separable."]
    assert any(r.startswith("Preset quick") for r in verdict)


def test_no_figure_is_scaled_down_on_a_1400_px_page(synthetic_results, tmp_path):
    """Figures wider than the page's content (about 1300 px) would be shrunk by the browser and
    their 8 pt (11 px) text with them."""
    from reports.html import build_figures

    drawn = build_figures(load_inputs(synthetic_results(tmp_path / "results")))
    assert len(drawn) >= 12
    for figure in drawn:
        png = base64.b64decode(figure.data_url.split(",", 1)[1])
        width = int.from_bytes(png[16:20], "big")  # the PNG header's width field
        assert 200 < width <= 1300, (figure.key, width)
