"""Sweep specifications: one YAML file describes a study (DESIGN.md "Contracts").

A list in `model` or `optim` is a grid axis (cartesian product), a scalar is fixed; `tasks` and `seeds`
are axes too; `search` (orchestrator.search.space) lets Optuna choose some fields instead. Text
becomes a spec in one way, `parse_spec`, for the CLI and the API alike; every error it raises is a
`SpecError` naming the key path (`model.init[1]`), for YAML input the line, and a machine-readable
code — before anything is written to the database.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ssm.config import DiagnosticsConfig, ModelConfig, OptimConfig, TaskConfig, TrialConfig

from .errors import Loc, SpecError, first_error, invalid
from .search.space import Objective, SearchSpec, require_sampler, study_key
from .tracking import TrackingSpec

__all__ = [
    "SPEC_MEDIA_TYPES",
    "Budget",
    "Objective",
    "Resources",
    "SearchSpec",
    "SpecError",
    "SweepSpec",
    "group_key",
    "load_spec",
    "locate",
    "parse_spec",
    "plan",
    "validate_spec",
]

SPEC_MEDIA_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
GRID_SECTIONS: dict[str, type[BaseModel]] = {"model": ModelConfig, "optim": OptimConfig}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class Budget(_Strict):
    max_trials: int | None = Field(None, ge=1, description="a search sweep stores at most this many trials")
    max_wall_seconds: float | None = Field(None, gt=0)


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
    tasks: list[TaskConfig] = Field(min_length=1)
    model: dict[str, Any] = Field(default_factory=dict)
    optim: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    search: SearchSpec | None = None
    resources: Resources = Field(default_factory=Resources)
    priority: int = 0
    max_concurrent: int | None = Field(None, ge=1)
    budget: Budget = Field(default_factory=Budget)
    tracking: TrackingSpec | None = None  # MLflow / TensorBoard runs per trial (orchestrator.tracking)

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

    A search sweep has no fixed trials: its trials are asked from Optuna (`orchestrator.search`).
    """
    return [
        spec.trial_config(task, model, optim, seed)
        for task in spec.tasks
        for model, optim in spec.grid_cells()
        for seed in spec.seeds
    ]


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
    than `max_trials` trials, else `invalid_spec`); ValueError for a media type not in the list."""
    if media_type not in SPEC_MEDIA_TYPES:
        raise ValueError(f"a sweep spec is one of {', '.join(SPEC_MEDIA_TYPES)}, not {media_type!r}")
    if media_type == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
        return validate_spec(data, max_trials=max_trials)
    try:  # yaml.safe_load, keeping the node tree it composes for the errors' lines
        loader = yaml.SafeLoader(text)
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
    return validate_spec(data, max_trials=max_trials, root=root)


def load_spec(text: str, max_trials: int | None = None) -> SweepSpec:
    """`parse_spec` for YAML (or JSON, which is YAML too) text."""
    return parse_spec(text, "application/yaml", max_trials=max_trials)


def validate_spec(data: Any, max_trials: int | None = None, root: yaml.Node | None = None) -> SweepSpec:
    """Validate a parsed spec (a mapping), as `parse_spec` does after reading it; `root`, the YAML
    node tree, gives errors their line.

    In order: the spec's own rules (`SweepSpec`, its search block's included), the trials-per-sweep
    limit, then what needs the whole grid: every grid cell with every task is a valid TrialConfig
    and, for a search, its own study on a sampler this machine has."""
    if not isinstance(data, dict):
        raise SpecError(f"a sweep spec is a mapping at the top level, got {type(data).__name__}")
    try:
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
