"""What routes share: the service's settings, a database session per request, and the token checks.

Routes get them as annotated dependencies (`SessionDep`, `CallerDep`, `OwnerDep`, `ViewerDep`,
`ReadAccess`), as in the FastAPI full-stack template; everything they read hangs off
`request.app.state` (set by `api.app.create_app`). A write's token is checked before its body is read
(`api.guards.WriteAuthMiddleware`), which leaves the caller in `request.state.caller`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from orchestrator.queries import SettledCounts, owner_load
from orchestrator.settings import Settings
from orchestrator.tokens import Caller, token_caller

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
    read_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="anonymous API reads are answered from memory for at most this long; a write through "
        "this process drops them at once, another process's writes show within it (0: off; api.read_cache)",
    )
    # Per-owner quotas (admins are exempt): a submission past either is a 429 with Retry-After.
    max_open_sweeps_per_owner: int = Field(
        20, ge=1, description="pending or running sweeps one token may have at a time"
    )
    max_pending_trials_per_owner: int = Field(
        50_000, ge=1, description="pending trials one token may have queued, the new sweep's included"
    )
    quota_retry_after_seconds: int = Field(60, ge=1, description="the Retry-After of a 429 over a quota")
    # Connection limits of `ssmbench serve` (uvicorn); a reverse proxy in front adds its own (deploy/).
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="a connection that has not sent a request's complete headers by then is closed",
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="a request whose body has not fully arrived by then is answered 408"
    )
    keep_alive_seconds: int = Field(5, ge=1, description="an idle keep-alive connection is closed after this")
    max_connections: int = Field(
        1000, ge=1, description="concurrent connections and requests; new ones are answered 503 above"
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, description="largest request head (request line and headers)"
    )
    optuna_dashboard_url: str | None = Field(
        None,
        description="where an optuna-dashboard over this database's Optuna storage is served; the web "
        "pages of search sweeps and their trials link to it",
    )


bearer = HTTPBearer(
    auto_error=False,
    description="A token from `ssmbench token create --name NAME`; the sweep owner is the token's name.",
)


# A read's dependencies are `async def` and its route a plain `def`: FastAPI runs each plain `def`
# (dependency or route) in the thread pool, and on a machine with few cores each hop there costs
# about what a cached leaderboard answer does — so a read makes one, its route. (Running the queries
# on the event loop instead, with no hop at all, was faster on SQLite but slower on PostgreSQL, where
# the loop then waits out every round trip: issue 18 §2, bench/RESULTS.md.) The session is lazy (no
# connection until the route's first query, which runs in the route's thread); closing it returns
# the connection to the pool. That close runs on the event loop: a read's session autocommits
# (`api.app.use_database`), so closing it rolls nothing back and waits on nothing; a write's session
# still holds a transaction when its route did not commit (an error, the login form's token lookup),
# whose ROLLBACK then waits on the loop — a round trip writes are rare enough to pay.


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for the request: each statement autocommits for a read (GET, HEAD); one transaction,
    committed by the route, for a write."""
    reads = request.method in ("GET", "HEAD")
    session = (request.app.state.read_sessions if reads else request.app.state.sessions)()
    try:
        yield session
    finally:
        session.close()


async def get_settled_counts(request: Request) -> SettledCounts:
    return request.app.state.settled_counts


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SettledDep = Annotated[SettledCounts, Depends(get_settled_counts)]
"""The trial counts of finished sweeps this app has read already (`orchestrator.queries.SettledCounts`)."""


def _unauthorized() -> ServiceError:
    return ServiceError(
        401,
        "unauthorized",
        "this request needs `Authorization: Bearer <token>`; create a token with `ssmbench token create --name NAME`",
        "Authorization",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _invalid_token() -> ServiceError:
    return ServiceError(
        401,
        "invalid_token",
        "the bearer token is not valid (unknown, revoked or expired)",
        "Authorization",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def authenticate(session: Session, authorization: str | None) -> Caller:
    """The caller of an `Authorization` header value; ServiceError 401 without a valid bearer token."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized()
    caller = token_caller(session, token.strip())
    if caller is None:
        raise _invalid_token()
    return caller


def require_caller(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """Who the request's token speaks for; 401 without a valid `Authorization: Bearer <token>`.
    A write was checked already, before its body was read (`api.guards`): that answer is reused."""
    checked = getattr(request.state, "caller", None)
    if checked is not None:
        return checked
    if credentials is None:
        raise _unauthorized()
    return authenticate(session, f"Bearer {credentials.credentials}")


def require_owner(caller: Annotated[Caller, Depends(require_caller)]) -> str:
    """The name of the caller's token (the owner of what it submits)."""
    return caller.name


CallerDep = Annotated[Caller, Depends(require_caller)]
OwnerDep = Annotated[str, Depends(require_owner)]


def _caller_released(
    request: Request, session: Session, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    """`require_caller`, then the session's connection back to the pool (the session stays usable):
    the route runs in another hop to the thread pool, and a connection held across hops can leave
    every thread waiting for one while the requests holding them wait for a thread."""
    try:
        return require_caller(request, session, credentials)
    finally:
        session.close()


async def optional_caller(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller | None:
    """The caller of a read that may carry a token (None without one; 401 for an invalid one)."""
    if credentials is None:  # the common case: anonymous, answered without a hop to the thread pool
        return None
    return await run_in_threadpool(_caller_released, request, session, credentials)


ViewerDep = Annotated[Caller | None, Depends(optional_caller)]


def visible_error(error: str | None, owner: str | None, viewer: Caller | None) -> str | None:
    """A trial's `error` as `viewer` may read it: the whole traceback for the sweep's owner or an
    admin; the exception's last line (`ValueError: ...`) for everyone else (no install paths)."""
    if error is None or (viewer is not None and (viewer.is_admin or viewer.name == owner)):
        return error
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error


async def check_read_access(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Reads are open unless `SSMBENCH_READ_AUTH=true`; then they need a valid token like writes."""
    if request.app.state.settings.read_auth:
        await run_in_threadpool(_caller_released, request, session, credentials)


ReadAccess = Depends(check_read_access)


def check_submission(
    session: Session, settings: ServiceSettings, caller: Caller, priority: int, new_trials: int
) -> None:
    """What a token may submit: a non-default priority only with an admin token (403), and within
    the owner's quotas of open sweeps and pending trials (429 with Retry-After); admins are exempt."""
    if caller.is_admin:
        return
    if priority != 0:
        raise ServiceError(403, "admin_only", "only an admin token may set a sweep's priority", "priority")
    open_sweeps, pending_trials = owner_load(session, caller.name)
    retry = {"Retry-After": str(settings.quota_retry_after_seconds)}
    if open_sweeps >= settings.max_open_sweeps_per_owner:
        message = (
            f"you have {open_sweeps} open sweeps, the most one owner may have "
            f"(SSMBENCH_MAX_OPEN_SWEEPS_PER_OWNER); retry when one finishes or cancel one"
        )
        raise ServiceError(429, "too_many_open_sweeps", message, None, retry)
    if pending_trials + new_trials > settings.max_pending_trials_per_owner:
        message = (
            f"this sweep's {new_trials} trials would bring your pending trials to {pending_trials + new_trials}, "
            f"over the limit of {settings.max_pending_trials_per_owner} (SSMBENCH_MAX_PENDING_TRIALS_PER_OWNER)"
        )
        raise ServiceError(429, "too_many_pending_trials", message, None, retry)


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as a JSON response, serialized once: a route that built its answer as its
    `response_model` returns this, so that FastAPI does not validate the answer a second time."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


def page_limit(settings: ServiceSettings, limit: int) -> int:
    """`limit` within the service's page size (422 naming `limit` above it)."""
    if limit > settings.max_page_size:
        raise ServiceError(
            422, "page_too_large", f"limit is at most {settings.max_page_size} (got {limit})", "limit"
        )
    return limit


Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="items to skip")]
# The schema states the default max_page_size as limit's maximum, so that clients (and fuzzers) know
# it; `page_limit` enforces the service's own setting (422 `page_too_large` above it).
MAX_PAGE_SIZE: int = ServiceSettings.model_fields["max_page_size"].default
Limit = Annotated[
    int,
    Query(
        ge=1,
        json_schema_extra={"maximum": MAX_PAGE_SIZE},
        description=f"items per page: at most the service's max_page_size ({MAX_PAGE_SIZE} by default)",
    ),
]


class PageRequest(NamedTuple):
    """The page a list route was asked for: `offset` items skipped, at most `limit` (checked) returned."""

    offset: int
    limit: int


def paging(default_limit: int) -> Any:
    """The `offset` and `limit` query parameters of a list route, as one dependency giving a
    PageRequest: `limit` defaults to `default_limit` and is refused above the service's max_page_size
    (422 `page_too_large`, `page_limit`)."""

    def page_request(settings: SettingsDep, offset: Offset = 0, limit: Limit = default_limit) -> PageRequest:
        return PageRequest(offset, page_limit(settings, limit))

    return Annotated[PageRequest, Depends(page_request)]
