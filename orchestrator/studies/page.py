"""A study's index.html: the verdict table and the figures (beside it in figures/), no network needed."""

from __future__ import annotations

import html
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 6px; text-align: left; vertical-align: top; }
.holds { color: #1a7f37; font-weight: bold; } .fails { color: #cf222e; font-weight: bold; }
.inconclusive { color: #9a6700; font-weight: bold; }
figure { margin: 2em 0; } img { max-width: 100%; } figcaption { font-size: 14px; color: #555; }
code { background: #f4f4f4; padding: 1px 4px; }
"""


def format_number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_study_page(summary: dict[str, Any], figures: list[dict[str, str]]) -> str:
    """The page of a study run from its summary.json content and the figures written."""
    e = html.escape
    rows = []
    for claim in summary["claims"]:
        ci = claim.get("ci")
        interval = "—" if not ci else f"[{format_number(ci[0])}, {format_number(ci[1])}]"
        rows.append(
            "<tr>"
            f"<td><code>{e(claim['id'])}</code><br>{e(claim['statement'])}</td>"
            f"<td>{e(claim['quantity'])}</td>"
            f"<td>{e(format_number(claim['value']))}</td><td>{e(interval)}</td><td>{claim['n']}</td>"
            f'<td class="{e(claim["verdict"])}">{e(claim["verdict"])}</td>'
            f"<td>{e(claim['rule'])}</td>"
            "</tr>"
        )
    sweeps = ", ".join(f"{e(s['part'])} (sweep {s['id']})" for s in summary["sweeps"])
    blocks = [
        f'<figure><img src="figures/{e(f["name"])}.png" alt="{e(f["title"])}">'
        f"<figcaption><b>{e(f['title'])}.</b> {e(f['caption'])} "
        f'(<a href="figures/{e(f["name"])}.svg">SVG</a>)</figcaption></figure>'
        for f in figures
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Study {e(summary["study"])} ({e(summary["scale"])})</title>
<style>{STYLE}</style></head><body>
<h1>Study <code>{e(summary["study"])}</code> — {e(summary["scale"])} scale</h1>
<p>{e(summary["paper"])}</p>
<p>Sweeps: {sweeps}. Each claim's rule was fixed in the study's code before any run; the value is the
mean of the quantity, the interval its 95% Student-t interval over the n values (no interval: a
direct computation or fewer than two values).</p>
<h2>Claims</h2>
<table><thead><tr><th>claim</th><th>quantity</th><th>value</th><th>95% interval</th><th>n</th>
<th>verdict</th><th>rule</th></tr></thead><tbody>
{"".join(rows)}
</tbody></table>
<h2>Figures</h2>
{"".join(blocks) or "<p>No figures.</p>"}
</body></html>
"""
