"""Health: is the database reachable, is Ray, and what is this replica's scheduler doing."""

from __future__ import annotations

import dataclasses
import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from orchestrator.settings import masked_text

from ..deps import API_PREFIX, SessionDep, json_response
from ..errors import error_responses
from ..schemas import ComponentHealth, Health, SchedulerHealth

router = APIRouter(prefix=f"{API_PREFIX}/health", tags=["health"])
log = logging.getLogger(__name__)

SCHEDULER_OFF = SchedulerHealth(
    enabled=False, state="disabled", holds_lease=False, in_flight=0, last_step_at=None, last_error=None
)
RAY_UNUSED = ComponentHealth(ok=True, detail="not used (API-only replica: the scheduler is off)")
# /health is open to anyone: it says *what* is wrong, never the exception (its type or text: hosts,
# paths, driver messages), which goes to the service log.
UNREACHABLE = "not reachable (see the service log)"


@router.get(
    "",
    response_model=Health,
    summary="Service health",
    responses={
        **error_responses(),
        503: {
            "model": Health,
            "description": "The database or Ray is not reachable, or the scheduler keeps failing.",
        },
    },
)
def get_health(request: Request, session: SessionDep) -> Response:
    """200 when the database answers and — on a replica that runs the scheduler — Ray does too and
    the scheduling loop is not failing pass after pass; 503 with the same body (status `degraded`)
    otherwise. Details are a few words, never an exception's text (the service's log has that).
    Always open (no token), for load balancers and probes."""
    try:
        session.execute(text("SELECT 1"))
        database = ComponentHealth(ok=True, detail=session.get_bind().dialect.name)
    except Exception as err:  # any failure to answer is the finding, not an error of this route
        log.warning("health: the database did not answer: %s", masked_text(str(err)))
        database = ComponentHealth(ok=False, detail=UNREACHABLE)
    service = request.app.state.scheduler  # an orchestrator.service.SchedulerService, or None
    if service is None:
        scheduler, ray, scheduler_ok = SCHEDULER_OFF, RAY_UNUSED, True
    else:
        status, ray_status = service.status(), service.ray_status()
        scheduler = SchedulerHealth(enabled=True, **dataclasses.asdict(status))
        if scheduler.last_error is not None:
            scheduler = scheduler.model_copy(
                update={"last_error": "the last scheduling pass failed (see the service log)"}
            )
        ray = ComponentHealth(**dataclasses.asdict(ray_status))
        if not ray.ok and ray.detail.startswith("not reachable"):
            ray = ComponentHealth(ok=False, detail=UNREACHABLE)
        scheduler_ok = ray.ok and not status.degraded
    healthy = database.ok and scheduler_ok
    health = Health(
        status="ok" if healthy else "degraded",
        version=request.app.state.version,
        database=database,
        ray=ray,
        scheduler=scheduler,
    )
    # Serialized here, in this route's thread: a model returned would be validated in a second hop to
    # the thread pool while the session still holds its pooled connection — under more concurrent
    # requests than threads, every thread then waits for a connection and no connection is given
    # back (0 answers at wrk -c64 on PostgreSQL: issue 18 §2).
    return json_response(health, 200 if healthy else 503)
