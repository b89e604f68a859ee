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
makes (counted arithmetically, before anything is planned; `max_trials`). Reading the text into a
bounded document is `orchestrator.spec_text`; its names are importable from here too.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
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

from .errors import SpecError, first_error, invalid
from .search.space import Objective, SearchSpec, field_adapter, require_sampler, study_key
from .spec_text import (  # re-exported: the document bounds are part of what a spec is
    MAX_DEPTH,
    MAX_NODES,
    MAX_SPEC_BYTES,
    SPEC_MEDIA_TYPES,
    SpecLoader,
    check_json_values,
    line_of,
    read_document,
)
from .tracking import TrackingSpec

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
    "trial_bundle",
    "validate_spec",
]

GRID_SECTIONS: dict[str, type[BaseModel]] = {"model": ModelConfig, "optim": OptimConfig}

SEED_MAX = 2**31 - 1  # the trials table stores a seed as a 32-bit signed integer (PostgreSQL INTEGER)
MAX_TASKS = 64
MAX_SEEDS = 1_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


RAY_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
CustomResourceName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")]
CustomResourceAmount = Annotated[float, Field(ge=0.0001, le=1_000_000)]  # Ray's precision is 0.0001


class Resources(_Strict):
    # Ray's resources of one trial; no node has more than 1024 CPUs or 64 GPUs.
    cpus: float = Field(1.0, gt=0, le=1024, description="CPUs of one trial (fractions share a CPU)")
    gpus: float = Field(0.0, ge=0, le=64, description="GPUs of one trial (fractions share a GPU)")
    custom: dict[CustomResourceName, CustomResourceAmount] = Field(
        default_factory=dict,
        max_length=16,
        description="Ray custom resources of one trial, e.g. `{trial_worker: 1}`: the nodes (node types "
        "of an autoscaling cluster) that offer them; not checked against the nodes there are now",
    )

    @field_validator("custom")
    @classmethod
    def _not_builtin(cls, custom: dict[str, float]) -> dict[str, float]:
        if builtin := [name for name in custom if name in RAY_BUILTIN_RESOURCES]:
            raise ValueError(f"{builtin[0]} is Ray's own resource, not a custom one (use cpus, gpus)")
        return custom

    def ray_bundle(self) -> dict[str, float]:
        """One trial's resources as Ray names them: `{"CPU": 1.0, "GPU": 1.0, "trial_worker": 1.0}`."""
        return trial_bundle(self.model_dump())


def trial_bundle(resources: dict[str, Any]) -> dict[str, float]:
    """A trial's stored resources (`Resources.model_dump()`, maybe from an older version without
    `custom`) as a Ray resource bundle; raises on what is not a number."""
    bundle = {"CPU": float(resources.get("cpus", 1.0)), "GPU": float(resources.get("gpus", 0.0))}
    bundle.update({str(name): float(amount) for name, amount in (resources.get("custom") or {}).items()})
    return {name: amount for name, amount in bundle.items() if amount or name == "CPU"}


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
    tracking: TrackingSpec | None = None  # MLflow / TensorBoard runs per trial (orchestrator.tracking)
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
                field = field_adapter(config_cls, key)
                for i, v in enumerate(values):
                    try:  # the field alone: how fields go together is checked per grid cell (plan)
                        field.validate_python(v)
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
        return list(self._cells())

    def _cells(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        model_axes = {k: v if isinstance(v, list) else [v] for k, v in self.model.items()}
        optim_axes = {k: v if isinstance(v, list) else [v] for k, v in self.optim.items()}
        keys = [("model", k) for k in model_axes] + [("optim", k) for k in optim_axes]
        values = [*model_axes.values(), *optim_axes.values()]
        for combo in itertools.product(*values):
            model, optim = {}, {}
            for (section, key), value in zip(keys, combo, strict=True):
                (model if section == "model" else optim)[key] = value
            yield model, optim

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
            if len(loc) == 1 and loc[0] in GRID_SECTIONS:  # fields that do not go together
                loc = self._culprit(loc[0], model if loc[0] == "model" else optim)
            cell = ", ".join(f"{k}={v}" for k, v in {**model, **optim}.items())
            raise SpecError(f"{message} (in the grid cell {cell})", loc) from None

    def _culprit(self, section: str, values: dict[str, Any]) -> tuple[str | int, ...]:
        """Where a section's values stop going together: the first key (in the spec's order) with
        which they, the rest at their defaults, are invalid; with its index when it is a grid axis."""
        config_cls, given = GRID_SECTIONS[section], getattr(self, section)
        keys = list(values)
        for n, key in enumerate(keys, 1):
            try:
                config_cls.model_validate({k: values[k] for k in keys[:n]})
            except ValidationError:
                axis = given.get(key)
                if isinstance(axis, list) and values[key] in axis:
                    return (section, key, axis.index(values[key]))
                return (section, key)
        return (section,)

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
    data, root = read_document(text, media_type)
    return validate_spec(data, max_trials=max_trials, root=root)


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
            # an invalid spec is reported as such: its first cell (fixed values invalid together fail here)
            spec.trial_config(spec.tasks[0], *next(spec._cells()), spec.seeds[0])
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
