"""``docs/architecture.md``'s table of result-row columns, generated from the one row schema
(``benchmark.schema.schema_markdown()``, i.e. :class:`benchmark.schema.ResultRow`).

``python -m reports schema`` writes the table between :data:`BEGIN` and :data:`END`;
``python -m reports schema --check`` changes nothing and fails when the page disagrees with the
schema (a test runs it), so the documented columns cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.schema import schema_markdown
from datasets.files import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE_PATH = REPO_ROOT / "docs" / "architecture.md"
BEGIN = "<!-- result-row-schema:start -->"
END = "<!-- result-row-schema:end -->"


class SchemaDocOutOfDate(ValueError):
    """The page's table of result-row columns differs from ``benchmark.schema``."""


def schema_block() -> str:
    """The generated block, markers included."""
    return (f"{BEGIN}\n<!-- written by `python -m reports schema` from benchmark/schema.py; "
            f"do not edit by hand -->\n\n{schema_markdown()}\n\n{END}")


def _with_block(text: str, page: Path) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{page} must hold exactly one result-row schema block ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    return head + schema_block() + rest.split(END, 1)[1]


def update_schema_doc(page=ARCHITECTURE_PATH) -> bool:
    """Rewrite the page's schema block from ``benchmark.schema``; True when it changed."""
    page = Path(page)
    text = page.read_text()
    new = _with_block(text, page)
    if new != text:
        write_text_atomic(page, new)
    return new != text


def check_schema_doc(page=ARCHITECTURE_PATH) -> None:
    """Raise :class:`SchemaDocOutOfDate` when the page's schema block is not the schema's table."""
    page = Path(page)
    text = page.read_text()
    if _with_block(text, page) != text:
        raise SchemaDocOutOfDate(f"{page}'s result-row columns disagree with benchmark/schema.py: run "
                                 "`python -m reports schema`")
