"""What every command shares: one-line errors with exit code 2, YAML specs with `--set` overrides."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

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
