"""The FastAPI service: `create_app(settings)` builds one instance.

    from api.app import create_app
    app = create_app()                      # settings from SSMBENCH_* (api.deps.ServiceSettings)

REST under /api/v1 (api/routes/), Prometheus text at /metrics, OpenAPI at /openapi.json and /docs.
The database must be migrated (`ssmbench db upgrade`): `create_app` refuses an unmigrated one with
`orchestrator.db.DatabaseNotMigrated`, whose message says so. With `settings.scheduler` (the
default) the app's lifespan runs the scheduler in a background thread — a loop of
`Scheduler.step()` — and stops it cleanly on shutdown; the database lease lets only one of several
replicas schedule at a time, the others stand by.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.db import make_engine, require_migrated, session_factory

from . import schemas as api_schemas
from .deps import API_PREFIX, ServiceSettings
from .errors import error_response, install_error_handlers
from .guards import BodyDeadlineMiddleware, RejectNulMiddleware, WriteAuthMiddleware
from .metrics import RequestMetricsMiddleware, ServiceMetrics
from .pages import install_pages
from .routes import ROUTERS
from .routes.leaderboard import BoardCache
from .schemas import ComponentHealth, SchedulerHealth

log = logging.getLogger("api")
CLUSTER_REFRESH_SECONDS = 5.0


def _version() -> str:
    try:
        return metadata.version("ssmbench")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- the scheduler inside the service -----------------------------------------------------------------


class SchedulerThread:
    """Runs `orchestrator.scheduler.Scheduler.step()` in a loop on a daemon thread.

    Ray is joined (or a local Ray started, with `settings.ray_num_cpus`) on the thread, so the API
    answers while Ray starts. A database error in a pass is logged and the next pass retries (every
    write is idempotent); `stop()` ends the loop, releases the lease and closes the scheduler.
    """

    def __init__(self, settings: ServiceSettings, train_fn: Callable[..., Any] | None = None):
        self.settings, self.train_fn = settings, train_fn
        self.state = "starting"
        self.last_step_at: datetime | None = None
        self.last_error: str | None = None
        self.ray_ok: bool | None = None
        self.ray_error: str | None = None
        self.cluster: dict[str, Any] | None = None
        self._cluster_checked = 0.0
        self.scheduler = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ssmbench-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from orchestrator.scheduler import Scheduler, connect_ray

        try:
            connect_ray(self.settings.ray_num_cpus)
            self._refresh_cluster()
            if self._stop.is_set():
                self._shutdown_ray()
                return
            self.scheduler = Scheduler(
                self.settings.database_url,
                self.settings,
                train_fn=self.train_fn,
                poll_seconds=self.settings.scheduler_poll_seconds,
            )
        except Exception as err:
            self.state, self.last_error = "error", f"{type(err).__name__}: {err}"
            log.error("the scheduler could not start: %s", self.last_error)
            self._shutdown_ray()
            return
        log.info("scheduler %s started", self.scheduler.identity)
        try:
            while not self._stop.is_set():
                self._step()
                self._stop.wait(self.settings.scheduler_poll_seconds)
        finally:
            try:
                self.scheduler.close()
            except Exception as err:  # the database went away; the lease expires by itself
                log.warning("closing the scheduler: %s", err)
            self.state = "stopped"
            self._shutdown_ray()

    @staticmethod
    def _shutdown_ray() -> None:
        """Stop the local Ray this service started (its agents outlive an exiting driver otherwise);
        a cluster joined through RAY_ADDRESS is only disconnected from."""
        import ray

        try:
            ray.shutdown()
        except Exception as err:
            log.warning("shutting Ray down: %s", err)

    def _step(self) -> None:
        if time.monotonic() - self._cluster_checked > CLUSTER_REFRESH_SECONDS:
            self._refresh_cluster()
        try:
            self.scheduler.step()
        except (OperationalError, DBAPIError) as err:
            self.last_error = f"database: {str(err).splitlines()[0]}"
            log.warning("database error in the scheduling loop, retrying: %s", self.last_error)
            return
        except Exception as err:  # a bug or a lost Ray: keep serving, keep trying, say so in /health
            self.last_error = f"{type(err).__name__}: {err}"
            log.error("scheduling pass failed: %s", "".join(traceback.format_exception(err)))
            self._refresh_cluster()
            return
        self.state = "active" if self.scheduler.holds_lease else "standby"
        self.last_step_at, self.last_error = datetime.now(UTC), None

    def _refresh_cluster(self) -> None:
        """What Ray offers now (nodes, CPUs, GPUs): for /health and the submit-time resource check."""
        from orchestrator.cluster import cluster_summary

        self._cluster_checked = time.monotonic()
        try:
            self.cluster, self.ray_ok = cluster_summary(), True
        except Exception as err:
            self.ray_ok, self.ray_error = False, f"{type(err).__name__}: {err}"

    def health(self) -> SchedulerHealth:
        scheduler = self.scheduler
        return SchedulerHealth(
            enabled=True,
            state=self.state,
            holds_lease=bool(scheduler and scheduler.holds_lease),
            in_flight=len(scheduler.in_flight) if scheduler else 0,
            last_step_at=self.last_step_at,
            last_error=self.last_error,
        )

    def ray_health(self) -> ComponentHealth:
        if self.ray_ok is None:
            return ComponentHealth(ok=False, detail="connecting")
        if not self.ray_ok:
            return ComponentHealth(ok=False, detail=f"not reachable: {self.ray_error}")
        cluster = self.cluster or {}
        return ComponentHealth(
            ok=True,
            detail=f"{len(cluster.get('nodes', []))} node(s), {cluster.get('cpus_total', 0):g} CPU "
            f"({cluster.get('cpus_in_use', 0):g} in use), {cluster.get('gpus_total', 0):g} GPU",
        )

    def nodes(self) -> list[dict[str, Any]] | None:
        """The cluster's nodes as last seen (None until Ray answered): for the resource check."""
        return None if not self.ray_ok or self.cluster is None else self.cluster["nodes"]


# --- request body limit ---------------------------------------------------------------------------------


class BodyLimitMiddleware:
    """413 for a body over `limit` bytes: at once by its Content-Length, else while reading it (a
    chunked body without a length is counted as it arrives). The body is buffered (it is at most
    `limit` bytes) and replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
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


def create_app(
    settings: ServiceSettings | None = None, *, train_fn: Callable[..., Any] | None = None
) -> FastAPI:
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
    sessions = session_factory(engine)
    runner = SchedulerThread(settings, train_fn) if settings.scheduler else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if runner is not None:
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                await run_in_threadpool(runner.stop)
            engine.dispose()

    app = FastAPI(
        title="ssmbench",
        version=_version(),
        summary="Benchmark orchestration for state space models: sweeps, trials, leaderboard.",
        description=(
            "Submit sweeps (a YAML or JSON spec), follow their trials, cancel them, and read the "
            "leaderboard next to the published baselines. Writes need `Authorization: Bearer <token>` "
            "(`ssmbench token create`); reads are open unless `SSMBENCH_READ_AUTH=true`. Every error is "
            '`{"error": {"code", "message", "field"}}`.'
        ),
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their assets from a CDN: /openapi.json only
        redoc_url=None,
        redirect_slashes=False,  # one URL per resource; a trailing slash is a JSON 404, not a redirect
    )
    metrics = ServiceMetrics(sessions)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.metrics = metrics
    app.state.version = app.version
    app.state.scheduler = runner
    app.state.leaderboard_cache = BoardCache(settings.leaderboard_cache_seconds)
    app.state.scheduler_health = runner.health if runner else _scheduler_disabled
    app.state.ray_health = runner.ray_health if runner else _ray_unused
    app.state.cluster_nodes = runner.nodes if runner and settings.check_resources else lambda: None

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

    # Outermost last: metrics → NUL check → token of a write → body deadline → body limit → gzip → routes.
    app.add_middleware(GZipMiddleware, minimum_size=1024)  # a leaderboard page is ~100 KB of JSON
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(BodyDeadlineMiddleware, seconds=settings.body_timeout_seconds)
    app.add_middleware(WriteAuthMiddleware)
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)  # outermost: times the 413s too
    app.openapi = lambda: _openapi(app)
    return app


def _scheduler_disabled() -> SchedulerHealth:
    return SchedulerHealth(
        enabled=False, state="disabled", holds_lease=False, in_flight=0, last_step_at=None, last_error=None
    )


def _ray_unused() -> ComponentHealth:
    return ComponentHealth(ok=True, detail="not used (API-only replica: the scheduler is off)")


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
