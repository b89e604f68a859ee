"""Sweeps: submit (JSON or YAML), list, get with progress, cancel, and list a sweep's trials."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy.exc import DataError
from sqlalchemy.orm import load_only
from starlette.concurrency import run_in_threadpool

from orchestrator import store
from orchestrator.cluster import check_resources
from orchestrator.db import transaction
from orchestrator.models import Sweep
from orchestrator.queries import list_sweeps, list_trials, sweep_summary, sweeps_state_counts
from orchestrator.spec import SPEC_MEDIA_TYPES, SpecError, SweepSpec, parse_spec

from ..deps import (
    API_PREFIX,
    MAX_ID,
    CallerDep,
    ReadAccess,
    SessionDep,
    SettingsDep,
    SettledDep,
    ViewerDep,
    check_submission,
    json_response,
    paging,
    visible_error,
)
from ..errors import ServiceError, error_responses, not_found
from ..schemas import (
    CancelResult,
    SweepCreated,
    SweepDetail,
    SweepPage,
    SweepState,
    TrialPage,
    TrialState,
    TrialSummary,
)

router = APIRouter(prefix=f"{API_PREFIX}/sweeps", tags=["sweeps"])
log = logging.getLogger("api")

QUICKSTART_YAML = """\
name: quickstart
tasks: [delay, {name: listops, max_len: 256, n_train: 2000}]
model: {layer: s4d, init: [inv, lin], reparam: [exp, best], train_eigenvalues: [true, false],
        d_model: 32, d_state: 16, n_layers: 2}
optim: {lr: 3.0e-3, epochs: 3, batch_size: 32}
seeds: [0, 1]
"""
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="the sweep's id")]
SweepsPage = paging(default_limit=50)
TrialsPage = paging(default_limit=100)
# The request body is read by hand (JSON or YAML); this documents it. The SweepSpec schema itself is
# added to the OpenAPI components by `api.app`.
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "description": "A sweep spec (DESIGN.md): a JSON object, or the YAML text of a spec file.",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/SweepSpec"},
                "example": yaml.safe_load(QUICKSTART_YAML),
            },
            "application/yaml": {"schema": {"type": "string"}, "example": QUICKSTART_YAML},
        },
    }
}


def _read_route(path: str, model: type, summary: str, *statuses: int) -> Callable[[Callable], Callable]:
    """`router.get` for a read of the sweeps: behind `ReadAccess` (a token when the service asks one
    for reads: 401), answering `statuses` besides. The other resources' routers set ReadAccess on
    the whole router; this one also has writes, which check their caller themselves."""
    return router.get(
        path,
        response_model=model,
        summary=summary,
        dependencies=[ReadAccess],
        responses=error_responses(401, *statuses),
    )


def read_spec(
    body: bytes, content_type: str, max_trials: int, nodes: list[dict[str, Any]] | None = None
) -> SweepSpec:
    """The validated spec from a request body (`orchestrator.spec.parse_spec`); ServiceError 415/422
    naming the key path otherwise.

    With the cluster's `nodes` (a replica that runs the scheduler knows them), a spec whose trials
    fit on no node is refused too (`resources`); an API-only replica cannot check that."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in SPEC_MEDIA_TYPES:
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"send the spec as application/json or application/yaml, not {media_type or 'no content type'}",
            "Content-Type",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ServiceError(422, "invalid_spec", f"the body is not UTF-8 text: {err.reason}") from None
    try:
        spec = parse_spec(text, media_type, max_trials=max_trials)
        if nodes is not None:
            check_resources(spec, nodes)
    except SpecError as err:
        line = f" (line {err.line})" if err.line else ""
        raise ServiceError(422, err.code, f"{err.message}{line}", err.path or None) from None
    except (ValueError, TypeError, RecursionError) as err:  # nothing should get here; never a 500
        raise ServiceError(422, "invalid_spec", f"the spec cannot be read: {err}") from None
    return spec


@router.post(
    "",
    status_code=201,
    response_model=SweepCreated,
    summary="Submit a sweep",
    responses=error_responses(401, 403, 408, 413, 415, 429),
    openapi_extra=_SPEC_BODY,
)
async def submit_sweep(
    request: Request, response: Response, caller: CallerDep, settings: SettingsDep
) -> SweepCreated:
    """Validate a sweep spec and store the sweep with its trials as pending; the scheduler runs them.

    The body is the spec as JSON (`Content-Type: application/json`) or the YAML text of a spec file
    (`Content-Type: application/yaml`). Errors name the spec's key path in `field` (and, for YAML,
    the line). A trial whose configuration already has a completed result reuses it.
    """
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    # Parsing plans the whole grid (up to max_trials_per_sweep configs): off the event loop.
    state = request.app.state
    created = await run_in_threadpool(
        _store_sweep,
        state.sessions,
        body,
        content_type,
        settings,
        caller,
        state.cluster_nodes(),
    )
    request.app.state.metrics.sweeps_submitted.inc()
    response.headers["Location"] = f"{request.url.path}/{created.id}"
    return created


def _store_sweep(sessions, body, content_type, settings, caller, nodes) -> SweepCreated:
    spec = read_spec(body, content_type, settings.max_trials_per_sweep, nodes)
    budget = spec.trial_budget()
    try:
        with transaction(sessions) as session:
            check_submission(session, settings, caller, spec.priority, budget)
            sweep = store.create_sweep(session, spec, owner=caller.name)
            return SweepCreated(id=sweep.id, name=sweep.name, state=sweep.state, n_trials=budget)
    except (DataError, OverflowError) as err:  # e.g. a seed beyond the database's integers
        log.info("a submitted spec does not fit the database: %s", str(err).splitlines()[0])
        message = "a value does not fit the database (an integer beyond 64 bits, or text it cannot hold)"
        raise ServiceError(422, "invalid_spec", message) from None


@_read_route("", SweepPage, "List sweeps")
def get_sweeps(
    session: SessionDep,
    settled: SettledDep,
    page: SweepsPage,
    state: Annotated[SweepState | None, Query(description="only sweeps in this state")] = None,
) -> Response:
    """Sweeps, newest first, with their progress."""
    sweeps, total = list_sweeps(session, state=state, offset=page.offset, limit=page.limit)
    counts = sweeps_state_counts(session, sweeps, settled)  # one query for the page at most
    items = [sweep_summary(session, sweep, counts[sweep.id]) for sweep in sweeps]
    return json_response(SweepPage.model_validate({"items": items, "total": total, **page._asdict()}))


def _sweep_or_404(session, sweep_id: int, *options) -> Sweep:
    """The sweep (with loader `options`: only some columns), or 404 naming `sweep_id`."""
    sweep = session.get(Sweep, sweep_id, options=options)
    if sweep is None:
        raise not_found("sweep", sweep_id, "sweep_id")
    return sweep


@_read_route("/{sweep_id}", SweepDetail, "Get a sweep", 404)
def get_sweep(session: SessionDep, settled: SettledDep, sweep_id: SweepId) -> Response:
    """A sweep with its trial counts by state, its progress and its spec."""
    sweep = _sweep_or_404(session, sweep_id)
    summary = sweep_summary(session, sweep, settled=settled)
    return json_response(SweepDetail.model_validate({**summary, "spec": sweep.spec}))


@router.post(
    "/{sweep_id}/cancel",
    response_model=CancelResult,
    summary="Cancel a sweep",
    responses=error_responses(401, 403, 404, 409),
)
def cancel_sweep(session: SessionDep, caller: CallerDep, sweep_id: SweepId) -> CancelResult:
    """Cancel a sweep: its pending trials at once, its running ones at their next epoch.

    Only the sweep's owner (the token that submitted it) or an admin token may cancel it; a sweep
    submitted without a token (`ssmbench run`) only an admin. Cancelling a cancelled sweep again
    changes nothing; a completed sweep answers 409.
    """
    sweep = _sweep_or_404(session, sweep_id)
    if not caller.is_admin and sweep.owner != caller.name:  # an owner-less sweep: admins only
        message = f"only the owner of sweep {sweep_id} (or an admin) can cancel it"
        raise ServiceError(403, "forbidden", message, "sweep_id")
    if sweep.state == "completed":
        raise ServiceError(409, "sweep_finished", f"sweep {sweep_id} is completed already", "sweep_id")
    cancelled = store.cancel_sweep(session, sweep_id)
    session.commit()
    return CancelResult.model_validate({**sweep_summary(session, sweep), "cancelled_trials": cancelled})


@_read_route("/{sweep_id}/trials", TrialPage, "List a sweep's trials", 404)
def get_sweep_trials(
    session: SessionDep,
    sweep_id: SweepId,
    viewer: ViewerDep,
    page: TrialsPage,
    state: Annotated[TrialState | None, Query(description="only trials in this state")] = None,
) -> Response:
    """A sweep's trials in planning order. A failed trial's `error` is its exception's last line;
    the sweep's owner and admins (with their token) get the whole traceback."""
    owner = _sweep_or_404(session, sweep_id, load_only(Sweep.id, Sweep.owner)).owner
    trials, total = list_trials(session, sweep_id, state=state, offset=page.offset, limit=page.limit)
    for trial in trials:
        trial["error"] = visible_error(trial["error"], owner, viewer)
    items = [TrialSummary.model_validate(trial) for trial in trials]
    return json_response(TrialPage(items=items, total=total, offset=page.offset, limit=page.limit))
