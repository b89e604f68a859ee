"""The `ssmbench` command line: one module per command group, registered here."""

import os
import sys

import typer


class _OneLineErrors(typer.Typer):
    """Every failure a command did not foresee is one line on stderr and exit code 1, not a
    traceback (its password masked); `SSMBENCH_DEBUG=1` shows the traceback instead."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as err:
            if os.environ.get("SSMBENCH_DEBUG"):
                raise
            from orchestrator.settings import masked_text

            from .common import err_console

            lines = str(err).strip().splitlines()
            message = masked_text(f"{type(err).__name__}: {lines[0] if lines else ''}")
            err_console.print(
                f"[bold red]error:[/] {message} (SSMBENCH_DEBUG=1 shows the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(1)


app = _OneLineErrors(
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
    from .run import db_app, run_command
    from .serve import serve_command
    from .token import token_app
    from .train import train_command
    from .ui import ui_command

    app.command("train")(train_command)
    app.command("run")(run_command)
    app.command("serve")(serve_command)
    app.command("submit")(submit_command)
    app.command("status")(status_command)
    app.command("cancel")(cancel_command)
    app.command("trials")(trials_command)
    app.command("leaderboard")(leaderboard_command)
    app.command("ui")(ui_command)
    app.add_typer(token_app, name="token")
    app.add_typer(db_app, name="db")
    app.add_typer(data_app, name="data")


_register()
