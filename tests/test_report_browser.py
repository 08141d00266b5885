"""Open a report built from a synthetic results folder in headless Chromium and check the DOM.

Needs Debian's ``chromium`` (install: ``scripts/ensure_chromium.sh``). Set
``BSE_BENCH_SKIP_BROWSER=1`` to skip on a machine without it; otherwise a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib import image as mpl_image

from reports import build_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def chromium_binary() -> str:
    if os.environ.get("BSE_BENCH_SKIP_BROWSER") == "1":
        pytest.skip("BSE_BENCH_SKIP_BROWSER=1")
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if binary is None:
        pytest.fail("headless Chromium not found: run scripts/ensure_chromium.sh (as root it runs "
                    "`apt-get update && apt-get install -y chromium`), or set "
                    "BSE_BENCH_SKIP_BROWSER=1 to skip this test", pytrace=False)
    return binary


class DomSummary(HTMLParser):
    """Body attributes, <img> attributes, body rows of every table (by its ``data-table`` or
    ``id`` attribute), external links."""

    def __init__(self):
        super().__init__()
        self.body: dict = {}
        self.images: list[dict] = []
        self.table_rows: dict[str, int] = {}
        self.external: list[str] = []
        self._tables: list[str | None] = []
        self._in_tbody = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if str(attrs.get(key, "")).startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])
        if tag == "body":
            self.body = attrs
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            name = attrs.get("data-table") or attrs.get("id")
            self._tables.append(name)
            if name:
                self.table_rows[name] = 0
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody and self._tables and self._tables[-1]:
            self.table_rows[self._tables[-1]] += 1

    def handle_endtag(self, tag):
        if tag == "table" and self._tables:
            self._tables.pop()
        elif tag == "tbody":
            self._in_tbody = False


def run_chromium(binary, args, tmp_path, name) -> str:
    done = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / ('profile-' + name)}", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def test_report_renders_tables_and_images_in_chromium(synthetic_results, tmp_path):
    binary = chromium_binary()
    results = synthetic_results(tmp_path / "results")
    report = build_report(results)
    url = report.resolve().as_uri()

    dom = run_chromium(binary, ["--window-size=1400,900", "--virtual-time-budget=15000", "--dump-dom", url],
                       tmp_path, "dom")
    page = DomSummary()
    page.feed(dom)
    # short page: under 10 screens of 1400 x 900 px, details closed (issue 23.5)
    assert 900 < int(page.body["data-page-height"]) < 10 * 900

    # tables: row counts of the synthetic results (3 methods, 4 ablation variants, ...)
    # MED-SEM, 3D U-Net, BSE-VoxNets on the nanocube, and the paper's oracle-threshold MED-SEM
    # (ours used a fixed threshold, so the paper's MED-SEM values get a row of their own)
    assert page.table_rows["table3"] == 4
    assert page.table_rows["table4"] == 4
    assert page.table_rows["table1"] == 4  # full, no-sope, no-s2mlp, no-convffn
    assert page.table_rows["table2"] == 6  # our 2 networks + the paper's 4 configs
    assert page.table_rows["best-per-case"] == 4  # nanocube, nanowire, test, ablation
    assert page.table_rows["test-miou"] == 3
    assert page.table_rows["runs"] == 13  # 3 methods x 3 cases + 4 ablation variants

    # images: all embedded PNG data URLs that the browser decoded (set by the page's script)
    assert len(page.images) >= 12
    assert page.body.get("data-images-total") == str(len(page.images))
    assert page.body.get("data-images-decoded") == str(len(page.images))
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert int(img["data-natural-width"]) > 100
    assert page.external == []  # works offline: nothing fetched from elsewhere

    screenshot = tmp_path / "report.png"
    run_chromium(binary, ["--window-size=1280,3000", f"--screenshot={screenshot}", url],
                 tmp_path, "shot")
    pixels = mpl_image.imread(screenshot)
    assert pixels.shape[:2] == (3000, 1280)
    assert screenshot.stat().st_size > 50_000
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank page


HOSTILE_CASE = "custom:<img src=x onerror=document.title=1337>"
HOSTILE_SAMPLE = "$\\frac{1}{0$"


def _add_hostile_case(results):
    """Copy the nanocube runs under a script-injecting case name and a mathtext-breaking sample name."""
    import pandas as pd

    all_rows = pd.read_parquet(results / "results.parquet")
    for run_dir in sorted((results / "runs").glob("*-nanocube-*")):
        rows = pd.read_parquet(run_dir / "rows.parquet")
        key = run_dir.name.replace("nanocube", "hostile")
        rows = rows.assign(case=HOSTILE_CASE, run_key=key,
                           sample=[HOSTILE_SAMPLE] + [f"<b>{s}</b>" for s in rows["sample"].iloc[1:]])
        target = results / "runs" / key
        shutil.copytree(run_dir, target)
        rows.to_parquet(target / "rows.parquet")
        with np.load(run_dir / "volumes.npz") as v:
            volumes = {k: v[k] for k in v.files}
        volumes["ids"] = np.array(rows["sample"].tolist())
        np.savez_compressed(target / "volumes.npz", **volumes)
        all_rows = pd.concat([all_rows, rows], ignore_index=True)
    all_rows.to_parquet(results / "results.parquet")


def test_hostile_names_are_shown_as_text_and_never_run(synthetic_results, tmp_path):
    """Issue 13.1: names from users (case files, samples) are escaped in tables, captions and
    figures; nothing injected runs; mathtext-looking names do not make figures vanish."""
    binary = chromium_binary()
    results = synthetic_results(tmp_path / "results")
    clean = DomSummary()
    clean.feed(build_report(results).read_text())
    clean_images = len(clean.images)
    _add_hostile_case(results)
    report = build_report(results)
    html_text = report.read_text()
    assert "<img src=x" not in html_text  # escaped in the file itself
    assert "&lt;img src=x onerror=document.title=1337&gt;" in html_text
    assert "could not be drawn" not in html_text  # no figure lost to mathtext
    dom = run_chromium(binary, ["--virtual-time-budget=15000", "--dump-dom", report.resolve().as_uri()],
                       tmp_path, "hostile")
    page = DomSummary()
    page.feed(dom)
    assert not [img for img in page.images if img.get("src") == "x" or "onerror" in img]
    assert "<title>1337</title>" not in dom and "BSE reconstruction benchmark" in dom.split("</title>")[0]
    assert "&lt;img src=x onerror=document.title=1337&gt;" in dom  # the literal text, as text
    assert len(page.images) > clean_images  # the hostile case got its own figures
    assert page.body.get("data-images-decoded") == str(len(page.images))
