"""`ssmbench export SWEEP_ID… --what results|epochs|diagnostics --format csv|parquet|jsonl --out FILE`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .common import DatabaseOption, console, fail


def export_command(
    sweep_ids: Annotated[list[int], typer.Argument(metavar="SWEEP_ID", help="Sweeps to export together.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (replaced atomically).")],
    what: Annotated[
        str,
        typer.Option(
            "--what",
            help="results: a row per trial; epochs: a row per epoch; diagnostics: a row per trial, "
            "snapshot (init, best, end) and layer.",
        ),
    ] = "results",
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or jsonl.")] = "csv",
    db: DatabaseOption = None,
) -> None:
    """Write the completed trials of one or more sweeps as one flat table, with the configuration as
    dotted columns (model.init, optim.lr, task.name, …), ready for pandas.

    Example: ssmbench export 3 --what epochs --format parquet --out epochs.parquet
    """
    from orchestrator.export import FORMATS, WHATS

    if what not in WHATS:
        fail(f"unknown --what {what!r}: expected one of {', '.join(WHATS)}")
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    _check_writable(out)

    from orchestrator.export import ExportError, export_rows, write_table
    from orchestrator.report.data import ReportError
    from orchestrator.settings import Settings

    from .reading import database_session

    try:
        with database_session(db or Settings().database_url, (ReportError, ExportError)) as session:
            rows = export_rows(session, sweep_ids, what)
            write_table(rows, out, fmt)
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
    console.print(f"{len(rows)} row(s) written to {out}", highlight=False, soft_wrap=True)


def _check_writable(out: Path) -> None:
    """Fail before reading anything when `out` cannot be written: a directory, or a parent that does
    not exist or takes no new file (the table is staged beside `out`, then renamed)."""
    if out.is_dir():
        fail(f"--out {out} is a directory")
    parent = out.absolute().parent
    if not parent.is_dir():
        fail(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"--out {out}: {parent} is not writable")
