"""The FastAPI service: `create_app(settings)` builds one instance.

    from api.app import create_app
    app = create_app()                      # settings from SSMBENCH_* (api.deps.ServiceSettings)

REST under /api/v1 (api/routes/), Prometheus text at /metrics, OpenAPI at /openapi.json and /docs.
The database must be migrated (`ssmbench db upgrade`): `create_app` refuses an unmigrated one with
`orchestrator.db.DatabaseNotMigrated`, whose message says so. With `settings.scheduler` (the
default) the app's lifespan starts the scheduler (`orchestrator.service.SchedulerService`, a
background thread) and stops it cleanly on shutdown; the database lease lets only one of several
replicas schedule at a time, the others stand by.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.db import make_engine, require_migrated, session_factory
from orchestrator.queries import SettledCounts
from orchestrator.service import SchedulerService
from orchestrator.worker import Trainer
from ssm import __version__

from . import schemas as api_schemas
from .deps import API_PREFIX, ServiceSettings
from .errors import error_response, install_error_handlers
from .guards import BodyDeadlineMiddleware, RejectNulMiddleware, WriteAuthMiddleware
from .metrics import RequestMetricsMiddleware, ServiceMetrics
from .middleware import HttpMiddleware
from .pages import install_pages
from .read_cache import ReadCacheMiddleware
from .routes import ROUTERS
from .routes.leaderboard import BoardCache

# --- request body limit ---------------------------------------------------------------------------------


class BodyLimitMiddleware(HttpMiddleware):
    """413 for a body over `limit` bytes: at once by its Content-Length, else while reading it (a
    chunked body without a length is counted as it arrives). The body is buffered (it is at most
    `limit` bytes) and replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int):
        super().__init__(app)
        self.limit = limit

    def handles(self, scope: Scope) -> bool:
        return super().handles(scope) and scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error_response(400, "bad_request", "Content-Length is not a number", "Content-Length")(
                    scope, receive, send
                )
                return
            if length > self.limit:
                await self._too_large(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is over the limit of {self.limit} bytes (SSMBENCH_MAX_BODY_BYTES)"
        await error_response(413, "payload_too_large", message, None, {"Connection": "close"})(
            scope, receive, send
        )


# --- the app -----------------------------------------------------------------------------------------


def use_database(app: FastAPI, engine: Engine) -> None:
    """Point `app`'s sessions (`api.deps.get_session`) at `engine`. A write's session is a
    transaction; a read's (GET, HEAD) autocommits each statement, so a read costs the server its
    statements and no BEGIN or ROLLBACK round trips — the ROLLBACK of closing a session would
    otherwise run on the event loop, where the session dependency closes it."""
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.read_sessions = session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))


def create_app(settings: ServiceSettings | None = None, *, train_fn: Trainer | None = None) -> FastAPI:
    """A service instance on `settings.database_url` (which must be migrated).

    `train_fn` replaces `ssm.train.train` in the trials this instance's scheduler starts (tests use a
    fast fake; it must be importable, or pickled by value, on the Ray workers).
    """
    settings = settings or ServiceSettings()
    engine = make_engine(settings.database_url)
    try:
        require_migrated(engine)
    except Exception:
        engine.dispose()
        raise
    scheduler = (
        SchedulerService(
            settings,
            train_fn,
            num_cpus=settings.ray_num_cpus,
            poll_seconds=settings.scheduler_poll_seconds,
        )
        if settings.scheduler
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await run_in_threadpool(scheduler.stop)
            engine.dispose()

    app = FastAPI(
        title="ssmbench",
        version=__version__,
        summary="Benchmark orchestration for state space models: sweeps, trials, leaderboard.",
        description=(
            "Submit sweeps (a YAML or JSON spec), follow their trials, cancel them, and read the "
            "leaderboard next to the published baselines. Writes need `Authorization: Bearer <token>` "
            "(`ssmbench token create`); reads are open unless `SSMBENCH_READ_AUTH=true`. Every error is "
            '`{"error": {"code", "message", "field"}}`.\n\n'
            "Anonymous reads (GET without a token, reads open) may be answered from this replica's "
            "memory: at most `SSMBENCH_READ_CACHE_SECONDS` old (1 s by default), and never older than a "
            "write made through this replica. They carry an `ETag`; `If-None-Match` with it answers "
            "304. Reads with a token always come from the database."
        ),
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their assets from a CDN: /openapi.json only
        redoc_url=None,
        redirect_slashes=False,  # one URL per resource; a trailing slash is a JSON 404, not a redirect
    )
    use_database(app, engine)
    metrics = ServiceMetrics(app.state.sessions)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.version = app.version
    app.state.scheduler = scheduler  # None on an API-only replica; /health reads it
    app.state.leaderboard_cache = BoardCache(settings.leaderboard_cache_seconds)
    app.state.settled_counts = SettledCounts()
    app.state.cluster_nodes = scheduler.nodes if scheduler and settings.check_resources else lambda: None

    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_pages(app)  # the read-only web pages at /, and their /static files

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    def prometheus_metrics() -> Response:
        """Sweeps submitted, trials by state, trial durations and request latency (Prometheus text)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Outermost last: metrics → NUL check → kept anonymous reads → token of a write → body deadline → body limit → gzip → routes.
    # A leaderboard page is ~100 KB of JSON, a trial's diagnostics ~10 MB. Level 6 (zlib's default):
    # Starlette's default 9 took 4.2 s on those 10 MB for 0.7% smaller output than 6's 0.7 s.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(BodyDeadlineMiddleware, seconds=settings.body_timeout_seconds)
    app.add_middleware(WriteAuthMiddleware)
    if settings.read_cache_seconds > 0:
        app.add_middleware(
            ReadCacheMiddleware, seconds=settings.read_cache_seconds, read_auth=settings.read_auth
        )
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)  # outermost: times the 413s too
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the SweepSpec schema the submit route's body refers to."""
    if app.openapi_schema is None:
        from orchestrator.spec import SweepSpec

        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        spec_schema = SweepSpec.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(spec_schema.pop("$defs", {}))
        schemas["SweepSpec"] = spec_schema
        # FastAPI drops every null from the document (exclude_none), the nulls of examples too, which
        # leaves examples without their required nullable fields: put the models' examples back.
        for name, model in vars(api_schemas).items():
            extra = getattr(model, "model_config", {}).get("json_schema_extra")
            if name in schemas and isinstance(extra, dict) and "examples" in extra:
                schemas[name]["examples"] = extra["examples"]
        app.openapi_schema = document
    return app.openapi_schema


__all__ = ["API_PREFIX", "ServiceSettings", "create_app"]
