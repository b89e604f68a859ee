"""What every command shares: one-line errors with exit code 2, YAML specs with `--set` overrides,
progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from orchestrator.errors import key_path

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit (2: bad input, 1: a failure that is not the input's fault)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def validation_message(err: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as `key.path: message`."""
    first = err.errors()[0]
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{prefix}{key_path(first['loc'])}: {first['msg']}{extra}"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["optim.lr=1e-3", "model.init=lin"]` → nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            fail(f"--set expects key=value, got {item!r}")
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                fail(f"--set {key}: {part} is both a value and a section")
        node[leaf] = yaml.safe_load(raw)
    return nested


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping; every problem becomes a one-line error."""
    try:
        text = path.read_text()
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror or err}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        fail(f"{path} is not valid YAML{where}: {getattr(err, 'problem', err)}")
    if not isinstance(data, dict):
        fail(f"{path} must contain a mapping at the top level, got {type(data).__name__}")
    return data


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout (for --json)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


class ProgressUpdate(Protocol):
    def __call__(self, done: int, *, total: int | None = None, status: str = "") -> None: ...


@contextmanager
def progress_bar(
    description: str,
    total: int,
    *,
    out: Console = console,
    clock: Literal["elapsed", "remaining"] = "elapsed",
    transient: bool = False,
    terminal_only: bool = False,
) -> Iterator[ProgressUpdate]:
    """A progress bar on `out` — description, bar, done/total, time, a status text — that yields
    `update(done, total=None, status="")`. `terminal_only`: draw nothing when `out` is not a terminal
    (output that a script reads stays clean); `transient`: the bar disappears when done."""
    if terminal_only and not out.is_terminal:
        yield lambda done, *, total=None, status="": None
        return
    time_column = TimeElapsedColumn() if clock == "elapsed" else TimeRemainingColumn()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        time_column,
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=out, transient=transient) as progress:
        task = progress.add_task(description, total=total, status="")

        def update(done: int, *, total: int | None = None, status: str = "") -> None:
            progress.update(task, completed=done, total=total, status=status)

        yield update


@contextmanager
def trial_progress(name: str, planned: int) -> Iterator[Callable[[Mapping[str, int]], None]]:
    """A progress bar over a sweep's trials that yields `show(counts)`, counts being trials by state:
    done is the trials in a final state; the total grows past `planned` if more trials are stored."""
    from orchestrator.models import FINAL_TRIAL_STATES

    with progress_bar(name, planned) as update:

        def show(counts: Mapping[str, int]) -> None:
            done = sum(n for state, n in counts.items() if state in FINAL_TRIAL_STATES)
            shown = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
            update(done, total=max(planned, sum(counts.values())), status=shown)

        yield show
