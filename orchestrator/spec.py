"""Sweep specifications: one YAML file describes a study (DESIGN.md "Contracts").

A list in `model` or `optim` is a grid axis (cartesian product), a scalar is fixed; `tasks` and `seeds`
are axes too; `search` (orchestrator.search.space) lets Optuna choose some fields instead. Text
becomes a spec in one way, `parse_spec`, for the CLI and the API alike; every error it raises is a
`SpecError` naming the key path (`model.init[1]`), for YAML input the line, and a machine-readable
code — before anything is written to the database.

What a spec may ask for is bounded, so that no submission can exhaust the service: the text
(MAX_SPEC_BYTES), the document it composes to after YAML aliases are expanded (MAX_NODES values,
MAX_DEPTH levels, MAX_SPEC_BYTES of text), every value a JSON value (no sets, dates, bytes,
non-finite numbers, integers beyond 64 bits or NUL characters: the stored spec re-validates to the
same spec), every number below a documented bound (the `le=` of the models), and the trials the grid
makes (counted arithmetically, before anything is planned; `max_trials`).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import math
import re
from typing import Annotated, Any, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ssm.config import DiagnosticsConfig, ModelConfig, OptimConfig, TaskConfig, TrialConfig
from ssm.data import TASK_NAMES

from .errors import Loc, SpecError, first_error, invalid
from .search.space import Objective, SearchSpec, require_sampler, study_key

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SPEC_BYTES",
    "SPEC_MEDIA_TYPES",
    "Budget",
    "Objective",
    "Resources",
    "SearchSpec",
    "SpecError",
    "SpecLoader",
    "SweepSpec",
    "TaskOptionLimits",
    "check_json_values",
    "group_key",
    "load_spec",
    "locate",
    "parse_spec",
    "plan",
    "validate_spec",
]

SPEC_MEDIA_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
GRID_SECTIONS: dict[str, type[BaseModel]] = {"model": ModelConfig, "optim": OptimConfig}

# Bounds of a submitted document. A real spec is a few hundred bytes, a few dozen values and at most 6
# levels deep (search.space.<path>.choices[i]); these leave room for generous grids while keeping what
# one request can make the service hold to a few megabytes.
MAX_SPEC_BYTES = 256 * 1024  # the text, the text of its scalars after alias expansion, the stored JSON
MAX_NODES = 10_000  # values (scalars, lists, mappings) after alias expansion
MAX_DEPTH = 32  # nesting levels
MAX_INT = 2**63 - 1  # the database's integers; larger ones are refused wherever they appear
SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit
MAX_TASKS = 64
MAX_SEEDS = 1_000


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` and `2E5` as floats as YAML 1.2 does (YAML 1.1 wants a
    dot and a signed exponent: `1.0e-3`). Every YAML the CLI and the API read goes through it."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    # Ray's resources of one trial; no node has more than 1024 CPUs or 64 GPUs.
    cpus: float = Field(1.0, gt=0, le=1024, description="CPUs of one trial (fractions share a CPU)")
    gpus: float = Field(0.0, ge=0, le=64, description="GPUs of one trial (fractions share a GPU)")


class Budget(_Strict):
    max_trials: int | None = Field(
        None, ge=1, le=1_000_000, description="a search sweep stores at most this many trials"
    )
    max_wall_seconds: float | None = Field(
        None, gt=0, le=366 * 86_400, description="stop the sweep after this many seconds (at most a year)"
    )


class TaskOptionLimits(BaseModel):
    """The types and bounds of the task options (`ssm.data.task_options` lists which task takes which;
    `TaskConfig` refuses an option its task does not take). The largest LRA task, Path-X, has 16384
    steps and 160,000 training examples; the bounds leave room above that, not orders of magnitude."""

    model_config = ConfigDict(extra="allow")

    max_len: int | None = Field(None, ge=1, le=65_536, description="sequence length")
    seq_len: int | None = Field(None, ge=1, le=65_536, description="sequence length (synthetic tasks)")
    n_train: int | None = Field(None, ge=1, le=1_000_000, description="training examples")
    n_val: int | None = Field(None, ge=1, le=1_000_000, description="validation examples")
    n_test: int | None = Field(None, ge=1, le=1_000_000, description="test examples")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="seed of the data")
    filter_seed: int | None = Field(None, ge=0, le=SEED_MAX, description="seed of the linear filter")
    delay: int | None = Field(None, ge=0, le=65_536, description="delay task: steps of delay")
    vocab: int | None = Field(None, ge=2, le=65_536, description="delay task: alphabet size")
    order: int | None = Field(None, ge=1, le=1_024, description="linear-filter task: filter order")
    T: float | None = Field(None, gt=0, le=1e6, description="memory-exp task: memory time scale (steps)")
    p: float | None = Field(None, gt=0, le=100, description="memory-poly task: decay exponent")
    input_alpha: float | None = Field(
        None, ge=0, le=8, description="linear-filter task: input power spectrum ∝ f^(−input_alpha)"
    )
    val_fraction: float | None = Field(None, gt=0, lt=1, description="share of training data held out")
    level: str | None = Field(None, max_length=64, description="pathfinder/pathx: difficulty directory")
    skip_bad: bool | None = None
    rgb: bool | None = None
    nonlinear: bool | None = None


def _tasks_schema(schema: dict[str, Any]) -> None:
    """The OpenAPI schema of `tasks` (pydantic's, edited in place): an entry is a task name from
    `ssm.data.TASK_NAMES`, or a TaskConfig with such a name and options within their bounds (beside
    the name or under `options`)."""
    names = {"type": "string", "enum": list(TASK_NAMES)}
    options = TaskOptionLimits.model_json_schema()
    options["additionalProperties"] = False
    bounded = {"properties": {"name": names, "options": options, **options["properties"]}}
    schema["items"] = {"anyOf": [names, {"allOf": [schema["items"], bounded]}]}


def _grid_section_schema(config_cls: type[BaseModel]):
    """The OpenAPI schema of `model` or `optim`: each field of `config_cls`, with its bounds, as one
    value or a list of values (a grid axis)."""

    def edit(schema: dict[str, Any]) -> None:
        fields = config_cls.model_json_schema()["properties"]
        schema["properties"] = {
            name: {"anyOf": [field, {"type": "array", "items": field, "minItems": 1}]}
            for name, field in fields.items()
        }
        schema["additionalProperties"] = False

    return edit


class SearchCell(NamedTuple):
    """One study of a search sweep: a grid cell and a task, with its first seed's TrialConfig."""

    cell_index: int
    task_index: int
    model: dict[str, Any]
    optim: dict[str, Any]
    config: TrialConfig
    key: str  # orchestrator.search.space.study_key of the config


class SweepSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    tasks: list[TaskConfig] = Field(min_length=1, max_length=MAX_TASKS, json_schema_extra=_tasks_schema)
    model: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_grid_section_schema(ModelConfig))
    optim: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_grid_section_schema(OptimConfig))
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=MAX_SEEDS
    )
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    search: SearchSpec | None = None
    resources: Resources = Field(default_factory=Resources)
    priority: int = Field(
        0, ge=-1_000_000, le=1_000_000, description="higher runs first; other than 0 for admins only"
    )
    max_concurrent: int | None = Field(None, ge=1, le=100_000, description="trials of the sweep at a time")
    budget: Budget = Field(default_factory=Budget)
    _planned: list[TrialConfig] | None = PrivateAttr(None)  # plan()'s answer, once (a spec is not edited)

    @field_validator("tasks")
    @classmethod
    def _bounded_options(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        for i, task in enumerate(tasks):
            try:
                TaskOptionLimits.model_validate(task.options)
            except ValidationError as err:
                loc, message = first_error(err)
                raise invalid((i, *loc), message, task.options.get(loc[0]) if loc else None) from None
        return tasks

    @model_validator(mode="after")
    def _check_grid(self) -> SweepSpec:
        for section, config_cls in GRID_SECTIONS.items():
            for key, value in getattr(self, section).items():
                if key not in config_cls.model_fields:
                    valid = ", ".join(config_cls.model_fields)
                    raise invalid((section, key), f"unknown field; valid: {valid}", value)
                values = value if isinstance(value, list) else [value]
                if not values:
                    raise invalid((section, key), "an empty list makes an empty grid", value)
                for i, v in enumerate(values):
                    try:
                        config_cls.model_validate({key: v})
                    except ValidationError as err:
                        where = (section, key, i) if isinstance(value, list) else (section, key)
                        raise invalid(where, first_error(err)[1], v) from None
        if len(set(self.seeds)) != len(self.seeds):
            raise invalid(("seeds",), "seeds repeat", self.seeds)
        axes = self.grid_axes()
        for path in self.search.space if self.search is not None else ():
            if path in axes:
                raise invalid(
                    ("search", "space", path),
                    f"{path} is a grid axis in {path.partition('.')[0]}: grid it or search it, not both",
                )
        return self

    def grid_axes(self) -> list[str]:
        """The config paths that are grid axes (a list in `model` or `optim`)."""
        return [
            f"{section}.{key}"
            for section in GRID_SECTIONS
            for key, value in getattr(self, section).items()
            if isinstance(value, list)
        ]

    def grid_cells(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every (model, optim) combination of the grid axes."""
        model_axes = {k: v if isinstance(v, list) else [v] for k, v in self.model.items()}
        optim_axes = {k: v if isinstance(v, list) else [v] for k, v in self.optim.items()}
        keys = [("model", k) for k in model_axes] + [("optim", k) for k in optim_axes]
        values = [*model_axes.values(), *optim_axes.values()]
        cells = []
        for combo in itertools.product(*values):
            model, optim = {}, {}
            for (section, key), value in zip(keys, combo, strict=True):
                (model if section == "model" else optim)[key] = value
            cells.append((model, optim))
        return cells

    def n_trials(self) -> int:
        """Trials the sweep asks for: tasks × grid cells × (seeds, or a search's `n_trials`). What the
        service's trials-per-sweep limit counts; `trial_budget` is what is stored in the end."""
        cells = math.prod(
            len(v) if isinstance(v, list) else 1 for v in (*self.model.values(), *self.optim.values())
        )
        per_cell = self.search.n_trials if self.search is not None else len(self.seeds)
        return len(self.tasks) * cells * per_cell

    def trial_budget(self) -> int:
        """How many trials the sweep has when it is done: every planned trial of a grid sweep; for a
        search sweep `n_trials()` capped by `budget.max_trials` (failed samples count too)."""
        total = self.n_trials()
        if self.search is not None and self.budget.max_trials is not None:
            total = min(total, self.budget.max_trials)
        return total

    def trial_config(
        self, task: TaskConfig, model: dict[str, Any], optim: dict[str, Any], seed: int
    ) -> TrialConfig:
        """The TrialConfig of one grid cell (or sampled point), task and seed; SpecError if invalid."""
        try:
            return TrialConfig(task=task, model=model, optim=optim, seed=seed, diagnostics=self.diagnostics)
        except ValidationError as err:
            loc, message = first_error(err)
            cell = ", ".join(f"{k}={v}" for k, v in {**model, **optim}.items())
            raise SpecError(f"{message} (in the grid cell {cell})", loc) from None

    def search_cells(self) -> list[SearchCell]:
        """A search sweep's studies, one per grid cell and task, each with its first seed's valid
        TrialConfig. SpecError when a config is invalid or two cells and tasks are the same study."""
        axes = self.grid_axes()
        cells: list[SearchCell] = []
        keys: set[str] = set()
        for cell_index, (model, optim) in enumerate(self.grid_cells()):
            for task_index, task in enumerate(self.tasks):
                config = self.trial_config(task, model, optim, self.seeds[0])
                key = study_key(config.model_dump(mode="json"), axes)
                if key in keys:
                    raise SpecError(
                        f"two grid cells or tasks are the same ({task.name}, cell {cell_index}); "
                        "each study needs its own cell and task",
                        ("tasks",),
                    )
                keys.add(key)
                cells.append(SearchCell(cell_index, task_index, model, optim, config, key))
        return cells


def plan(spec: SweepSpec) -> list[TrialConfig]:
    """The grid sweep's trials: tasks × grid cells × seeds, each validated as a whole TrialConfig.
    Planned once per spec (validating a spec plans it; storing it reuses that plan).

    A search sweep has no fixed trials: its trials are asked from Optuna (`orchestrator.search`).
    """
    if spec._planned is None:
        spec._planned = [
            spec.trial_config(task, model, optim, seed)
            for task in spec.tasks
            for model, optim in spec.grid_cells()
            for seed in spec.seeds
        ]
    return spec._planned


def group_key(config: TrialConfig) -> str:
    """The configuration group: the config without task, seed and diagnostics (model + optim).

    Trials of one group on different tasks are the same configuration; an LRA average is taken over them.
    """
    payload = {"model": config.model.model_dump(mode="json"), "optim": config.optim.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- text to spec ----------------------------------------------------------------------------------


def parse_spec(
    text: str, media_type: str = "application/yaml", *, max_trials: int | None = None
) -> SweepSpec:
    """The one way text becomes a SweepSpec (CLI and API): read it as JSON (`application/json`) or
    YAML (the other SPEC_MEDIA_TYPES; composed once, so errors carry lines), then `validate_spec`.

    Raises SpecError with the key path, the YAML line and a code (`too_many_trials` for a spec of more
    than `max_trials` trials, `spec_too_large` for one past MAX_SPEC_BYTES or MAX_NODES, else
    `invalid_spec`); ValueError for a media type not in the list."""
    if media_type not in SPEC_MEDIA_TYPES:
        raise ValueError(f"a sweep spec is one of {', '.join(SPEC_MEDIA_TYPES)}, not {media_type!r}")
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            f"the spec is {len(text)} characters long, more than {MAX_SPEC_BYTES}", code="spec_too_large"
        )
    if media_type == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
        except RecursionError:
            raise SpecError(f"the spec is nested more than {MAX_DEPTH} levels deep") from None
        except ValueError as err:  # an integer of more digits than Python converts
            raise SpecError(f"not valid JSON: {str(err).split(';')[0]}") from None
        return validate_spec(data, max_trials=max_trials)
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
    return validate_spec(data, max_trials=max_trials, root=root)


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


def load_spec(text: str, max_trials: int | None = None) -> SweepSpec:
    """`parse_spec` for YAML (or JSON, which is YAML too) text."""
    return parse_spec(text, "application/yaml", max_trials=max_trials)


def validate_spec(data: Any, max_trials: int | None = None, root: yaml.Node | None = None) -> SweepSpec:
    """Validate a parsed spec (a mapping), as `parse_spec` does after reading it; `root`, the YAML
    node tree, gives errors their line.

    In order: every value a JSON value the database stores unchanged (`check_json_values`), the
    spec's own rules (`SweepSpec`, its search block's included), the trials-per-sweep limit, then
    what needs the whole grid: every grid cell with every task is a valid TrialConfig and, for a
    search, its own study on a sampler this machine has; last, the size of the spec as stored."""
    if not isinstance(data, dict):
        raise SpecError(f"a sweep spec is a mapping at the top level, got {type(data).__name__}")
    try:
        check_json_values(data)
        try:
            spec = SweepSpec.model_validate(data)
        except ValidationError as err:
            loc, message = first_error(err)
            raise SpecError(message, loc) from None
        if max_trials is not None and spec.n_trials() > max_trials:
            raise SpecError(
                f"the sweep has {spec.n_trials()} trials, more than the limit of {max_trials}",
                code="too_many_trials",
            )
        if spec.search is None:
            plan(spec)
        else:
            spec.search_cells()
            require_sampler(spec.search.sampler)
        stored = len(json.dumps(spec.model_dump(mode="json")))
        if stored > MAX_SPEC_BYTES:
            raise SpecError(
                f"the spec is {stored} bytes as JSON, more than {MAX_SPEC_BYTES}", code="spec_too_large"
            )
    except SpecError as err:
        raise locate(err, root) from None
    return spec


def locate(err: SpecError, root: yaml.Node | None) -> SpecError:
    """`err` with the line of its location in the YAML node tree `root` (when it has none yet)."""
    if err.line is not None or root is None:
        return err
    return SpecError(err.message, err.loc, line_of(root, err.loc), code=err.code)


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
