"""Sweep specifications: one YAML file describes a study (DESIGN.md "Contracts").

A list in `model` or `optim` is a grid axis (cartesian product), a scalar is fixed; `tasks` and `seeds`
are axes too. Every error names its key path (`model.init[1]`) and, for YAML input, its line —
and is raised before anything is written to the database.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ssm.config import DiagnosticsConfig, ModelConfig, OptimConfig, TaskConfig, TrialConfig


class SpecError(ValueError):
    """A sweep spec that cannot run. `path` is the key path ("model.init[1]"), `line` the YAML line."""

    def __init__(self, message: str, path: str = "", line: int | None = None):
        self.path, self.line, self.message = path, line, message
        where = f"{path}: " if path else ""
        at = f" (line {line})" if line else ""
        super().__init__(f"{where}{message}{at}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(_Strict):
    metric: str = Field("val_metric", description="an on_epoch key, e.g. val_metric, val_accuracy, val_r2")
    direction: Literal["maximize", "minimize"] = "maximize"


class SearchSpec(_Strict):
    """Optuna search over continuous or categorical knobs (`space` keys are config paths)."""

    sampler: Literal["tpe", "cmaes", "random", "nsgaii", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    n_trials: int = Field(20, ge=1)
    objective: Objective = Field(default_factory=Objective)
    space: dict[str, dict[str, Any]]

    @field_validator("space")
    @classmethod
    def _check_space(cls, space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not space:
            raise ValueError("search.space must name at least one parameter")
        for path, dist in space.items():
            section, _, field = path.partition(".")
            fields = {"model": ModelConfig.model_fields, "optim": OptimConfig.model_fields}.get(section)
            if fields is None or field not in fields:
                raise ValueError(f"{path!r} is not a searchable config path (model.<field> or optim.<field>)")
            if "choices" in dist:
                if set(dist) != {"choices"} or not dist["choices"]:
                    raise ValueError(f"{path}: a categorical space is {{choices: [...]}}")
            elif not {"low", "high"} <= set(dist) <= {"low", "high", "log", "step"}:
                raise ValueError(f"{path}: a numeric space is {{low, high[, log][, step]}}")
            elif not dist["low"] < dist["high"]:
                raise ValueError(f"{path}: low must be below high")
        return space


class Resources(_Strict):
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class Budget(_Strict):
    max_trials: int | None = Field(None, ge=1)
    max_wall_seconds: float | None = Field(None, gt=0)


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

    @model_validator(mode="after")
    def _check_grid(self) -> SweepSpec:
        for section, config_cls in (("model", ModelConfig), ("optim", OptimConfig)):
            for key, value in getattr(self, section).items():
                if key not in config_cls.model_fields:
                    valid = ", ".join(config_cls.model_fields)
                    raise SpecError(f"unknown field; valid: {valid}", f"{section}.{key}")
                values = value if isinstance(value, list) else [value]
                if not values:
                    raise SpecError("an empty list makes an empty grid", f"{section}.{key}")
                for i, v in enumerate(values):
                    try:
                        config_cls.model_validate({key: v})
                    except ValidationError as err:
                        index = f"[{i}]" if isinstance(value, list) else ""
                        raise SpecError(_first_message(err, key), f"{section}.{key}{index}") from None
        if len(set(self.seeds)) != len(self.seeds):
            raise SpecError("seeds repeat", "seeds")
        return self

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
        if self.search is not None:
            return len(self.grid_cells()) * len(self.tasks) * self.search.n_trials
        return len(self.grid_cells()) * len(self.tasks) * len(self.seeds)


def _first_message(err: ValidationError, key: str) -> str:
    return err.errors()[0]["msg"].removeprefix("Value error, ")


def plan(spec: SweepSpec) -> list[TrialConfig]:
    """The grid sweep's trials: tasks × grid cells × seeds, each validated as a whole TrialConfig.

    A search sweep has no fixed trials: its trials are asked from Optuna (`orchestrator.search`).
    """
    configs = []
    for task in spec.tasks:
        for model, optim in spec.grid_cells():
            for seed in spec.seeds:
                configs.append(make_trial_config(spec, task, model, optim, seed, _path=f"tasks[{task.name}]"))
    return configs


def make_trial_config(spec, task, model, optim, seed, _path="") -> TrialConfig:
    try:
        return TrialConfig(task=task, model=model, optim=optim, seed=seed, diagnostics=spec.diagnostics)
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        cell = ", ".join(f"{k}={v}" for k, v in {**model, **optim}.items())
        message = first["msg"].removeprefix("Value error, ")
        raise SpecError(f"{message} (in the grid cell {cell})", path) from None


def group_key(config: TrialConfig) -> str:
    """The configuration group: the config without task, seed and diagnostics (model + optim).

    Trials of one group on different tasks are the same configuration; an LRA average is taken over them.
    """
    payload = {"model": config.model.model_dump(mode="json"), "optim": config.optim.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- loading -------------------------------------------------------------------------------------


def load_spec(text: str, max_trials: int | None = None) -> SweepSpec:
    """Parse and validate a YAML (or JSON) sweep spec. Raises SpecError naming key path and line."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise SpecError(
            f"not valid YAML: {getattr(err, 'problem', err)}", line=mark.line + 1 if mark else None
        ) from None
    return validate_spec(data, max_trials=max_trials, root=root)


def validate_spec(data: Any, max_trials: int | None = None, root: yaml.Node | None = None) -> SweepSpec:
    """Validate a parsed spec (a mapping). `root`, the YAML node tree, lets errors carry line numbers."""
    if not isinstance(data, dict):
        raise SpecError(f"a sweep spec is a mapping at the top level, got {type(data).__name__}")
    try:
        spec = SweepSpec.model_validate(data)
    except SpecError as err:
        raise SpecError(err.message, err.path, _line_of(root, err.path)) from None
    except ValidationError as err:
        first = err.errors()[0]
        inner = first.get("ctx", {}).get("error")
        if isinstance(inner, SpecError):
            raise SpecError(inner.message, inner.path, _line_of(root, inner.path)) from None
        path = _loc_to_path(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise SpecError(message, path, _line_of(root, path)) from None
    limit = max_trials
    if limit is not None and spec.n_trials() > limit:
        raise SpecError(f"the sweep has {spec.n_trials()} trials, more than the limit of {limit}", "")
    if spec.search is None:
        plan(spec)  # every grid cell must be a valid TrialConfig before anything is stored
    else:
        for model, optim in spec.grid_cells():
            for task in spec.tasks:
                make_trial_config(spec, task, model, optim, spec.seeds[0])
        from .search import validate_search  # Optuna is imported only for search sweeps

        try:
            validate_search(spec, root)
        except SpecError as err:
            raise SpecError(err.message, err.path, err.line or _line_of(root, err.path)) from None
    return spec


def _loc_to_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item not in ("function-after[_check_grid()]",):
            parts.append(str(item))
    return ".".join(parts)


def _line_of(root: yaml.Node | None, path: str) -> int | None:
    """1-based line of the YAML node at `path` ("model.init[1]"), or of its nearest ancestor."""
    if root is None or not path:
        return None
    node, line = root, root.start_mark.line + 1
    for part in path.split("."):
        name, _, rest = part.partition("[")
        indexes = [int(i) for i in rest.rstrip("]").split("][")] if rest else []
        if name:
            if not isinstance(node, yaml.MappingNode):
                return line
            match = next((v for k, v in node.value if getattr(k, "value", None) == name), None)
            if match is None:
                return line
            node = match
            line = node.start_mark.line + 1
        for i in indexes:
            if not isinstance(node, yaml.SequenceNode) or i >= len(node.value):
                return line
            node = node.value[i]
            line = node.start_mark.line + 1
    return line
