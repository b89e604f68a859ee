"""The page routes (`api.pages`): each reads one page of rows in a fixed number of statements and
renders a template; none writes to the database."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from orchestrator.array_codec import json_lists
from orchestrator.leaderboard import LRA_TASKS
from orchestrator.models import FINAL_TRIAL_STATES, LeaderboardCell, Sweep, Trial
from orchestrator.queries import (
    TRIAL_SORT_KEYS,
    best_trials,
    epoch_metrics,
    list_sweeps,
    list_trials,
    result_payload,
    sweep_summary,
    sweeps_state_counts,
    trial_detail,
    trial_diagnostics,
)
from orchestrator.tokens import token_caller
from ssm.config import InitName, LayerName, ReparamName

from ..deps import SessionDep, SettledDep, visible_error
from .auth import (
    TOKEN_COOKIE,
    LoginRequired,
    forget_token,
    page_viewer,
    safe_next,
    store_token,
)
from .page_figures import sweep_figures, trial_figures
from .rendering import (
    BOARD_ROWS_PER_PAGE,
    FAILURES_SHOWN,
    POLL_SECONDS,
    SWEEPS_PER_PAGE,
    TRIAL_STATES,
    TRIALS_PER_PAGE,
    PageNumber,
    SweepId,
    TrialId,
    cached_board,
    not_found,
    page_link,
    pages,
    render,
)

router = APIRouter(include_in_schema=False)

# --- sweeps -------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def sweeps_page(
    request: Request, session: SessionDep, settled: SettledDep, page: PageNumber = 1
) -> HTMLResponse:
    viewer = page_viewer(request, session)
    offset = (page - 1) * SWEEPS_PER_PAGE
    sweeps, total = list_sweeps(session, offset=offset, limit=SWEEPS_PER_PAGE)
    ids = [sweep.id for sweep in sweeps]
    counts = sweeps_state_counts(session, sweeps, settled)
    best = best_trials(session, ids)
    return render(
        request,
        "sweeps.html",
        title="Sweeps",
        viewer=viewer,
        sweeps=sweeps,
        counts=counts,
        done={i: sum(n for s, n in counts[i].items() if s in FINAL_TRIAL_STATES) for i in ids},
        best=best,
        paging=pages(total, SWEEPS_PER_PAGE, page),
        link=lambda **changes: page_link(request, **changes),
    )


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(
    request: Request,
    session: SessionDep,
    settled: SettledDep,
    sweep_id: SweepId,
    page: PageNumber = 1,
    sort: Annotated[Literal[TRIAL_SORT_KEYS], Query()] = "number",  # type: ignore[valid-type]
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    state: Annotated[Literal[TRIAL_STATES] | None, Query()] = None,  # type: ignore[valid-type]
    board_page: PageNumber = 1,
) -> HTMLResponse:
    viewer = page_viewer(request, session)
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return not_found(request, "sweep", sweep_id)
    summary = sweep_summary(session, sweep, settled=settled)
    trials, n_shown = list_trials(
        session,
        sweep_id,
        sort=sort,
        descending=order == "desc",
        state=state,
        offset=(page - 1) * TRIALS_PER_PAGE,
        limit=TRIALS_PER_PAGE,
    )
    failures, n_failed = list_trials(session, sweep_id, state="failed", limit=FAILURES_SHOWN)
    # No result yet: no board (the query would show every LRA task's baselines, as for a new database).
    has_results = bool(summary["trials_by_state"].get("completed"))
    board = cached_board(
        request,
        session,
        include_baselines=has_results,
        sweep_id=sweep_id,
        offset=(board_page - 1) * BOARD_ROWS_PER_PAGE,
        limit=BOARD_ROWS_PER_PAGE,
    )
    # a failed trial's whole traceback for the sweep's owner and admins only, as in the API
    errors = {t["id"]: visible_error(t["error"], sweep.owner, viewer) for t in (*trials, *failures)}
    settings = request.app.state.settings
    drawn = sweep_figures(request, session, sweep)
    return render(
        request,
        "sweep.html",
        title=f"Sweep {sweep.id}: {sweep.name}",
        viewer=viewer,
        sweep=sweep,
        summary=summary,
        final=sweep.state in ("completed", "cancelled"),
        spec_yaml=yaml.safe_dump(sweep.spec, sort_keys=False, allow_unicode=True),
        trials=trials,
        errors=errors,
        failures=failures,
        n_failed=n_failed,
        sort=sort,
        order=order,
        state=state,
        paging=pages(n_shown, TRIALS_PER_PAGE, page),
        board=board,
        board_paging=pages(board.total_rows, BOARD_ROWS_PER_PAGE, board_page),
        best=[row for row in board.rows if row.rank == 1],
        optuna_dashboard_url=settings.optuna_dashboard_url if sweep.spec.get("search") else None,
        poll_seconds=POLL_SECONDS,
        figures=drawn.for_page(lambda name: f"/sweeps/{sweep.id}/figures/{name}.svg", f"Sweep {sweep.id}"),
        figures_error=drawn.error,
        link=lambda **changes: page_link(request, **changes),
    )


@router.get("/sweeps/{sweep_id}/progress.json")
def sweep_progress(request: Request, session: SessionDep, settled: SettledDep, sweep_id: SweepId) -> Response:
    """What static/progress.js polls: the sweep's state and its trials by state (the cookie's token
    where reads need one; 401 JSON without it, not the login redirect)."""
    try:
        page_viewer(request, session)
    except LoginRequired:
        return JSONResponse({"error": {"code": "unauthorized", "message": "log in first"}}, 401)
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return JSONResponse({"error": {"code": "not_found", "message": f"no sweep {sweep_id}"}}, 404)
    summary = sweep_summary(session, sweep, settled=settled)
    document = {
        "id": sweep.id,
        "state": sweep.state,
        "n_trials": summary["n_trials"],
        "trials_by_state": summary["trials_by_state"],
        "done": sum(n for s, n in summary["trials_by_state"].items() if s in FINAL_TRIAL_STATES),
        "progress": summary["progress"],
        "final": sweep.state in ("completed", "cancelled"),
    }
    return JSONResponse(document, headers={"Cache-Control": "no-store"})


# --- trials ---------------------------------------------------------------------------------------


@router.get("/trials/{trial_id}", response_class=HTMLResponse)
def trial_page(request: Request, session: SessionDep, trial_id: TrialId) -> HTMLResponse:
    viewer = page_viewer(request, session)
    trial = session.get(Trial, trial_id)
    if trial is None:
        return not_found(request, "trial", trial_id)
    sweep = session.get(Sweep, trial.sweep_id)
    detail = trial_detail(session, trial)
    detail["error"] = visible_error(trial.error, sweep.owner, viewer)
    epochs = epoch_metrics(session, trial_id)
    payload = result_payload(session, trial_id) or {}
    diagnostics = payload.get("diagnostics") or {}  # results stored before migration 0007 keep them here
    stored = trial_diagnostics(session, trial)
    if stored.snapshots:
        arrays = {
            stage: [{quantity: json_lists(values) for quantity, values in layer.items()} for layer in layers]
            for stage, layers in stored.snapshots.items()
        }
        diagnostics = {**diagnostics, "arrays": arrays}
    if stored.fourier_noise:
        diagnostics = {**diagnostics, "fourier": stored.fourier_noise}
    settings = request.app.state.settings
    return render(
        request,
        "trial.html",
        title=f"Trial {trial.id} (sweep {sweep.id}: {sweep.name})",
        viewer=viewer,
        trial=detail,
        sweep=sweep,
        config_json=json.dumps(trial.config, indent=2, sort_keys=True),
        epochs=epochs,
        epoch_columns=_epoch_columns(epochs),
        figures=trial_figures(request, session, trial, epochs).for_page(
            lambda name: f"/trials/{trial.id}/figures/{name}.svg",
            f"Trial {trial.id}, attempt {trial.attempt}",
        ),
        fourier=diagnostics.get("fourier") or [],
        arrays=array_summary(diagnostics.get("arrays")),
        other_diagnostics={
            key: _shortened(json.dumps(value))
            for key, value in diagnostics.items()
            if key not in ("fourier", "arrays")
        },
        payload=payload,
        optuna_dashboard_url=settings.optuna_dashboard_url if trial.optuna_trial is not None else None,
    )


def _complex_pairs(value: Any) -> list[tuple[float, float]]:
    """The [re, im] pairs of a nested list (`ssm.diagnostics.layer_arrays` stores complex numbers so)."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return [(float(value[0]), float(value[1]))]
    if isinstance(value, list):
        return [pair for item in value for pair in _complex_pairs(item)]
    return []


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [float(value)] if math.isfinite(value) else []
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    return []


def array_summary(arrays: Any) -> list[dict[str, Any]]:
    """One row per stage (init, best, end) and SSM layer of `TrialResult.diagnostics["arrays"]`: how
    many eigenvalues, the largest Re λ, the largest |λ̄| of the discrete system, the mean memory
    capacity over channels. The arrays themselves are the figures' (MF(τ), the complex plane)."""
    if not isinstance(arrays, dict):
        return []
    rows = []
    for stage in ("init", "best", "end"):
        for index, layer in enumerate(arrays.get(stage) or []):
            if not isinstance(layer, dict):
                continue
            eigenvalues = _complex_pairs(layer.get("eigenvalues"))
            discrete = _complex_pairs(layer.get("Ab"))
            capacity = _numbers(layer.get("memory_capacity"))
            rows.append(
                {
                    "stage": stage,
                    "layer": index,
                    "n_eigenvalues": len(eigenvalues),
                    "max_real": max((re for re, _ in eigenvalues), default=None),
                    "max_modulus": max((math.hypot(re, im) for re, im in discrete), default=None),
                    "memory_capacity": sum(capacity) / len(capacity) if capacity else None,
                }
            )
    return rows


def _shortened(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


# The epoch table's columns, in this order when present; diagnostics follow as they come.
EPOCH_COLUMNS = ("train_loss", "val_loss", "val_metric", "seconds", "tokens_per_s")
HIDDEN_EPOCH_KEYS = {"attempt", "epoch", "lr"}


def _epoch_columns(epochs: list[dict[str, Any]]) -> list[str]:
    present = dict.fromkeys(key for epoch in epochs for key in epoch)
    first = [key for key in EPOCH_COLUMNS if key in present]
    rest = [key for key in present if key not in first and key not in HIDDEN_EPOCH_KEYS]
    return first + rest


# --- leaderboard ------------------------------------------------------------------------------------


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard_page(
    request: Request,
    session: SessionDep,
    task: Annotated[str | None, Query(max_length=64)] = None,
    layer: Annotated[LayerName | Literal[""] | None, Query()] = None,
    init: Annotated[InitName | Literal[""] | None, Query()] = None,
    reparam: Annotated[ReparamName | Literal[""] | None, Query()] = None,
    mode: Annotated[Literal["trained", "frozen", ""] | None, Query()] = None,
    page: PageNumber = 1,
) -> HTMLResponse:
    """The board over every sweep; an empty filter (the form's "any") is no filter."""
    viewer = page_viewer(request, session)
    filters = {
        "task": task or None,
        "layer": layer or None,
        "init": init or None,
        "reparam": reparam or None,
        "train_eigenvalues": {"trained": True, "frozen": False}.get(mode or ""),
    }
    board = cached_board(
        request, session, **filters, offset=(page - 1) * BOARD_ROWS_PER_PAGE, limit=BOARD_ROWS_PER_PAGE
    )
    stored_tasks = session.scalars(select(LeaderboardCell.task).distinct()).all()
    tasks = list(LRA_TASKS) + sorted(set(stored_tasks) - set(LRA_TASKS))
    return render(
        request,
        "leaderboard.html",
        title="Leaderboard",
        viewer=viewer,
        board=board,
        paging=pages(board.total_rows, BOARD_ROWS_PER_PAGE, page),
        choices={
            "task": tasks,
            "layer": list(LayerName.__args__),
            "init": list(InitName.__args__),
            "reparam": list(ReparamName.__args__),
            "mode": ["trained", "frozen"],
        },
        selected={"task": task, "layer": layer, "init": init, "reparam": reparam, "mode": mode},
        link=lambda **changes: page_link(request, **changes),
    )


# --- login ------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", title="Log in", next=safe_next(next), message=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, session: SessionDep) -> Response:
    """Check the token of the form and keep it in the cookie; the form again (401) when it is not
    valid. Posted from this service's own form only (the Origin header, where sent, must be ours)."""
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    target = safe_next(form.get("next"))
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        return render(request, "login.html", 403, title="Log in", next=target, message="not from this site")
    token = form.get("token", "").strip()
    caller = await run_in_threadpool(token_caller, session, token) if token else None
    if caller is None:
        message = "that token is not valid (unknown, revoked or expired)" if token else "enter a token"
        return render(request, "login.html", 401, title="Log in", next=target, message=message)
    response = RedirectResponse(target, status_code=303)
    store_token(response, token, secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse("/", status_code=303)
    if TOKEN_COOKIE in request.cookies:
        forget_token(response, secure=request.url.scheme == "https")
    return response
