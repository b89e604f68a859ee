"""`ssmbench study list|show|run`: the built-in studies of the four papers (orchestrator.studies)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DatabaseOption, console, fail, json_option, print_json

study_app = typer.Typer(
    help="Built-in studies: each paper's claims reproduced, measured and drawn.", no_args_is_help=True
)

SCALE_HELP = (
    "quick: synthetic/small tasks, minutes on 2 CPUs; full: the papers' LRA setups (GPUs); smoke: seconds."
)


def _study(name: str):
    from orchestrator.studies import UnknownStudyError, get_study

    try:
        return get_study(name)
    except UnknownStudyError as err:
        fail(str(err))


def _scale(scale: str) -> str:
    from orchestrator.studies import SCALES

    if scale not in SCALES:
        fail(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    return scale


@study_app.command("list")
def list_command(
    json_output: Annotated[bool, json_option("the studies as JSON")] = False,
) -> None:
    """The studies: name, paper, claims and time at each scale."""
    from rich.table import Table

    from orchestrator.studies import STUDY_NAMES, get_study

    studies = [get_study(name) for name in STUDY_NAMES]
    if json_output:
        print_json(
            [
                {
                    "name": s.name,
                    "paper": s.paper,
                    "summary": s.summary,
                    "claims": [c.id for c in s.claims],
                    "time": s.time_per_scale,
                }
                for s in studies
            ]
        )
        return
    table = Table(title="Built-in studies")
    for column in ("name", "paper", "claims", "quick", "full"):
        table.add_column(column)
    for s in studies:
        table.add_row(
            s.name,
            s.paper,
            "\n".join(c.id for c in s.claims),
            s.time_per_scale.get("quick", "?"),
            s.time_per_scale.get("full", "?"),
        )
    console.print(table)


@study_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Study name (ssmbench study list).")],
    scale: Annotated[str, typer.Option("--scale", help=SCALE_HELP)] = "quick",
) -> None:
    """Print the study's sweep specs (YAML) at a scale, and its claims with their rules."""
    study = _study(name)
    for part, text in study.spec_texts(_scale(scale)).items():
        print(f"# --- {study.name} / {scale} / {part}.yaml")
        print(text.rstrip())
        print()
    print("# claims (rules fixed before any run):")
    for claim in study.claims:
        print(f"#  {claim.id}: {claim.statement}")
        print(f"#    quantity: {claim.quantity}")
        print(f"#    rule: {claim.rule.text}")


@study_app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="Study name (ssmbench study list).")],
    scale: Annotated[str, typer.Option("--scale", help=SCALE_HELP)] = "quick",
    db: DatabaseOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report directory (default ./study-NAME-SCALE).")
    ] = None,
    json_output: Annotated[bool, json_option("only the run and its claims as JSON")] = False,
) -> None:
    """Run a study: its sweeps through the orchestrator (finished trials are reused), then its report
    (index.html, figures/, summary.json with a verdict per claim)."""
    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator.settings import Settings, masked_url
    from orchestrator.studies.runner import run_study

    from .common import trial_progress
    from .run import _connect_ray, _first_line

    study = _study(name)
    scale = _scale(scale)
    out_dir = out or Path(f"study-{study.name}-{scale}")
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file, not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".ssmbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        fail(f"cannot write to --out {out_dir}: {err.strerror or err}")
    settings = Settings()
    url = db or settings.database_url
    _connect_ray()
    try:
        if json_output:
            run = run_study(study, scale, url, out_dir, settings=settings)
        else:
            planned = sum(spec.trial_budget() for spec in study.specs(scale).values())
            with trial_progress(f"study {study.name} ({scale})", planned) as on_progress:
                run = run_study(
                    study,
                    scale,
                    url,
                    out_dir,
                    settings=settings,
                    progress=lambda _n, counts, _p: on_progress(counts),
                )
    except SQLAlchemyError as err:
        fail(f"cannot use the database {masked_url(url)}: {_first_line(err)}", code=1)
    if json_output:
        print_json(run.to_dict())
        return
    _print_claims(run)


def _print_claims(run) -> None:
    from rich.table import Table

    table = Table(title=f"study {run.study} ({run.scale}): {run.planned} trials, {run.reused} reused")
    for column in ("claim", "value", "95% interval", "n", "verdict"):
        table.add_column(column)
    colours = {"holds": "green", "fails": "red", "inconclusive": "yellow"}
    for claim in run.claims:
        ci = claim["ci"]
        table.add_row(
            claim["id"],
            "—" if claim["value"] is None else f"{claim['value']:.4g}",
            "—" if not ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]",
            str(claim["n"]),
            f"[{colours[claim['verdict']]}]{claim['verdict']}[/]",
        )
    console.print(table)
    console.print(f"report: {run.out_dir / 'index.html'}  ({run.seconds.get('total', 0):.0f} s)")
