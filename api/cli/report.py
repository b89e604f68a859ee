"""`ssmbench report SWEEP_ID… --out DIR [--db URL | --api URL]`: a sweep's page, figures and summary,
from the database or through the service's JSON API."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from .common import DatabaseOption, console, err_console, fail


def report_command(
    sweep_ids: Annotated[list[int], typer.Argument(metavar="SWEEP_ID", help="Sweeps to report together.")],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write index.html, figures/ and summary.json to.")
    ],
    db: DatabaseOption = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api", help="Read through the service at this URL (e.g. http://127.0.0.1:8000) instead."
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="API token for --api (default $SSMBENCH_TOKEN).")
    ] = None,
) -> None:
    """Write the report of one or more sweeps: DIR/index.html (spec, leaderboard with the published
    baselines, figures), DIR/figures/NAME.png and .svg, DIR/summary.json (mean ± std per
    configuration over seeds). Reads the database directly (--db, else the local one), or the
    service's JSON API with --api URL: the same report either way.

    Example: ssmbench report 3 4 --out report/ --api http://127.0.0.1:8000
    """
    from orchestrator.settings import Settings

    if db is not None and api is not None:
        fail("pass --db URL or --api URL, not both")
    _check_writable(out)
    if api is not None:
        _report_through_api(sweep_ids, out, api, token)
        return
    from orchestrator.report import build_report
    from orchestrator.report.data import ReportError

    from .reading import database_session

    try:
        with database_session(db or Settings().database_url, (ReportError,)) as session:
            index = build_report(session, sweep_ids, out, progress=_progress)
    except OSError as err:
        fail(f"cannot write the report to {out}: {err.strerror or err}")
    console.print(f"report written to {index}")


def _report_through_api(sweep_ids: list[int], out: Path, url: str, token: str | None) -> None:
    """The report from the service: its report data (`GET /reports/data`) and the diagnostic arrays of
    the trials the figures draw (`GET /trials/{id}/diagnostics`), drawn here as from the database."""
    from orchestrator.report import write_report
    from orchestrator.report.build import diagnostic_runs
    from orchestrator.report.transfer import arrays_from_diagnostics, report_data_from_json

    from .reading import connected

    with connected(url, token) as client:
        try:
            data = report_data_from_json(client.report_data(sweep_ids))
        except ValueError as err:  # a JSON body that is not report data: not an ssmbench service
            fail(f"{url} answered no report data ({err})", code=1)
        arrays = {}
        for run_id in diagnostic_runs(data):
            found = arrays_from_diagnostics(client.request("GET", f"/trials/{run_id}/diagnostics").json())
            if found is not None:
                arrays[run_id] = found
    try:
        index = write_report(data, out, arrays=arrays, progress=_progress)
    except OSError as err:
        fail(f"cannot write the report to {out}: {err.strerror or err}")
    console.print(f"report written to {index}")


def _progress(done: int, total: int, name: str) -> None:
    err_console.print(f"[{done + 1}/{total}] {name}", highlight=False, markup=False)


def _check_writable(out: Path) -> None:
    """Fail before any work when the report could not be written: `out` is a file, or its nearest
    existing ancestor does not accept new entries."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    existing = out if out.exists() else next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir():
        fail(f"--out {out}: {existing} is not a directory")
    # The report is staged beside `out` and moved in: both places must take new files.
    for place in {existing, out.absolute().parent} if out.absolute().parent.exists() else {existing}:
        try:
            with tempfile.TemporaryDirectory(dir=place):
                pass
        except OSError as err:
            fail(f"--out {out}: cannot write in {place}: {err.strerror or err}")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"--out {out}: {existing} is not writable")
