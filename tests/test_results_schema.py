"""The one result-row schema (benchmark.schema) is what the docs show and what the test fakes
write: docs/architecture.md's table is generated from it (`python -m reports schema`)."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.schema import ROW_COLUMNS, schema_markdown
from reports import schema_doc
from reports.__main__ import main as reports_main


def test_architecture_page_shows_the_schema():
    """docs/architecture.md's column table is exactly benchmark.schema's (run
    `python -m reports schema` after changing ResultRow)."""
    schema_doc.check_schema_doc()
    assert reports_main(["schema", "--check"]) == 0


def test_schema_command_writes_the_table_and_check_catches_a_hand_edit(tmp_path):
    page = tmp_path / "architecture.md"
    page.write_text(f"# page\n\n{schema_doc.BEGIN}\nold\n{schema_doc.END}\n\ntail\n")
    assert schema_doc.update_schema_doc(page)
    text = page.read_text()
    assert schema_markdown() in text and text.startswith("# page") and text.endswith("tail\n")
    assert not schema_doc.update_schema_doc(page)
    schema_doc.check_schema_doc(page)
    page.write_text(text.replace("`read_electrons_per_pixel`", "`dose`"))
    with pytest.raises(schema_doc.SchemaDocOutOfDate, match="python -m reports schema"):
        schema_doc.check_schema_doc(page)
    page.write_text("no block\n")
    with pytest.raises(ValueError, match="exactly one result-row schema block"):
        schema_doc.check_schema_doc(page)


def test_the_schema_table_names_every_column_once():
    lines = schema_markdown().splitlines()[2:]
    assert [line.split("`")[1] for line in lines] == ROW_COLUMNS
    assert all(line.rsplit("|", 2)[1].strip() for line in lines)  # each column has a meaning


def test_the_fake_results_have_exactly_the_schema_columns(synthetic_results, tmp_path):
    root = synthetic_results(tmp_path / "results", cases=("test",))
    rows = pd.read_parquet(root / "results.parquet")
    assert list(rows.columns) == ROW_COLUMNS
    assert (rows["read_electrons_per_pixel"] == rows["simulated_electrons_per_pixel"]).all()
