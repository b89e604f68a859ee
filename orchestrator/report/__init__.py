"""Reports of sweeps: `ssmbench report SWEEP… --out DIR` writes DIR/index.html, DIR/figures/ and
DIR/summary.json (DESIGN.md "Contracts").

- `data`: the sweeps' results and epoch metrics, read in a few set-based queries into dataclasses;
- `figures`: the one figure module (matplotlib, Agg) — plain data in, a Figure out; the web pages
  draw with it too;
- `summary`: summary.json (mean ± std over seeds per configuration group, and a study's claims);
- `html`: index.html from the template shipped in templates/;
- `build`: which figures a report has, and writing the directory so that a failed run leaves no
  half page.
"""

from .build import build_report, write_report
from .data import ReportData, ReportError, load_report_data

__all__ = ["ReportData", "ReportError", "build_report", "load_report_data", "write_report"]
