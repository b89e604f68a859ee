"""Errors in what a user submits, located by key path; shared by the spec, the search and the API.

A key path names one place in a nested document as a user reads it: `model.init[1]`,
`search.space.optim.lr.low`. Pydantic reports a place as a location tuple (`("model", "init", 1)`);
`key_path` is the one conversion between the two. The tuple is kept beside the path wherever a YAML
line is looked up, because a key may itself hold dots (`optim.lr` is one key of `search.space`).

This module imports pydantic only, so the CLI and the API can use it without loading the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]


def key_path(loc: Sequence[str | int]) -> str:
    """`("model", "init", 1)` → `"model.init[1]"`; `()` → `""`."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def first_error(err: ValidationError) -> tuple[Loc, str]:
    """The location and message of a validation error's first entry (pydantic's "Value error, "
    prefix removed: the message is ours)."""
    first = err.errors()[0]
    return tuple(first["loc"]), first["msg"].removeprefix("Value error, ")


def invalid(loc: Loc, message: str, value: Any = None) -> ValidationError:
    """The error a validator raises for a place below the model it validates (`loc` is relative to
    that model): pydantic prefixes the outer location, so the error names the exact key path."""
    error = PydanticCustomError("invalid_spec", "{reason}", {"reason": message})
    return ValidationError.from_exception_data("spec", [InitErrorDetails(type=error, loc=loc, input=value)])


class SpecError(ValueError):
    """A sweep spec that cannot run.

    `message` says what is wrong; `loc` where (a location tuple, empty for the whole spec) and `path`
    the same as a key path (`model.init[1]`); `line` the YAML line when known; `code` the kind, for
    programs: `invalid_spec`, `too_many_trials` for a valid spec larger than the limit allows, or
    `spec_too_large` for a document past the spec's size bounds (text, values, aliases expanded).
    `where` is a location tuple or, where no YAML line is looked up, a key path."""

    def __init__(
        self, message: str, where: Loc | str = (), line: int | None = None, *, code: str = "invalid_spec"
    ):
        self.loc: Loc = where if isinstance(where, tuple) else ((where,) if where else ())
        self.path = key_path(where) if isinstance(where, tuple) else where
        self.message, self.line, self.code = message, line, code
        at = f" (line {line})" if line else ""
        super().__init__(f"{self.path}: {message}{at}" if self.path else f"{message}{at}")
