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
    from .data import data_app
    from .run import db_app, run_command
    from .train import train_command

    app.command("train")(train_command)
    app.command("run")(run_command)
    app.add_typer(db_app, name="db")
    app.add_typer(data_app, name="data")


_register()
