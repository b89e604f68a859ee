"""The service's client commands: `submit`, `status`, `cancel`, `trials`, `leaderboard`.

`submit` and `cancel` talk to `--url` (default $SSMBENCH_API_URL, else http://127.0.0.1:8000) with
`--token` (default $SSMBENCH_TOKEN). The read commands (`status`, `trials`, `leaderboard`) read
`--db URL` directly, else the service when `--url` or $SSMBENCH_API_URL is given, else the local
database (`api.cli.reading`). Each prints rich tables, or exactly one JSON document with `--json`. A server that does not answer: one line naming the URL, exit 1. An error
answer: the server's message (with the field at fault), exit 2 for bad input, 1 for a server error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    INITS,
    LAYERS,
    REPARAMS,
    JsonOption,
    choice_option,
    console,
    fail,
    print_json,
    trial_progress,
)
from .planning import DryRunOption, SetOption, data_problems, print_plan, read_sweep_spec, refuse
from .reading import DbOption, connected, reading

# The states' values (orchestrator.models' TrialState and SweepState), for the --state options.
TRIAL_STATES = ("pending", "running", "completed", "failed", "pruned", "diverged", "cancelled")
SWEEP_STATES = ("pending", "running", "completed", "cancelled", "failed")

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Service URL (default $SSMBENCH_API_URL or http://127.0.0.1:8000)."),
]
TokenOption = Annotated[str | None, typer.Option("--token", help="API token (default $SSMBENCH_TOKEN).")]


def submit_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep spec YAML.")],
    set_: SetOption = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Check that the sweep's task files are in this directory before submitting (one the "
            "cluster's workers share). Default: for a service on this machine, the data directory "
            "`run` uses ($SSMBENCH_DATA_DIR, else the per-user one); for a remote one, no check.",
        ),
    ] = None,
    dry_run: DryRunOption = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the sweep until it ends, then print its leaderboard.")
    ] = False,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between progress checks.")] = 1.0,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Submit a sweep to the service; with --wait, show its progress and then its leaderboard.

    The spec is checked here first, and its task files: in --data-dir, else, when the service runs on
    this machine, in the data directory `run` uses (a remote service's data is on its cluster, which
    this client cannot see). The service refuses a sweep whose trials fit on no node. Exit codes: 0 submitted (with --wait: completed); 1 the sweep did not
    complete, or the service failed; 2 bad input or a sweep that cannot run.

    Example: ssmbench submit sweep.yaml --set 'optim.lr=[1e-3, 3e-3]' --wait
    """
    from orchestrator.leaderboard import LeaderboardFilters
    from orchestrator.models import SweepState
    from orchestrator.settings import Settings

    from ..client import ApiError
    from .planning import submit_data_dir

    spec, body = read_sweep_spec(spec_path, set_ or [], Settings().max_trials_per_sweep)
    checked = submit_data_dir(url or Settings().api_url, data_dir)
    problems = data_problems(spec, checked) if checked is not None else []
    if dry_run:
        print_plan(spec, reused=None, problems=problems)
        raise typer.Exit(2 if problems else 0)
    if data_dir is None and problems:  # checked in this client's default: the service may read another
        refuse(
            problems,
            f"the sweep cannot run (task files checked in {checked}, the data directory `run` "
            "uses; pass --data-dir DIR if the service on this machine reads another)",
        )
    refuse(problems)
    with connected(url, token) as client:
        try:
            created = client.submit(body)
        except ApiError as err:
            if err.status in (400, 413, 415, 422):  # the spec's fault: say which file
                fail(f"{spec_path}: {err}")
            raise
        if not wait:
            if json_output:
                print_json(created.model_dump(mode="json"))
            else:
                console.print(
                    f"submitted sweep [bold]{created.id}[/] ({created.name}, {created.n_trials} trials); "
                    f"follow it with `ssmbench status {created.id}`"
                )
            return
        try:
            sweep = (
                client.wait(created.id, poll=poll)
                if json_output
                else _wait_with_progress(client, created, poll)
            )
        except KeyboardInterrupt:
            fail(
                f"stopped waiting; sweep {created.id} goes on in the service (`ssmbench status {created.id}`, "
                f"`ssmbench cancel {created.id}`)",
                code=130,
            )
        board = client.leaderboard(LeaderboardFilters(sweep_id=created.id))
        if json_output:
            print_json({"sweep": sweep.model_dump(mode="json"), "leaderboard": board.to_dict()})
        else:
            from .tables import leaderboard_table

            console.print(f"sweep {sweep.id} {sweep.state}" + (f": {sweep.error}" if sweep.error else ""))
            console.print(leaderboard_table(board))
        if sweep.state != SweepState.COMPLETED:
            raise typer.Exit(1)


def _wait_with_progress(client, created, poll: float):
    with trial_progress(created.name, created.n_trials) as show:
        return client.wait(created.id, poll=poll, on_progress=lambda sweep: show(sweep.trials_by_state))


def status_command(
    sweep_id: Annotated[
        int | None, typer.Argument(metavar="[ID]", help="A sweep id (default: list sweeps).")
    ] = None,
    state: Annotated[
        str | None, choice_option("--state", "List only sweeps in this state.", SWEEP_STATES)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many sweeps to list, newest first.")] = 50,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """One sweep's state and trial counts, or the list of sweeps.

    Example: ssmbench status 3 --db sqlite:///ssmbench.db
    """
    from .tables import sweep_table, sweeps_table

    with reading(db, url, token) as source:
        if sweep_id is not None:
            sweep = source.sweep(sweep_id)
            if json_output:
                print_json(sweep.model_dump(mode="json"))
            else:
                console.print(sweep_table(sweep))
            return
        page = source.sweeps(state=state, limit=limit)
    if json_output:
        print_json(page.model_dump(mode="json"))
    else:
        console.print(sweeps_table(page.items, page.total))


def cancel_command(
    sweep_id: Annotated[int, typer.Argument(metavar="ID", help="The sweep to cancel.")],
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Cancel a sweep you submitted: pending trials at once, running ones at their next epoch.

    Example: ssmbench cancel 3 --token $SSMBENCH_TOKEN
    """
    with connected(url, token) as client:
        result = client.cancel(sweep_id)
    if json_output:
        print_json(result.model_dump(mode="json"))
    else:
        console.print(
            f"sweep {result.id} {result.state}: {result.cancelled_trials} pending trial(s) cancelled"
        )


def trials_command(
    sweep_id: Annotated[int, typer.Argument(metavar="ID", help="The sweep whose trials to list.")],
    state: Annotated[str | None, choice_option("--state", "Only trials in this state.", TRIAL_STATES)] = None,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """A sweep's trials: state, attempts, configuration, test metric, time, and the error of failed ones.

    Example: ssmbench trials 3 --state failed
    """
    from .tables import trials_table

    with reading(db, url, token) as source:
        trials = list(source.all_trials(sweep_id, state=state))
    if json_output:
        print_json(
            {"sweep_id": sweep_id, "total": len(trials), "items": [t.model_dump(mode="json") for t in trials]}
        )
    else:
        title = f"Trials of sweep {sweep_id}" + (f" ({state})" if state else "") + f": {len(trials)}"
        console.print(trials_table(trials, title))


def leaderboard_command(
    task: Annotated[str | None, typer.Option("--task", help="Only this task.")] = None,
    sweep: Annotated[int | None, typer.Option("--sweep", help="Only this sweep's results.")] = None,
    layer: Annotated[str | None, choice_option("--layer", "Only this layer.", LAYERS)] = None,
    init: Annotated[str | None, choice_option("--init", "Only this initialization.", INITS)] = None,
    reparam: Annotated[
        str | None, choice_option("--reparam", "Only this reparameterization.", REPARAMS)
    ] = None,
    train_eigenvalues: Annotated[
        bool | None,
        typer.Option("--trained/--frozen", help="Only trained (or frozen) eigenvalues.", show_default=False),
    ] = None,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Show the published baselines.")
    ] = True,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """The leaderboard: the same table `ssmbench run` prints.

    Example: ssmbench leaderboard --sweep 3 --task listops --db sqlite:///ssmbench.db
    """
    from orchestrator.leaderboard import LeaderboardFilters

    from .tables import leaderboard_table

    filters = LeaderboardFilters(
        sweep_id=sweep,
        task=task,
        layer=layer,
        init=init,
        reparam=reparam,
        train_eigenvalues=train_eigenvalues,
        include_baselines=baselines,
    )
    with reading(db, url, token) as source:
        board = source.leaderboard(filters)
    if json_output:
        print_json(board.to_dict())
    else:
        console.print(leaderboard_table(board))
