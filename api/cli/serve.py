"""`ssmbench serve`: the HTTP service (uvicorn), with the scheduler inside unless `--no-scheduler`."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import DatabaseOption, err_console, fail

if TYPE_CHECKING:
    from orchestrator.worker import Trainer

# Test-only: `module:function` of a fake trainer (the signature of `ssm.train.train`) that this
# service's scheduler uses instead of training — the end-to-end tests of the API set it so that a
# sweep finishes in seconds. The module must be importable by the service (PYTHONPATH); it is also
# pickled by value to the Ray workers. Not for users: results trained by a fake are stored as real.
FAKE_TRAINER_ENV = "SSMBENCH_FAKE_TRAINER"


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    no_scheduler: Annotated[
        bool,
        typer.Option(
            "--no-scheduler",
            help="Serve the API only (a replica); another replica or `ssmbench run` schedules.",
        ),
    ] = False,
    db: DatabaseOption = None,
    num_cpus: Annotated[
        int | None,
        typer.Option(
            "--num-cpus",
            min=1,
            help="CPUs of the local Ray the scheduler starts (default: all; $SSMBENCH_RAY_NUM_CPUS).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")] = "info",
) -> None:
    """Run the ssmbench service: REST under /api/v1, its OpenAPI at /openapi.json, Prometheus text at /metrics.

    The database must be migrated first (`ssmbench db upgrade`). Replicas may share one database:
    the scheduler lease lets one schedule at a time. Connection limits (SSMBENCH_MAX_CONNECTIONS,
    SSMBENCH_HEADER_TIMEOUT_SECONDS, SSMBENCH_BODY_TIMEOUT_SECONDS, SSMBENCH_KEEP_ALIVE_SECONDS,
    SSMBENCH_MAX_HEADER_BYTES) are settings; deploy/README.md says what a reverse proxy adds.

    Example: ssmbench db upgrade --db postgresql://u@db/ssm && ssmbench serve --db postgresql://u@db/ssm
    """
    import uvicorn

    from ..server import uvicorn_limits

    overrides: dict[str, Any] = {}
    if db is not None:
        overrides["database_url"] = db
    if no_scheduler:
        overrides["scheduler"] = False
    if num_cpus is not None:
        overrides["ray_num_cpus"] = num_cpus
    settings = service_settings(overrides)
    app = service_app(settings, train_fn=fake_trainer() if settings.scheduler else None)
    access_log = log_level == "debug"
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=access_log, **uvicorn_limits(settings)
    )


def fake_trainer() -> Trainer | None:
    """The trainer named by $SSMBENCH_FAKE_TRAINER (tests only), else None: `ssm.train.train`."""
    target = os.environ.get(FAKE_TRAINER_ENV)
    if not target:
        return None
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)
    except (ImportError, AttributeError, ValueError) as err:
        fail(f"{FAKE_TRAINER_ENV}={target}: {err}")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # Ray workers need not import it
    err_console.print(f"[yellow]test mode:[/] trials run the fake trainer {target}", highlight=False)
    return function


def service_app(settings, train_fn: Trainer | None = None, *, not_migrated_code: int = 1):
    """`create_app(settings, train_fn=...)`; an unmigrated database (exit `not_migrated_code`), a bad
    URL (exit 2) or a database that does not answer (exit 1) is one line. Shared by `serve` and `ui`."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from orchestrator.db import DatabaseNotMigrated
    from orchestrator.settings import masked_url

    from ..app import create_app

    try:
        return create_app(settings, train_fn=train_fn)
    except DatabaseNotMigrated as err:
        fail(str(err), code=not_migrated_code)
    except ArgumentError as err:
        fail(f"database URL {masked_url(settings.database_url)!r}: {err}")
    except SQLAlchemyError as err:
        fail(
            f"cannot reach the database {masked_url(settings.database_url)}: {str(err).splitlines()[0]}",
            code=1,
        )


def service_settings(overrides: dict[str, Any]):
    """The service's settings (environment, then `overrides`); a bad value is one line naming its
    SSMBENCH_ variable, exit 2. Shared by `serve` and `ui`."""
    from pydantic import ValidationError

    from ..deps import ServiceSettings

    try:
        return ServiceSettings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"SSMBENCH_{str(first['loc'][0]).upper()}: {first['msg']}")
