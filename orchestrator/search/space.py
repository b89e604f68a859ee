"""The `search` block of a sweep spec: what Optuna searches, over which ranges, with which sampler.

`space` maps a config path (`model.<field>` or `optim.<field>`) to a range or to choices:

    optim.lr:      {low: 1.0e-4, high: 1.0e-2, log: true}   # a float range on a log scale
    model.d_state: {low: 8, high: 64, step: 8}             # an integer range (step 1 when omitted)
    model.init:    {choices: [inv, lin]}                   # categorical

The models check everything the block can be checked for on its own: every bound and choice is a
valid value of its config field (the field validates it), an integer field takes integer bounds,
`log` needs `low > 0` and excludes `step`, a range has at most MAX_GRID_POINTS steps, and the `grid`
sampler gets a finite grid (choices, or ranges with a step) of at most MAX_GRID_POINTS points and no
more `n_trials` than points. Errors are pydantic errors at the exact key path
(`search.space.optim.lr.low`). The rules that need the rest of the spec (a path is not both a grid axis
and searched) are `SweepSpec`'s; the one that depends on this machine is `require_sampler`.

`distributions()` and `grid()` turn a valid block into Optuna's search space, and `study_key` tells
the studies of a sweep apart; Optuna itself is imported only by those.
"""

from __future__ import annotations

import importlib.util
import json
import math
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ssm.config import ModelConfig, OptimConfig

from ..errors import SpecError, first_error, invalid

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

MAX_GRID_POINTS = 100_000
SEARCHABLE: dict[str, type[BaseModel]] = {"model": ModelConfig, "optim": OptimConfig}
SAMPLER_PACKAGES = {"cmaes": "cmaes"}  # samplers that need a package Optuna does not install


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- one entry of the space ----------------------------------------------------------------------------


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError("a choice is a number, a string, a boolean or null")
    return value


class SearchChoices(_Strict):
    """A categorical entry: Optuna picks one of `choices`."""

    choices: list[Annotated[Any, AfterValidator(_scalar)]] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[Any]) -> list[Any]:
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise ValueError("choices repeat")
        return choices


class SearchRange(_Strict):
    """A numeric entry from `low` to `high` (both included): continuous, on a log scale with `log`,
    or in steps of `step` (an integer field steps by 1 unless told otherwise)."""

    low: int | float
    high: int | float
    log: StrictBool = False
    step: int | float | None = None

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _number(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name == "step":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{info.field_name} must be a number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if self.step is not None and not self.step > 0:
            raise invalid(("step",), "step must be positive", self.step)
        if self.step is not None and not math.isfinite((self.high - self.low) / self.step):
            # a step so small against the range that the count of steps overflows a float
            raise invalid(
                ("step",), f"step is too small: the range has more than {MAX_GRID_POINTS} steps", self.step
            )
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined; list log-spaced values as choices")
        if self.log and self.low <= 0:
            raise invalid(("low",), "a log scale needs low > 0", self.low)
        return self

    def points(self, integer: bool) -> int | None:
        """How many values a grid over the range has (None: a continuous float range)."""
        step = self.step or (1 if integer else None)
        if step is None:
            return None
        if integer:
            return (self.high - self.low) // step + 1
        return math.floor((self.high - self.low) / step + 1e-9) + 1

    def values(self, integer: bool) -> list[int | float]:
        """The grid's values: `low`, `low + step`, … up to `high` (floats rounded to 12 digits)."""
        count = self.points(integer)
        if count is None:
            raise ValueError("a continuous range has no grid")
        if integer:
            step = self.step or 1
            return list(range(self.low, self.low + (count - 1) * step + 1, step))
        return [round(self.low + i * self.step, 12) for i in range(count)]


def _entry(value: Any) -> Any:
    """Parse an entry as choices when it has `choices`, else as a range: a plain union would report
    the errors of both."""
    if isinstance(value, dict):
        return (SearchChoices if "choices" in value else SearchRange).model_validate(value)
    return value


SpaceEntry = Annotated[SearchChoices | SearchRange, BeforeValidator(_entry)]


# --- the block -------------------------------------------------------------------------------------------


class Objective(_Strict):
    metric: str = Field("val_metric", description="an on_epoch key, e.g. val_metric, val_accuracy, val_r2")
    direction: Literal["maximize", "minimize"] = "maximize"


class SearchSpec(_Strict):
    """Optuna search over continuous or categorical knobs (`space` keys are config paths)."""

    sampler: Literal["tpe", "cmaes", "random", "nsgaii", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    # each sampled trial is stored: at most the service's trials-per-sweep limit would allow anyway
    n_trials: int = Field(20, ge=1, le=100_000, description="trials Optuna samples per study")
    objective: Objective = Field(default_factory=Objective)
    space: dict[str, SpaceEntry]

    @field_validator("space")
    @classmethod
    def _fits_the_config(cls, space: dict[str, SearchChoices | SearchRange]) -> dict[str, Any]:
        if not space:
            raise ValueError("search.space must name at least one parameter")
        for path, entry in space.items():
            _check_entry(path, entry)
        return space

    @model_validator(mode="after")
    def _finite_grid(self) -> SearchSpec:
        if self.sampler != "grid":
            return self
        size = 1
        for path, entry in self.space.items():
            points = _points(path, entry)
            if points is None:
                raise invalid(
                    ("space", path),
                    "the grid sampler needs a finite grid: give this range a step, or list choices",
                )
            size *= points
        if size > MAX_GRID_POINTS:
            raise invalid(("space",), f"the grid has {size} points, more than {MAX_GRID_POINTS}")
        if self.n_trials > size:
            raise invalid(
                ("n_trials",),
                f"n_trials={self.n_trials} exceeds the grid's {size} points; set n_trials: {size}",
            )
        return self

    @property
    def multi_objective(self) -> bool:
        """`nsgaii` optimizes the objective and the trainable parameter count together."""
        return self.sampler == "nsgaii"

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's distribution for each path (with the grid sampler: the grid's values)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        grid = self.grid()
        out: dict[str, BaseDistribution] = {}
        for path, entry in self.space.items():
            if grid is not None or isinstance(entry, SearchChoices):
                out[path] = CategoricalDistribution(grid[path] if grid is not None else entry.choices)
            elif _is_integer(path):
                out[path] = IntDistribution(
                    entry.low, entry.values(True)[-1], log=entry.log, step=entry.step or 1
                )
            elif entry.step is not None:
                out[path] = FloatDistribution(
                    float(entry.low), float(entry.values(False)[-1]), step=float(entry.step)
                )
            else:
                out[path] = FloatDistribution(float(entry.low), float(entry.high), log=entry.log)
        return out

    def grid(self) -> dict[str, list[Any]] | None:
        """The grid sampler's search space: every value of each path (None for other samplers)."""
        if self.sampler != "grid":
            return None
        return {
            path: entry.choices if isinstance(entry, SearchChoices) else entry.values(_is_integer(path))
            for path, entry in self.space.items()
        }


def _field_kind(annotation: Any) -> str:
    """'int', 'float' or 'other' (searchable with choices only) for a config field's annotation."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    concrete = [a for a in (typing.get_args(annotation) if union else (annotation,)) if a is not type(None)]
    if len(concrete) == 1 and concrete[0] in (int, float):
        return "int" if concrete[0] is int else "float"
    return "other"


def _is_integer(path: str) -> bool:
    section, _, name = path.partition(".")
    return _field_kind(SEARCHABLE[section].model_fields[name].annotation) == "int"


def _points(path: str, entry: SearchChoices | SearchRange) -> int | None:
    return len(entry.choices) if isinstance(entry, SearchChoices) else entry.points(_is_integer(path))


def field_adapter(config: type[BaseModel], name: str) -> TypeAdapter:
    """A validator of one field of `config` alone: its type and bounds, not the model's checks across
    fields (those need the other fields' values, not their defaults)."""
    info = config.model_fields[name]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)


def _check_entry(path: str, entry: SearchChoices | SearchRange) -> None:
    """An entry fits its config field: the field's own validation accepts every bound and choice."""
    section, _, name = path.partition(".")
    config = SEARCHABLE.get(section)
    if config is None or name not in config.model_fields:
        raise ValueError(f"{path!r} is not a searchable config path (model.<field> or optim.<field>)")
    info = config.model_fields[name]
    adapter = field_adapter(config, name)

    def check(value: Any, *where: str | int) -> None:
        try:
            adapter.validate_python(value)
        except ValidationError as err:
            raise invalid(
                (path, *where), f"{value!r} is not a valid {name}: {first_error(err)[1]}", value
            ) from None

    if isinstance(entry, SearchChoices):
        for i, choice in enumerate(entry.choices):
            check(choice, "choices", i)
        return
    kind = _field_kind(info.annotation)
    if kind == "other":
        raise invalid((path,), f"{name} is not numeric: search it with {{choices: [...]}}")
    if kind == "int":
        for key in ("low", "high", "step"):
            value = getattr(entry, key)
            if value is not None and not isinstance(value, int):
                raise invalid((path, key), f"{name} is an integer: {key} must be an integer", value)
    check(entry.low, "low")
    check(entry.high, "high")
    points = entry.points(kind == "int")
    if points is not None and points > MAX_GRID_POINTS:
        raise invalid((path,), f"the range has more than {MAX_GRID_POINTS} steps")


# --- what the rest of the search uses --------------------------------------------------------------------


def require_sampler(sampler: str) -> None:
    """Raise SpecError (at `search.sampler`) when this machine lacks the sampler's package."""
    package = SAMPLER_PACKAGES.get(sampler)
    if package is None:
        return
    if importlib.util.find_spec(package) is None:
        raise SpecError(
            f"the {sampler} sampler needs the {package} package: pip install {package}", ("search", "sampler")
        )


def study_key(config: dict[str, Any], axes: Sequence[str]) -> str:
    """What tells the studies of a sweep apart: the task and the grid-axis values (`axes`, config
    paths) of a trial config in its JSON form, as `Trial.config` stores it."""
    parts: list[Any] = [config["task"]]
    for path in axes:
        section, _, name = path.partition(".")
        parts.append(config[section].get(name))
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))
