"""The scaling study's report (reports/scaling.py, scaling_remarks.py, scaling_figures.py,
scaling_page.py): from a study folder's rows whose true learning curves are known, the tables hold
the right numbers, the remarks name the leader and the crossing, the figures draw, and
``python -m reports scaling`` writes scaling.html (or names the folder it cannot read).

The rows are synthetic (no training): IoU(N) = a - b N^-c per model plus a per-sample effect
shared by every model (which pairs them) and independent noise, as in tests/test_scaling_study.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpl_image

from benchmark.scaling_fit import analyse, power_law
from reports import scaling, scaling_figures, scaling_page, scaling_readme, scaling_remarks
from reports.style import method_color

N_VALUES = (125, 250, 500, 1000, 2000, 4000, 8000)
RULE = "steps = clip(800 x (N/1000)^0.5, 400, 4000); epochs = round(steps / batches per epoch)"
#: (network, label, config, size, parameters) -> the true (a, b, c)
TRUTH = {
    ("unet3d", "3D U-Net", "matched", "0.3M", 297_492): (0.80, 2.0, 0.5),
    ("bsevox", "BSE-VoxNets", "tiny", "0.3M", 278_277): (0.90, 4.0, 0.5),  # crosses U-Net at N = 400
    ("unet3d", "3D U-Net", "small", "1.2M", 1_187_000): (0.88, 1.5, 0.5),
    ("bsevox", "BSE-VoxNets", "s1m", "1.2M", 1_240_000): (0.84, 2.0, 0.5),  # below U-Net at every N
}
N_RESAMPLES = 60


def synthetic_rows(truth=TRUTH, n_values=N_VALUES, n_samples=200, seed=1) -> pd.DataFrame:
    """Rows of a study (columns of benchmark.scaling_jobs.ROW_COLUMNS that the report reads)."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 0.03, n_samples)
    records = []
    for (network, label, config, size, parameters), abc in truth.items():
        for n in n_values:
            epochs = max(1, round(min(4000, max(400, 800 * (n / 1000) ** 0.5)) / -(-n // 32)))
            iou = power_law(n, *abc) + effect + rng.normal(0, 0.02, n_samples)
            key = f"{network}-{config}-{n}"
            records += [{"network": network, "label": label, "config": config, "size": size,
                         "parameters": parameters, "n_train": n, "seed": 0, "sample": f"t{i:03d}", "iou": v,
                         "iou_fixed_threshold": v, "threshold": 0.5, "val_miou": 0.5, "epochs": epochs,
                         "epochs_run": epochs, "steps": epochs * -(-n // 32), "step_rule": RULE,
                         "simulated_electrons_per_pixel": 60, "read_electrons_per_pixel": 60,
                         "dataset_hash": "feedbeef" * 8, "job_key": key, "train_seconds": 10.0,
                         "job_seconds": 12.0} for i, v in enumerate(iou)]
    return pd.DataFrame(records)


def write_study(folder, rows: pd.DataFrame, fits: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / "scaling.parquet", index=False)
    if fits:
        study = {"name": "synthetic", "n_values": list(N_VALUES), "sizes": ["0.3M", "1.2M", "5M"]}
        analysis = analyse(rows, n_resamples=N_RESAMPLES)
        (folder / "fits.json").write_text(json.dumps({"study": study, "complete": False, **analysis}))
    return folder


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return write_study(tmp_path_factory.mktemp("scaling"), synthetic_rows())


@pytest.fixture(scope="module")
def study(study_dir):
    return scaling.load_study(study_dir)


def png_pixels(png: bytes) -> np.ndarray:
    return np.rint(mpl_image.imread(io.BytesIO(png), format="png")[..., :3] * 255).astype(int)


def has_color(pixels: np.ndarray, color) -> bool:
    return bool((np.abs(pixels - np.rint(np.asarray(color) * 255)).max(axis=-1) <= 1).any())


# ---------------------------------------------------------------------------- reading a folder
def test_missing_folder_or_rows_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        scaling.load_study(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*holds no scaling.parquet"):
        scaling.load_study(tmp_path)
    pd.DataFrame(columns=list(synthetic_rows(n_values=(125,), n_samples=2).columns)).to_parquet(
        tmp_path / "scaling.parquet")
    with pytest.raises(ValueError, match="no job"):
        scaling.load_study(tmp_path)


def test_fits_are_computed_when_fits_json_is_missing_or_stale(study_dir, study, tmp_path):
    assert study.notes == [] and study.meta["name"] == "synthetic"
    bare = scaling.load_study(write_study(tmp_path / "bare", synthetic_rows(), fits=False), n_resamples=20)
    assert "no readable fits.json" in bare.notes[0] and bare.analysis["n_resamples"] == 20
    assert set(bare.analysis["fits"]) == set(study.analysis["fits"])
    stale = write_study(tmp_path / "stale", synthetic_rows())
    synthetic_rows(n_values=N_VALUES[:4]).to_parquet(stale / "scaling.parquet", index=False)
    again = scaling.load_study(stale, n_resamples=20)
    assert "describes other rows" in again.notes[0]
    assert {p["n_train"] for p in again.analysis["points"]} == set(N_VALUES[:4])


# ---------------------------------------------------------------------------- tables
def test_points_table_holds_the_mean_iou_of_each_model_and_n(study):
    frame = scaling.points_table(study).frame
    rows = study.rows
    assert len(frame) == len(TRUTH) * len(N_VALUES)
    for (network, _, config, size, _), abc in TRUTH.items():
        name = study.model(f"{network}/{config}", size).name
        for n in N_VALUES:
            mine = rows[(rows["network"] == network) & (rows["size"] == size) & (rows["n_train"] == n)]
            got = frame.loc[(name, n)]
            assert got["mIoU"] == pytest.approx(mine["iou"].mean())
            assert got["95% CI low"] < got["mIoU"] < got["95% CI high"]
            assert got["mIoU"] == pytest.approx(power_law(n, *abc), abs=0.015)
    assert list(frame.index.get_level_values("model")[:1]) == ["3D U-Net (matched, 0.3M)"]


def test_paired_table_is_unet_minus_bsevox_per_size_and_n(study):
    numbers, shown = scaling.paired_frames(study)
    rows = study.rows
    for size in ("0.3M", "1.2M"):
        at = rows[(rows["size"] == size) & (rows["n_train"] == 8000)].pivot(index="sample", columns="network",
                                                                             values="iou")
        value = numbers.loc[(size, 8000), "3D U-Net − BSE-VoxNets"]
        assert value == pytest.approx((at["unet3d"] - at["bsevox"]).mean())
    assert shown.loc[("0.3M", 8000), "verdict"] == "BSE-VoxNets ahead"
    assert shown.loc[("1.2M", 8000), "verdict"] == "3D U-Net ahead"
    assert shown.loc[("0.3M", 125), "verdict"] == "3D U-Net ahead"  # before the crossing at N = 400


def test_extrapolation_table_gives_the_true_curve_at_the_papers_n(study):
    numbers, shown = scaling.extrapolation_frames(study)
    for (network, _, config, size, _), (a, b, c) in TRUTH.items():
        name = study.model(f"{network}/{config}", size).name
        assert numbers.loc[name, "IoU at N=10,000"] == pytest.approx(power_law(10_000, a, b, c), abs=0.01)
        assert numbers.loc[name, "low"] < numbers.loc[name, "IoU at N=10,000"] < numbers.loc[name, "high"]
        assert numbers.loc[name, "a"] == pytest.approx(a, abs=0.05)
        assert shown.loc[name, "N run"] == "125–8,000"
    assert numbers.loc["BSE-VoxNets (moderate), paper", "IoU at N=10,000"] == pytest.approx(0.953)
    assert numbers.loc["BSE-VoxNets (lite), paper", "parameters"] == 16e6
    assert "1,000 e-/pixel" in shown.loc["BSE-VoxNets (lite), paper", "source"]


def test_crossing_table_finds_the_known_crossing(study):
    numbers, shown = scaling.crossing_frames(study)
    assert numbers.loc["0.3M", "first crossing N"] == pytest.approx(400, rel=0.25)
    assert "in the fitted range" in shown.loc["0.3M", "fitted curves cross at N"]
    assert np.isnan(numbers.loc["1.2M", "first crossing N"]) and numbers.loc["1.2M", "crossings"] == 0
    truth = power_law(10_000, *TRUTH[("unet3d", "3D U-Net", "small", "1.2M", 1_187_000)]) - power_law(
        10_000, *TRUTH[("bsevox", "BSE-VoxNets", "s1m", "1.2M", 1_240_000)])
    assert numbers.loc["1.2M", "difference at N=10,000"] == pytest.approx(truth, abs=0.01)


def test_a_crossing_is_placed_in_the_fitted_range_or_the_extrapolation():
    assert scaling.crossing_place(400, 125, 8000) == "in the fitted range"
    assert scaling.crossing_place(9000, 125, 8000) == "extrapolated, below N = 10,000"
    assert scaling.crossing_place(30_000, 125, 8000) == "extrapolated, beyond N = 10,000"


def test_tables_render_as_html(study):
    tables = scaling.scaling_tables(study)
    assert [t.key for t in tables] == ["scaling-extrapolation", "scaling-crossings", "scaling-paired",
                                       "scaling-points"]
    assert all("<table" in t.html for t in tables)
    assert "0.953" in tables[0].html and "nowhere in 125–1,000,000" in tables[1].html


# ---------------------------------------------------------------------------- words
def test_remarks_name_the_leader_and_the_crossing(study):
    remarks = scaling_remarks.scaling_remarks(study)
    text = "\n".join(remarks)
    assert "size 0.3M (N = 8,000), BSE-VoxNets (tiny) leads 3D U-Net (matched)" in text
    assert "size 1.2M (N = 8,000), 3D U-Net (small) leads BSE-VoxNets (s1m)" in text
    assert text.count("excludes 0.") >= 2
    assert "Size 0.3M: the fitted curves cross at N ≈" in text and "(in the fitted range)" in text
    assert "BSE-VoxNets (tiny) ahead past the last crossing" in text
    assert "Size 1.2M: the fitted curves do not cross" in text and "3D U-Net (small) stays ahead" in text
    assert "16-179 M parameters" in text and "not comparable one to one" in text


def test_a_tied_or_undetermined_study_says_so():
    unet = synthetic_rows({("unet3d", "3D U-Net", "matched", "0.3M", 297_492): (0.8, 2.0, 0.5)},
                          n_values=(125, 250), n_samples=50)
    twin = unet.assign(network="bsevox", label="BSE-VoxNets", config="tiny", job_key=unet["job_key"] + "b")
    rows = pd.concat([unet, twin], ignore_index=True)  # the same IoU on every sample: no leader
    study = scaling.ScalingStudy(None, rows, analyse(rows, n_resamples=10))
    text = "\n".join(scaling_remarks.scaling_remarks(study))
    assert "3D U-Net (matched) and BSE-VoxNets (tiny) score the same mean IoU" in text
    assert "No power-law fit for 3D U-Net (matched, 0.3M)" in text and "N run: 125, 250" in text


def test_what_ran_states_the_grid_the_rule_and_the_selection(study):
    lines = "\n".join(scaling_remarks.what_ran(study))
    assert "28 finished jobs" in lines and "200 evaluation geometries" in lines
    assert RULE in lines and "validation split only" in lines
    assert "without rows yet: 5M at N = 125, 250, 500" in lines and "incomplete" in lines
    assert "N = 125: 100 epochs, 400 steps" in lines


def test_readme_markdown_has_the_extrapolation_and_the_paired_differences(study):
    text = scaling_remarks.scaling_markdown(study)
    assert text.count("**Scaling study") == 3
    assert "| model | parameters | N run |" in text and "| BSE-VoxNets (moderate), paper | 179M |" in text
    assert "| 8,000 | " in text and "| N | 0.3M: 3D U-Net − BSE-VoxNets [95 % CI] | 1.2M: 3D U-Net" in text
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table_lines[:8]}) == 1  # one table, equal columns


def test_readme_block_round_trip_and_check_catches_a_hand_edit(study_dir, tmp_path):
    snapshot = scaling_readme.write_snapshot(study_dir, tmp_path / "docs" / "snapshot")
    assert (snapshot / scaling_readme.FIGURE_NAME).read_bytes().startswith(b"\x89PNG")
    path = tmp_path / "README.md"
    path.write_text(f"# title\n\n{scaling_readme.BEGIN}\nold\n{scaling_readme.END}\n\ntail\n")
    assert scaling_readme.update_readme(path, snapshot)
    text = path.read_text()
    assert text.startswith("# title") and text.endswith("tail\n")
    assert "![Learning curves of the scaling study](docs/snapshot/learning_curves.png)" in text
    assert "| 8,000 | " in text and "extrapolated to N = 10,000" in text
    scaling_readme.check_readme(path, snapshot)
    assert not scaling_readme.update_readme(path, snapshot)
    path.write_text(text.replace("| 8,000 | ", "| 8,000 | 9", 1))
    with pytest.raises(scaling_readme.ReadmeOutOfDate, match="readme-scaling"):
        scaling_readme.check_readme(path, snapshot)
    with pytest.raises(FileNotFoundError, match="no scaling-study snapshot"):
        scaling_readme.generated_block(tmp_path / "empty")


# ---------------------------------------------------------------------------- figures and page
def test_figures_draw_both_networks_in_their_colours(study):
    for draw in (scaling_figures.learning_curves_plot, scaling_figures.iou_vs_parameters_plot):
        png = draw(study)
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        pixels = png_pixels(png)
        assert has_color(pixels, method_color("3D U-Net")) and has_color(pixels, method_color("BSE-VoxNets"))
    assert scaling_figures.sizes_at_n(study) == list(N_VALUES)


def test_iou_against_parameters_needs_two_sizes_at_one_n():
    rows = synthetic_rows({k: v for k, v in TRUTH.items() if k[3] == "0.3M"}, n_values=(125, 250, 500),
                          n_samples=30)
    one_size = scaling.ScalingStudy(None, rows, analyse(rows, n_resamples=10))
    with pytest.raises(ValueError, match="more than one model size"):
        scaling_figures.iou_vs_parameters_plot(one_size)
    assert scaling_figures.learning_curves_plot(one_size).startswith(b"\x89PNG")


def test_command_writes_scaling_html(study_dir):
    done = subprocess.run([sys.executable, "-m", "reports", "scaling", str(study_dir)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    page = (study_dir / "scaling.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "Learning curves" in page
    assert "leads" in page and "Power-law fits and the extrapolation" in page and "<script" not in page


def test_command_names_the_missing_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "reports", "scaling", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and str(tmp_path / "nowhere") in done.stderr


def test_page_lists_a_figure_it_cannot_draw(tmp_path):
    rows = synthetic_rows({k: v for k, v in TRUTH.items() if k[3] == "0.3M"}, n_values=(125, 250, 500),
                          n_samples=30)
    out = scaling_page.build_scaling_report(write_study(tmp_path, rows, fits=False), tmp_path / "x.html",
                                            n_resamples=10)
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1 and "more than one model size" in page
    assert "no readable fits.json" in page
