"""`ssmbench run SPEC` (the embedded default: SQLite + a local Ray, no service) and `ssmbench db`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import console, fail, print_json, trial_progress

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


def _database_url(db: str | None) -> str:
    from orchestrator.settings import Settings

    return db or Settings().database_url


def run_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep spec YAML.")],
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL (default $SSMBENCH_DATABASE_URL or a SQLite file in the user data dir).",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print only the leaderboard as JSON.")] = False,
    mlflow_uri: Annotated[
        str | None,
        typer.Option("--mlflow-uri", help="Log each trial as an MLflow run there (spec: tracking.mlflow)."),
    ] = None,
    tensorboard_dir: Annotated[
        str | None,
        typer.Option(
            "--tensorboard-dir", help="Write TensorBoard runs below it (spec: tracking.tensorboard)."
        ),
    ] = None,
) -> None:
    """Run a sweep here and now: SQLite + a local Ray (or RAY_ADDRESS), then print the leaderboard.

    The embedded mode migrates its database itself; `ssmbench serve` refuses an unmigrated one.
    """
    from orchestrator.settings import Settings
    from orchestrator.spec import SpecError, parse_spec

    settings = Settings()
    url = _database_url(db)
    try:
        text = spec_path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {spec_path}: {getattr(err, 'strerror', None) or err}")
    try:
        spec = parse_spec(text, "application/yaml", max_trials=settings.max_trials_per_sweep)
    except SpecError as err:
        fail(f"{spec_path}: {err}")
    from rich.markup import escape

    from orchestrator.tracking import TrackingError, tracking_for_local_run

    try:
        spec.tracking = tracking_for_local_run(
            spec.tracking, mlflow_uri=mlflow_uri, tensorboard_dir=tensorboard_dir
        )
    except TrackingError as err:
        fail(escape(str(err)))  # rich markup would eat "[tracking]"

    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator import store
    from orchestrator.db import make_engine, session_factory, transaction, upgrade
    from orchestrator.models import TrialState
    from orchestrator.scheduler import Scheduler
    from orchestrator.settings import masked_url

    try:
        upgrade(url)
        sessions = session_factory(make_engine(url))
        with transaction(sessions) as s:
            sweep_id = store.create_sweep(s, spec).id
            reused = store.state_counts(s, sweep_id).get(TrialState.COMPLETED, 0)
        _connect_ray()
        scheduler = Scheduler(url, settings.model_copy(update={"database_url": url}))
        try:
            if json_output:
                scheduler.run([sweep_id])
            else:
                if reused:
                    console.print(f"{reused} trial(s) reuse results already in the database")
                _run_with_progress(scheduler, sweep_id, spec.name, spec.trial_budget())
        finally:
            scheduler.close()
        show_leaderboard(sessions, sweep_id, json_output)
    except SQLAlchemyError as err:  # unreachable server, bad URL, lost connection: one line
        fail(f"cannot use the database {masked_url(url)}: {_first_line(err)}", code=1)


def _connect_ray() -> None:
    """`connect_ray()`, failing in one line (RAY_ADDRESS unreachable, Ray unable to start)."""
    import os

    from orchestrator.cluster import connect_ray

    try:
        connect_ray()
    except Exception as err:  # Ray raises ConnectionError, RuntimeError, TimeoutError, …
        where = f" at RAY_ADDRESS={os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") else ""
        fail(f"cannot start or join Ray{where}: {_first_line(err)}", code=1)


def _first_line(err: BaseException) -> str:
    from orchestrator.settings import masked_text

    lines = str(err).strip().splitlines()
    return masked_text(f"{type(err).__name__}: {lines[0] if lines else ''}")


def _run_with_progress(scheduler, sweep_id: int, name: str, total: int) -> None:
    with trial_progress(name, total) as on_progress:
        scheduler.run([sweep_id], on_progress=on_progress)


def show_leaderboard(sessions, sweep_id: int, json_output: bool) -> None:
    from orchestrator.leaderboard import leaderboard

    from .tables import leaderboard_table

    with sessions() as s:
        board = leaderboard(s, sweep_id=sweep_id)
    if json_output:
        print_json(board.to_dict())
    else:
        console.print(leaderboard_table(board))


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default $SSMBENCH_DATABASE_URL).")
    ] = None,
) -> None:
    """Create or migrate the database to the current schema."""
    from orchestrator.db import head_revision, upgrade
    from orchestrator.settings import masked_url

    url = _database_url(db)
    try:
        upgrade(url)
    except Exception as err:  # unreachable server, bad URL, permissions: one line, not a traceback
        fail(f"cannot upgrade {masked_url(url)}: {_first_line(err)}", code=1)
    console.print(f"database at revision {head_revision()}")
