"""The benchmark's HTML report: tables, figures and provenance built from saved results only.

``build_report(results_dir, out=None) -> Path`` writes one self-contained HTML file
(default ``results_dir/report.html``). This package never imports ``benchmark``.
"""

from reports.html import build_report

__all__ = ["build_report"]
