"""From request text to a JSON-like document, bounded: the first half of `orchestrator.spec.parse_spec`.

A sweep spec arrives as JSON or YAML text. `read_document` turns it into plain Python values (and, for
YAML, the node tree that gives errors their line) without letting a small text become a large
document: the text is at most MAX_SPEC_BYTES, the document it composes to after YAML aliases are
expanded at most MAX_NODES values, MAX_DEPTH levels and MAX_SPEC_BYTES of scalar text.
`check_json_values` then refuses anything that is not a JSON value the database stores unchanged.
What the values mean is `orchestrator.spec`'s business; every error here is a SpecError.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

import yaml

from .errors import Loc, SpecError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT",
    "MAX_NODES",
    "MAX_SPEC_BYTES",
    "SPEC_MEDIA_TYPES",
    "SpecLoader",
    "check_json_values",
    "line_of",
    "read_document",
]

SPEC_MEDIA_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

# Bounds of a submitted document. A real spec is a few hundred bytes, a few dozen values and at most 6
# levels deep (search.space.<path>.choices[i]); these leave room for generous grids while keeping what
# one request can make the service hold to a few megabytes.
MAX_SPEC_BYTES = 256 * 1024  # the text, the text of its scalars after alias expansion, the stored JSON
MAX_NODES = 10_000  # values (scalars, lists, mappings) after alias expansion
MAX_DEPTH = 32  # nesting levels
MAX_INT = 2**63 - 1  # the database's integers; larger ones are refused wherever they appear


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` and `2E5` as floats as YAML 1.2 does (YAML 1.1 wants a
    dot and a signed exponent: `1.0e-3`). Every YAML the CLI and the API read goes through it."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def read_document(text: str, media_type: str) -> tuple[Any, yaml.Node | None]:
    """The document `text` holds, read as JSON (`application/json`) or YAML (the other
    SPEC_MEDIA_TYPES; composed once, keeping the node tree for the errors' lines), and that tree
    (None for JSON). Values are not checked yet: that is `check_json_values`.

    Raises SpecError (`spec_too_large` for a text or document past the bounds, else `invalid_spec`)
    with the line for YAML; ValueError for a media type not in the list."""
    if media_type not in SPEC_MEDIA_TYPES:
        raise ValueError(f"a sweep spec is one of {', '.join(SPEC_MEDIA_TYPES)}, not {media_type!r}")
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            f"the spec is {len(text)} characters long, more than {MAX_SPEC_BYTES}", code="spec_too_large"
        )
    if media_type == "application/json":
        try:
            return json.loads(text), None
        except json.JSONDecodeError as err:
            raise SpecError(f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
        except RecursionError:
            raise SpecError(f"the spec is nested more than {MAX_DEPTH} levels deep") from None
        except ValueError as err:  # an integer of more digits than Python converts
            raise SpecError(f"not valid JSON: {str(err).split(';')[0]}") from None
    try:  # yaml.safe_load, keeping the node tree it composes for the errors' lines
        loader = _BoundedLoader(text)
        try:
            root = loader.get_single_node()
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise SpecError(
            f"not valid YAML: {getattr(err, 'problem', err)}", line=mark.line + 1 if mark else None
        ) from None
    except SpecError:
        raise
    except ValueError as err:  # an integer of more digits than Python converts
        raise SpecError(f"not valid YAML: {str(err).split(';')[0]}") from None
    return data, root


class _BoundedLoader(SpecLoader):
    """yaml.SafeLoader that counts what it composes as if every alias were expanded, and stops at
    MAX_NODES values, MAX_DEPTH levels or MAX_SPEC_BYTES of scalar text (SpecError with the line),
    before the document is constructed: a few hundred bytes of nested aliases cannot become
    gigabytes. An alias inside its own anchor (a recursive document) is refused."""

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0  # nesting level of the node being composed
        self.deepest = 0  # deepest level reached, aliases expanded
        self.nodes = 0
        self.chars = 0
        self.anchored: dict[str, tuple[int, int, int]] = {}  # anchor → (nodes, chars, depth below)

    def _refuse(self, message: str, mark: yaml.Mark) -> SpecError:
        return SpecError(message, line=mark.line + 1, code="spec_too_large")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self.anchored:
                raise SpecError(
                    f"the alias *{event.anchor} is inside its own anchor", line=event.start_mark.line + 1
                )
            node = super().compose_node(parent, index)  # the anchored node (or "undefined alias")
            nodes, chars, below = self.anchored[event.anchor]
            self._count(nodes, chars, self.depth + 1 + below, event.start_mark)
            return node
        self._count(
            1,
            len(event.value) if isinstance(event, yaml.ScalarEvent) else 0,
            self.depth + 1,
            event.start_mark,
        )
        nodes, chars, deepest = self.nodes, self.chars, self.deepest
        self.depth, self.deepest = self.depth + 1, self.depth + 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if getattr(event, "anchor", None) is not None:
            self.anchored[event.anchor] = (
                self.nodes - nodes + 1,
                self.chars - chars + (len(event.value) if isinstance(event, yaml.ScalarEvent) else 0),
                self.deepest - self.depth - 1,
            )
        self.deepest = max(deepest, self.deepest)
        return node

    def _count(self, nodes: int, chars: int, depth: int, mark: yaml.Mark) -> None:
        self.nodes += nodes
        self.chars += chars
        self.deepest = max(self.deepest, depth)
        if self.nodes > MAX_NODES:
            raise self._refuse(f"the spec has more than {MAX_NODES} values (aliases expanded)", mark)
        if self.chars > MAX_SPEC_BYTES:
            raise self._refuse(
                f"the spec's text is over {MAX_SPEC_BYTES} characters (aliases expanded)", mark
            )
        if self.deepest > MAX_DEPTH:
            raise SpecError(f"the spec is nested more than {MAX_DEPTH} levels deep", line=mark.line + 1)


def check_json_values(data: Any) -> None:
    """SpecError at the first place in `data` that is not a JSON value the spec can store and read
    back unchanged: a mapping with text keys, a list, text without NUL characters or lone surrogates,
    a boolean, null, an integer of at most 64 bits or a finite number; at most MAX_NODES values and
    MAX_DEPTH levels. YAML gives sets, dates, timestamps and bytes too: they would not survive storage."""
    stack: list[tuple[Loc, Any]] = [((), data)]
    seen = 0
    while stack:
        loc, value = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise SpecError(f"the spec has more than {MAX_NODES} values", code="spec_too_large")
        if len(loc) > MAX_DEPTH:
            raise SpecError(f"the spec is nested more than {MAX_DEPTH} levels deep", loc[:MAX_DEPTH])
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SpecError(f"a key must be text, not {_kind(key)} {key!r}", loc)
                _check_text(key, loc)
                stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, loc)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if not -MAX_INT - 1 <= value <= MAX_INT:
                raise SpecError("an integer beyond 64 bits", loc)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise SpecError(f"{value} is not a finite number (numbers must be finite)", loc)
        else:
            raise SpecError(
                f"{_kind(value)} is not a JSON value; use a list, a mapping, text or a number", loc
            )


def _check_text(text: str, loc: Loc) -> None:
    """Text the databases store: no NUL (PostgreSQL's text and JSON refuse it), valid Unicode."""
    if "\x00" in text:
        raise SpecError("text must not contain a NUL character", loc)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError("text must be valid Unicode (a lone surrogate is not)", loc) from None


def _kind(value: Any) -> str:
    names = {set: "a set", bytes: "binary data", tuple: "a tuple"}
    if isinstance(value, datetime.date):
        return "a date or timestamp"
    return names.get(type(value), f"a {type(value).__name__}")


def line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the YAML node at `loc` (`("model", "init", 1)`), or of its nearest ancestor;
    None without a YAML tree or for the whole spec."""
    if root is None or not loc:
        return None
    node, line = root, root.start_mark.line + 1
    for key in loc:
        if isinstance(key, int):
            if not isinstance(node, yaml.SequenceNode) or not 0 <= key < len(node.value):
                return line
            node = node.value[key]
        else:
            if not isinstance(node, yaml.MappingNode):
                return line
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                return line
            node = match
        line = node.start_mark.line + 1
    return line
