"""What routes share: the service's settings, a database session per request, and the token checks.

Routes get them as annotated dependencies (`SessionDep`, `OwnerDep`, `ReadAccess`), as in the FastAPI
full-stack template; everything they read hangs off `request.app.state` (set by `api.app.create_app`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from orchestrator.settings import Settings
from orchestrator.tokens import token_owner

from .errors import ServiceError

API_PREFIX = "/api/v1"
MAX_ID = 2**31 - 1  # ids and offsets are 32-bit integers in the database: larger ones are a 422, not a 500


class ServiceSettings(Settings):
    """The orchestrator's settings plus what only the HTTP service needs (same `SSMBENCH_` prefix)."""

    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted (413 above)")
    max_page_size: int = Field(500, ge=1, description="largest `limit` of a paginated list (422 above)")
    scheduler: bool = Field(
        True, description="run the scheduler inside the service (False: API-only replica)"
    )
    scheduler_poll_seconds: float = Field(0.25, gt=0, description="pause between scheduling passes")
    ray_num_cpus: int | None = Field(
        None,
        ge=1,
        description="CPUs of a local Ray started by the service (None: all); ignored with RAY_ADDRESS",
    )
    check_resources: bool = Field(
        True,
        description="refuse a sweep whose trials fit on no node of the cluster as it is now (turn off for an "
        "autoscaling cluster that adds nodes on demand)",
    )
    leaderboard_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="a cached leaderboard is recomputed when a result is added, and at the latest after this",
    )


bearer = HTTPBearer(
    auto_error=False,
    description="A token from `ssmbench token create --name NAME`; the sweep owner is the token's name.",
)


# The dependencies a read goes through are `async def`: FastAPI runs a plain `def` dependency in the
# thread pool, and each hop there costs about what a cached leaderboard answer does. The session is
# lazy (no connection until the route's first query, which runs in the route's thread); closing it
# returns the connection to the pool.


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def require_owner(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The name of the caller's token; 401 without a valid `Authorization: Bearer <token>`."""
    if credentials is None:
        raise ServiceError(
            401,
            "unauthorized",
            "this request needs `Authorization: Bearer <token>`; create a token with `ssmbench token create --name NAME`",
            "Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    owner = token_owner(session, credentials.credentials)
    if owner is None:
        raise ServiceError(
            401,
            "invalid_token",
            "the bearer token is not valid (unknown or revoked)",
            "Authorization",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return owner


OwnerDep = Annotated[str, Depends(require_owner)]


async def check_read_access(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Reads are open unless `SSMBENCH_READ_AUTH=true`; then they need a valid token like writes."""
    if request.app.state.settings.read_auth:
        await run_in_threadpool(require_owner, session, credentials)


ReadAccess = Depends(check_read_access)


def page_limit(settings: ServiceSettings, limit: int) -> int:
    """`limit` within the service's page size (422 naming `limit` above it)."""
    if limit > settings.max_page_size:
        raise ServiceError(
            422, "page_too_large", f"limit is at most {settings.max_page_size} (got {limit})", "limit"
        )
    return limit
