"""The benchmark's HTML report: tables, figures and provenance built from saved results only.

``build_report(results_dir, out=None) -> Path`` writes one self-contained HTML file
(default ``results_dir/report.html``). Of ``benchmark`` it imports only the result-row schema
(``benchmark.schema``) and, for the scaling study's page (``reports.scaling_page``), the study's
analysis (``benchmark.scaling_fit``); no method is ever run here.
"""

from reports.html import build_report

__all__ = ["build_report"]
