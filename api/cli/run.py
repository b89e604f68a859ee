"""`ssmbench run SPEC` (the embedded default: SQLite + a local Ray, no service) and `ssmbench db`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DatabaseOption,
    TaskDataOption,
    console,
    err_console,
    fail,
    json_option,
    library_log_level,
    note,
    print_json,
    trial_progress,
)
from .planning import (
    DryRunOption,
    SetOption,
    data_problems,
    print_plan,
    read_sweep_spec,
    refuse,
    resource_problems,
    reusable_results,
    this_machine,
)

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


def _database_url(db: str | None) -> str:
    from orchestrator.settings import Settings

    return db or Settings().database_url


def run_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep spec YAML.")],
    set_: SetOption = None,
    db: DatabaseOption = None,
    data_dir: TaskDataOption = None,
    dry_run: DryRunOption = False,
    json_output: Annotated[bool, json_option("only the leaderboard as JSON")] = False,
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

    Before anything runs, the sweep is checked: the files of its LRA tasks on disk, and a node with
    the CPUs and GPUs one trial asks for; a sweep that cannot run is refused with the list of
    problems. Afterwards, failed and diverged trials are summed up by reason, with the fix when it
    is known, and the last lines say where the results are and how to see them again. The embedded
    mode migrates its database itself; `ssmbench serve` refuses an unmigrated one.

    Exit codes: 0 every trial completed (or was pruned); 1 a trial failed or diverged, or the sweep
    or its database could not be used; 2 bad input, or a sweep that cannot run here (nothing ran).

    Example: ssmbench run examples/quickstart.yaml --set optim.epochs=1 --set 'model.init=[lin, inv]'
    """
    from orchestrator.settings import Settings

    settings = Settings()
    url = _database_url(db)
    spec, _ = read_sweep_spec(spec_path, set_ or [], settings.max_trials_per_sweep)
    data_dir = data_dir or settings.data_dir
    problems = data_problems(spec, data_dir)
    from rich.markup import escape

    from orchestrator.tracking import TrackingError, tracking_for_local_run

    try:
        spec.tracking = tracking_for_local_run(
            spec.tracking, mlflow_uri=mlflow_uri, tensorboard_dir=tensorboard_dir
        )
    except TrackingError as err:
        fail(escape(str(err)))  # rich markup would eat "[tracking]"

    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator.settings import masked_url

    from .common import quiet_libraries

    try:
        if os.environ.get("RAY_ADDRESS"):  # the cluster's nodes; else this machine's, before Ray starts
            _connect_ray()
            problems += resource_problems(spec)
        else:
            problems += resource_problems(spec, this_machine())
        if dry_run:
            print_plan(spec, reused=reusable_results(url, spec), problems=problems)
            raise typer.Exit(2 if problems else 0)
        refuse(problems)

        from orchestrator import store
        from orchestrator.db import make_engine, session_factory, transaction, upgrade
        from orchestrator.models import TrialState
        from orchestrator.scheduler import Scheduler

        from .serve import fake_trainer

        _connect_ray()
        quiet_libraries()
        upgrade(url)
        sessions = session_factory(make_engine(url))
        with transaction(sessions) as s:
            sweep_id = store.create_sweep(s, spec).id
            reused = store.state_counts(s, sweep_id).get(TrialState.COMPLETED, 0)
        run_settings = settings.model_copy(update={"database_url": url, "data_dir": data_dir})
        scheduler = Scheduler(url, run_settings, train_fn=fake_trainer())
        try:
            if reused:
                note(f"{reused} trial(s) reuse results already in the database")
            with trial_progress(spec.name, spec.trial_budget()) as on_progress:
                scheduler.run([sweep_id], on_progress=on_progress)
        finally:
            scheduler.close()
        show_leaderboard(sessions, sweep_id, json_output)
        unsuccessful = report_outcome(sessions, sweep_id)
        where_results_are(url, sweep_id, explicit_db=db is not None)
    except SQLAlchemyError as err:  # unreachable server, bad URL, lost connection: one line
        fail(f"cannot use the database {masked_url(url)}: {_first_line(err)}", code=1)
    if unsuccessful:
        raise typer.Exit(1)


def report_outcome(sessions, sweep_id: int) -> bool:
    """Print (stderr) the sweep's failed and diverged trials grouped by reason, and its own error if
    it failed; True when anything did not succeed."""
    from rich.markup import escape

    from orchestrator.models import Sweep, SweepState
    from orchestrator.queries import list_trials

    from ..schemas import TrialSummary
    from .outcome import failure_groups, failure_lines

    with sessions() as s:
        sweep = s.get(Sweep, sweep_id)
        state, error = sweep.state, sweep.error
        trials, total = list_trials(s, sweep_id, limit=None)
        summaries = [TrialSummary.model_validate(t, from_attributes=True) for t in trials]
    groups = failure_groups(summaries)
    for line in failure_lines(groups, total):
        err_console.print(f"[bold red]failed:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if state != SweepState.COMPLETED:
        reason = f": {error}" if error else ""
        err_console.print(
            f"[bold red]sweep {sweep_id} {state}[/]{escape(reason)}", highlight=False, soft_wrap=True
        )
    return bool(groups) or state != SweepState.COMPLETED


def where_results_are(url: str, sweep_id: int, *, explicit_db: bool) -> None:
    """The last lines of a run (stderr): the database (password masked) and the commands that show
    the results again — with `--db` when the run was given one (else they read the same default)."""
    from orchestrator.settings import masked_url

    shown = masked_url(url)
    db = f" --db '{shown}'" if explicit_db else ""
    note(f"results: sweep {sweep_id} in {shown}")
    note(
        f"see them again: ssmbench leaderboard --sweep {sweep_id}{db} · ssmbench trials {sweep_id}{db} "
        f"· ssmbench status {sweep_id}{db}"
    )


def _connect_ray() -> None:
    """`connect_ray()`, failing in one line (RAY_ADDRESS unreachable, Ray unable to start)."""
    from orchestrator.cluster import connect_ray

    try:
        connect_ray(logging_level=library_log_level())
    except Exception as err:  # Ray raises ConnectionError, RuntimeError, TimeoutError, …
        where = f" at RAY_ADDRESS={os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") else ""
        fail(f"cannot start or join Ray{where}: {_first_line(err)}", code=1)


def _first_line(err: BaseException) -> str:
    from orchestrator.settings import masked_text

    lines = str(err).strip().splitlines()
    return masked_text(f"{type(err).__name__}: {lines[0] if lines else ''}")


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
    db: DatabaseOption = None,
) -> None:
    """Create or migrate the database to the current schema.

    Example: ssmbench db upgrade --db postgresql://ssm@localhost/ssmbench
    """
    from orchestrator.db import head_revision, upgrade
    from orchestrator.settings import masked_url

    url = _database_url(db)
    try:
        upgrade(url)
    except Exception as err:  # unreachable server, bad URL, permissions: one line, not a traceback
        fail(f"cannot upgrade {masked_url(url)}: {_first_line(err)}", code=1)
    console.print(f"database at revision {head_revision()}")
