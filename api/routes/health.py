"""Health: is the database reachable, is Ray, and what is this replica's scheduler doing."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from orchestrator.settings import masked_text

from ..deps import API_PREFIX, SessionDep
from ..errors import error_responses
from ..schemas import ComponentHealth, Health

router = APIRouter(prefix=f"{API_PREFIX}/health", tags=["health"])
log = logging.getLogger("api")
# /health is open to anyone: it says *what* is wrong, never the exception text (hosts, paths,
# driver messages), which goes to the service log.
SEE_LOG = "see the service log"


@router.get(
    "",
    response_model=Health,
    summary="Service health",
    responses={
        **error_responses(),
        503: {"model": Health, "description": "The database or Ray is not reachable."},
    },
)
def get_health(request: Request, response: Response, session: SessionDep) -> Health:
    """200 when the database answers and — on a replica that runs the scheduler — Ray does too;
    503 with the same body otherwise. Always open (no token), for load balancers and probes."""
    state = request.app.state
    try:
        session.execute(text("SELECT 1"))
        database = ComponentHealth(ok=True, detail=session.get_bind().dialect.name)
    except Exception as err:  # any failure to answer is the finding, not an error of this route
        log.warning("health: the database does not answer: %s: %s", type(err).__name__, masked_text(str(err)))
        database = ComponentHealth(ok=False, detail=f"not reachable ({SEE_LOG})")
    scheduler = state.scheduler_health()
    if scheduler.last_error is not None:
        scheduler = scheduler.model_copy(
            update={"last_error": f"the last scheduling pass failed ({SEE_LOG})"}
        )
    ray = state.ray_health()
    if not ray.ok and ray.detail.startswith("not reachable"):
        ray = ComponentHealth(ok=False, detail=f"not reachable ({SEE_LOG})")
    healthy = database.ok and (ray.ok or not scheduler.enabled)
    if not healthy:
        response.status_code = 503
    return Health(
        status="ok" if healthy else "degraded",
        version=state.version,
        database=database,
        ray=ray,
        scheduler=scheduler,
    )
