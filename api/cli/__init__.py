"""The `ssmbench` command line: one module per command group, registered here."""

import typer

app = typer.Typer(
    name="ssmbench",
    help="Benchmark state space models (S4, S4D, S5, PTD) across initializations, "
    "parameterizations and training modes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Benchmark state space models (S4, S4D, S5, PTD) across initializations, parameterizations
    and training modes."""


def _register() -> None:
    # Each command module imports its heavy dependencies (torch, Ray, SQLAlchemy) inside the
    # command, so `ssmbench --help` and the client commands start fast.
    from .client_commands import (
        cancel_command,
        leaderboard_command,
        status_command,
        submit_command,
        trials_command,
    )
    from .data import data_app
    from .report import report_command
    from .run import db_app, run_command
    from .serve import serve_command
    from .token import token_app
    from .train import train_command

    app.command("train")(train_command)
    app.command("run")(run_command)
    app.command("serve")(serve_command)
    app.command("submit")(submit_command)
    app.command("status")(status_command)
    app.command("cancel")(cancel_command)
    app.command("trials")(trials_command)
    app.command("leaderboard")(leaderboard_command)
    app.command("report")(report_command)
    app.add_typer(token_app, name="token")
    app.add_typer(db_app, name="db")
    app.add_typer(data_app, name="data")


_register()
