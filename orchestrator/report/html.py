"""`index.html`: one self-contained page per report, rendered from the template shipped beside this
module (templates/report.html.j2). The figures are referenced as figures/NAME.svg next to it, the
style is inline: the page opens from disk with no network. Everything from the database is escaped
(Jinja2 autoescape)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
import yaml

from .data import ReportData

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("orchestrator.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def format_value(value: float | None, metric: str) -> str:
    """An accuracy in percent (0.873 → "87.30"), another metric with four decimals; "—" for none."""
    if value is None:
        return "—"
    return f"{100 * value:.2f}" if metric == "accuracy" else f"{value:.4f}"


def format_mean_std(stats: dict[str, Any], metric: str) -> str:
    shown = format_value(stats.get("mean"), metric)
    if stats.get("std") is not None:
        shown += f" ± {format_value(stats['std'], metric)}"
    return shown + ("%" if metric == "accuracy" and stats.get("mean") is not None else "")


_environment.filters["value"] = format_value
_environment.filters["mean_std"] = format_mean_std


def render_index(data: ReportData, summary: dict[str, Any], figures: list[dict[str, str]]) -> str:
    """The page: each sweep's spec and trial counts, its leaderboard with the published baselines,
    the configuration groups (mean ± std over seeds), then the figures (`{name, title, caption}`)."""
    names = ", ".join(s.name for s in data.sweeps)
    return _environment.get_template("report.html.j2").render(
        title=f"ssmbench report: {names}",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        sweeps=[
            {
                "info": s,
                "spec_yaml": yaml.safe_dump(s.spec, sort_keys=False, allow_unicode=True),
                "board": data.leaderboards.get(s.id),
            }
            for s in data.sweeps
        ],
        groups=summary["groups"],
        claims=summary["claims"],
        figures=figures,
    )
