"""The README quotes results written from saved data (reports/readme.py), never by hand."""

from __future__ import annotations

import re

import pytest

from reports import readme, scaling_readme
from reports.__main__ import main as reports_main


def test_readme_results_agree_with_the_committed_snapshot():
    """README.md's results block is exactly what docs/results/quick/ gives (run
    `python -m reports readme` after a new quick run, and commit both)."""
    readme.check_readme()


def test_readme_scaling_study_agrees_with_the_committed_snapshot():
    """README.md's scaling block is exactly what docs/results/scaling/ gives (run
    `python -m reports readme-scaling outputs/scaling-paper-cpu` after more study jobs)."""
    scaling_readme.check_readme()


def test_readme_is_short_with_a_table_of_contents_and_the_commands_first():
    text = readme.README_PATH.read_text()
    assert len(text.splitlines()) <= 300
    head = text.split("## Results", 1)[0]
    assert "**Contents**" in head and "nox -s tests" in head and "nox -s benchmark" in head
    for link in re.findall(r"\]\((docs/[^)#]+)", text):  # every linked page exists
        assert (readme.REPO_ROOT / link).is_file(), link


def _readme_with_block(tmp_path, snapshot):
    path = tmp_path / "README.md"
    path.write_text(f"# title\n\n{readme.BEGIN}\nold\n{readme.END}\n\ntail\n")
    assert readme.update_readme(path, snapshot)
    return path


def test_update_writes_the_report_tables_and_check_catches_a_hand_edit(tmp_path, synthetic_results):
    results = synthetic_results(tmp_path / "results", cases=("nanocube", "nanowire", "test"))
    snapshot = readme.write_snapshot(results, tmp_path / "snapshot")
    path = _readme_with_block(tmp_path, snapshot)
    text = path.read_text()
    assert text.startswith("# title") and text.endswith("tail\n")
    assert "mIoU on the held-out test split" in text and "| method |" in text
    readme.check_readme(path, snapshot)  # agrees right after writing
    assert not readme.update_readme(path, snapshot)  # and writing again changes nothing

    number = re.search(r"\| (0\.\d{3}) \|", text).group(1)
    path.write_text(text.replace(number, "0.999", 1))
    with pytest.raises(readme.ReadmeOutOfDate, match="python -m reports readme"):
        readme.check_readme(path, snapshot)


def test_snapshot_holds_the_summaries_the_intervals_come_from(tmp_path, synthetic_results):
    results = synthetic_results(tmp_path / "results", cases=("test",))
    snapshot = readme.write_snapshot(results, tmp_path / "snapshot")
    inputs = readme.load_snapshot(snapshot)
    assert set(inputs.summaries) == set(inputs.rows["run_key"].unique())
    markdown = readme.results_markdown(inputs)
    low = next(iter(inputs.summaries.values()))["metrics"]["miou"]["low"]
    assert f"{low:.3f}" in markdown  # the interval saved by the run, as in the HTML report


def test_errors_name_the_problem(tmp_path, capsys):
    assert reports_main(["readme", str(tmp_path / "nowhere")]) == 2
    assert "results.parquet" in capsys.readouterr().err
    broken = tmp_path / "README.md"
    broken.write_text("no generated block here\n")
    with pytest.raises(ValueError, match="exactly one generated block"):
        readme.update_readme(broken, tmp_path)
