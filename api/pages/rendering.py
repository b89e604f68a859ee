"""What every page shares: the templates' environment and filters, the page headers (CSP), the
paging and progress-bar helpers, and the cached leaderboard."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from fastapi import Path as PathParam
from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.leaderboard import Leaderboard, leaderboard
from orchestrator.models import Result, TrialState

from ..deps import MAX_ID

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
SWEEPS_PER_PAGE = 25
TRIALS_PER_PAGE = 50
BOARD_ROWS_PER_PAGE = 50
FAILURES_SHOWN = 10
POLL_SECONDS = 2.0

# Only this service's own files: no inline script or style, no other origin, no framing. Figures are
# SVG files loaded as images (`img-src 'self'`); an image cannot run script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


SweepId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
TrialId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
PageNumber = Annotated[int, Query(ge=1, le=MAX_ID)]


# --- formatting (Jinja filters) ---------------------------------------------------------------------


def format_metric(value: float | None, metric: str | None = "accuracy") -> str:
    """An accuracy (a fraction) in percent with one decimal; any other metric (r²) with three."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:.1f}%" if metric in (None, "accuracy") else f"{value:.3f}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_time(moment: datetime | str | None) -> str:
    if moment is None:
        return "—"
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is not None:  # PostgreSQL's; SQLite's are naive, stored in UTC
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def error_line(error: str | None) -> str:
    """The line of an error a table shows: a traceback's last line (the exception), else the first."""
    if not error:
        return ""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def configuration(row: Any) -> str:
    """layer · init · reparam · trained/frozen of a trial (the start of a leaderboard label): a dict
    (list_trials' rows) or an object with those attributes (best_trials')."""
    if isinstance(row, Mapping):
        layer, init, reparam, trained = (row[k] for k in ("layer", "init", "reparam", "train_eigenvalues"))
    else:
        layer, init, reparam, trained = row.layer, row.init, row.reparam, row.train_eigenvalues
    return f"{layer} · {init} · {reparam} · {'trained' if trained else 'frozen'}"


def format_number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(format_number(v) for v in value)
    return str(value)


ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is text, whatever it holds: a sweep named <script> is shown, not run
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters.update(
    metric=format_metric,
    seconds=format_seconds,
    time=format_time,
    error_line=error_line,
    configuration=configuration,
    number=format_number,
)
# the states in their life order, as the column holds them
TRIAL_STATES = tuple(state.value for state in TrialState)
ENVIRONMENT.globals.update(trial_states=TRIAL_STATES)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("read_auth", request.app.state.settings.read_auth)
    context.setdefault("viewer", None)
    context["current_path"] = request.url.path
    html = ENVIRONMENT.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def not_found(request: Request, what: str, ident: int) -> HTMLResponse:
    return render(request, "not_found.html", 404, title=f"No {what} {ident}", what=what, ident=ident)


def page_link(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = dict(parse_qsl(request.url.query))
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return f"{request.url.path}?{query}" if query else request.url.path


def pages(total: int, per_page: int, page: int) -> dict[str, int]:
    last = max(1, math.ceil(total / per_page))
    return {"page": page, "last": last, "total": total, "per_page": per_page}


def bar(counts: dict[str, int]) -> list[dict[str, Any]]:
    """The segments of a progress bar: each trial state's share, in percent, in state order."""
    total = sum(counts.values())
    segments, start = [], 0.0
    for state in TRIAL_STATES:
        n = counts.get(state, 0)
        if n and total:
            width = 100.0 * n / total
            segments.append({"state": state, "n": n, "x": round(start, 3), "width": round(width, 3)})
            start += width
    return segments


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in TRIAL_STATES if counts.get(s)) or "no trials"


ENVIRONMENT.globals.update(bar=bar, counts_text=counts_text)


def cached_board(request: Request, session: Session, **arguments: Any) -> Leaderboard:
    """`leaderboard(session, **arguments)` through the service's board cache (the JSON route's,
    `api.routes.leaderboard.BoardCache`): recomputed only when a result was added since, or after
    `SSMBENCH_LEADERBOARD_CACHE_SECONDS`. A board is a frozen model, safe to share between requests."""
    stamp = session.scalar(select(func.max(Result.id)))
    key = ("page", *sorted(arguments.items()))
    cache = request.app.state.leaderboard_cache
    return cache.get(key, stamp, lambda: leaderboard(session, **arguments))
