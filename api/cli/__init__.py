"""The `ssmbench` command line: one module per command group, registered here.

The console script runs `console_script()`: the CLI needs the `service` extra, and without it the
user gets one line naming the install command instead of a traceback.
"""

import os
import sys
from typing import NoReturn

# Import names of the `service` extra's distributions, its `tasks` extra included (pyproject.toml;
# tests/test_packaging.py keeps the two in step).
SERVICE_MODULES = frozenset(
    {
        "alembic",
        "fastapi",
        "httpx",
        "jinja2",
        "matplotlib",
        "optuna",
        "PIL",
        "prometheus_client",
        "psycopg",
        "pydantic_settings",
        "ray",
        "rich",
        "scipy",
        "sklearn",
        "sqlalchemy",
        "starlette",
        "typer",
        "uvicorn",
        "yaml",
    }
)
SERVICE_INSTALL = "pip install 'ssmbench[service]'"


def missing_service_message(error: ModuleNotFoundError) -> str | None:
    """The one-line message for a service dependency that is not installed; None when the missing
    module is not one of them (a real bug, whose traceback should show)."""
    module = (error.name or "").split(".")[0]
    if module not in SERVICE_MODULES:
        return None
    return f"error: ssmbench needs the service dependencies ({module} is not installed): {SERVICE_INSTALL}"


def _exit_missing(error: ModuleNotFoundError) -> NoReturn:
    message = missing_service_message(error)
    if message is None:
        raise error
    print(message, file=sys.stderr)
    raise SystemExit(1)  # 1: not the input's fault (api/cli/common.py's `fail`)


try:
    import typer
except ModuleNotFoundError as missing:
    _exit_missing(missing)


class _OneLineErrors(typer.Typer):
    """Every failure a command did not foresee is one line on stderr and exit code 1, not a
    traceback (its password masked); `SSMBENCH_DEBUG=1` shows the traceback instead."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as err:
            if os.environ.get("SSMBENCH_DEBUG"):
                raise
            if isinstance(err, ModuleNotFoundError) and missing_service_message(err):
                _exit_missing(err)
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


# `-h` as well as `--help`, on every command and group (typer passes them down to sub-apps).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
# What the command help of every command says about exit codes (README: "Exit codes").
EXIT_CODES = "Exit codes: 0 success, 1 a failure that is not the input's fault, 2 bad input."

app = _OneLineErrors(
    name="ssmbench",
    help="Benchmark state space models (S4, S4D, S5, PTD) across initializations, "
    "parameterizations and training modes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings=CONTEXT_SETTINGS,
)


def _print_version(value: bool) -> None:
    if value:
        from ssm import __version__

        print(f"ssmbench {__version__}")
        raise typer.Exit()


@app.callback(epilog="Example: ssmbench run examples/quickstart.yaml && ssmbench leaderboard")
def main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Say more: Ray's and Optuna's own log lines too."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Say less: no progress, only results and errors."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Benchmark state space models (S4, S4D, S5, PTD) across initializations, parameterizations
    and training modes. Progress and notes go to stderr, results to stdout."""
    from .common import set_verbosity

    set_verbosity(verbose, quiet)


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
    from .export import export_command
    from .report import report_command
    from .run import db_app, run_command
    from .serve import serve_command
    from .study import study_app
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
    app.command("report")(report_command)
    app.command("ui")(ui_command)
    app.command("export")(export_command)
    app.add_typer(token_app, name="token")
    app.add_typer(db_app, name="db")
    app.add_typer(data_app, name="data")
    app.add_typer(study_app, name="study")


def console_script() -> None:
    """The `ssmbench` console script: the typer app, with a missing service dependency (imported
    inside a command) reported in one line."""
    try:
        app()
    except ModuleNotFoundError as error:
        _exit_missing(error)


try:
    _register()
except ModuleNotFoundError as missing:
    _exit_missing(missing)
