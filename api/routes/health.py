"""Health: is the database reachable, is Ray, and what is this replica's scheduler doing."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from ..deps import API_PREFIX, SessionDep
from ..errors import error_responses
from ..schemas import ComponentHealth, Health

router = APIRouter(prefix=f"{API_PREFIX}/health", tags=["health"])


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
        database = ComponentHealth(ok=False, detail=f"{type(err).__name__}: {str(err).splitlines()[0]}")
    scheduler = state.scheduler_health()
    ray = state.ray_health()
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
