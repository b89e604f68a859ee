"""What every command shares: one-line errors with exit code 2, YAML specs with `--set` overrides,
how much is said (`-v`/`-q`), and progress — a bar on a terminal, plain lines otherwise, always on
stderr (results go to stdout)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Protocol

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

# Plain progress lines (output not on a terminal): at most one per this many seconds.
PLAIN_PROGRESS_SECONDS = 10.0


class Verbosity:
    """How much the commands say, set once by the app's `-v`/`-q`: `verbose` shows Ray's and Optuna's
    own log lines; `quiet` hides progress and notes (results and errors still print)."""

    verbose: bool = False
    quiet: bool = False


def set_verbosity(verbose: bool, quiet: bool) -> None:
    Verbosity.verbose, Verbosity.quiet = verbose, quiet and not verbose


def library_log_level() -> int:
    """The level for Ray's and Optuna's loggers: theirs (INFO) with -v, else errors only."""
    return logging.INFO if Verbosity.verbose else logging.ERROR


def quiet_libraries() -> None:
    """Hide Optuna's own log lines ("Using an existing study", …) unless -v. Call after importing the
    scheduler: Optuna sets its level when first imported. Ray's level is `connect_ray`'s argument."""
    import optuna

    optuna.logging.set_verbosity(library_log_level())
    logging.getLogger("ray").setLevel(library_log_level())


def note(message: str) -> None:
    """A remark for the human (not a result): stderr, unless -q."""
    if not Verbosity.quiet:
        err_console.print(message, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit (2: bad input, 1: a failure that is not the input's fault)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def validation_message(err: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as `key.path: message`."""
    first = err.errors()[0]
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{prefix}{key_path(first['loc'])}: {first['msg']}{extra}"


def read_yaml(text: str) -> Any:
    """YAML as every command reads it: the safe loader, with `1e-3` a float
    (`orchestrator.spec.SpecLoader`)."""
    from orchestrator.spec import SpecLoader

    return yaml.load(text, Loader=SpecLoader)  # SpecLoader is a SafeLoader


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["optim.lr=1e-3", "model.init=[lin, inv]"]` → nested dict; values are parsed as YAML
    (`1e-3` a float, `[a, b]` a list: in a sweep spec, a grid axis)."""
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
        try:
            node[leaf] = read_yaml(raw)
        except yaml.YAMLError as err:
            fail(f"--set {key}: the value is not valid YAML: {getattr(err, 'problem', err)}")
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
        data = read_yaml(text)
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


class PlainProgress:
    """Progress as plain lines on `out` (a log file, CI): a line when `done` changes, at most one per
    `interval` seconds, and the last state when closed — so a batch job's log shows the work move."""

    def __init__(
        self,
        description: str,
        total: int,
        out: Console,
        *,
        interval: float = PLAIN_PROGRESS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.description, self.total, self.out = description, total, out
        self.interval, self.clock = interval, clock
        self.started = clock()
        self.shown_done: int | None = None
        self.shown_at = -float("inf")
        self.latest: tuple[int, str] | None = None

    def update(self, done: int, *, total: int | None = None, status: str = "") -> None:
        if total is not None:
            self.total = total
        self.latest = (done, status)
        if done != self.shown_done and self.clock() - self.shown_at >= self.interval:
            self._show()

    def close(self) -> None:
        if self.latest is not None and self.latest[0] != self.shown_done:
            self._show()

    def _show(self) -> None:
        done, status = self.latest
        now = self.clock()
        self.shown_done, self.shown_at = done, now
        line = f"{self.description}: {done}/{self.total} done" + (f"  {status}" if status else "")
        self.out.print(f"{line}  ({now - self.started:.0f} s)", highlight=False, soft_wrap=True, markup=False)


@contextmanager
def progress_bar(
    description: str,
    total: int,
    *,
    out: Console = err_console,
    clock: Literal["elapsed", "remaining"] = "elapsed",
    transient: bool = False,
    terminal_only: bool = False,
) -> Iterator[ProgressUpdate]:
    """Progress on `out` (stderr) that yields `update(done, total=None, status="")`: on a terminal a
    bar — description, bar, done/total, time, a status text —, else plain lines (`PlainProgress`);
    nothing with -q. `terminal_only`: nothing when `out` is not a terminal either; `transient`: the
    bar disappears when done."""
    if Verbosity.quiet or (terminal_only and not out.is_terminal):
        yield lambda done, *, total=None, status="": None
        return
    if not out.is_terminal:
        plain = PlainProgress(description, total, out)
        try:
            yield plain.update
        finally:
            plain.close()
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
    """Progress over a sweep's trials that yields `show(counts)`, counts being trials by state:
    done is the trials in a final state; the total grows past `planned` if more trials are stored."""
    from orchestrator.models import FINAL_TRIAL_STATES

    with progress_bar(name, planned) as update:

        def show(counts: Mapping[str, int]) -> None:
            done = sum(n for state, n in counts.items() if state in FINAL_TRIAL_STATES)
            shown = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
            update(done, total=max(planned, sum(counts.values())), status=shown)

        yield show


# Options that mean the same in every command that takes them.
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default $SSMBENCH_DATABASE_URL, else a SQLite file in the user data dir)."
    ),
]
TaskDataOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the tasks' files are (default $SSMBENCH_DATA_DIR, else the per-user data dir).",
    ),
]

# Allowed values of the choice options, spelled out so that `--help` does not import torch (the
# sources are ssm.config's LayerName, InitName, ReparamName; tests/api/test_cli_local.py checks them).
LAYERS = ("s4", "s4d", "s5")
INITS = ("legs", "inv", "lin", "real", "rand", "ptd")
REPARAMS = ("none", "exp", "softplus", "best")


def choice_help(text: str, values: tuple[str, ...]) -> str:
    """Help text that lists a choice option's allowed values."""
    return f"{text} One of: {', '.join(values)}."


def check_choice(option: str, values: tuple[str, ...]) -> Callable[[str | None], str | None]:
    """A typer callback refusing a value not in `values` in one line (exit 2), naming the allowed ones."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in values:
            fail(f"{option}: {value!r} is not one of {', '.join(values)}")
        return value

    return check


def json_option(what: str = "one JSON document instead of text") -> Any:
    """The `--json` flag; `what` says what it prints ("only the TrialResult as JSON")."""
    return typer.Option("--json", help=f"Print {what}.")


JsonOption = Annotated[bool, json_option()]


def choice_option(option: str, text: str, values: tuple[str, ...]) -> Any:
    """A typer option taking one of `values` (or nothing): help text that lists them, and a callback
    that refuses any other value in one line (exit 2)."""
    return typer.Option(option, help=choice_help(text, values), callback=check_choice(option, values))
