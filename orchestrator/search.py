"""Optuna search for sweeps with a `search` block (DESIGN.md "Contracts", issue 6 §4).

One Optuna study per (sweep, grid cell, task), named `ssmbench-sweep{id}-cell{i}-task{j}-{task}`,
kept in Optuna's RDBStorage beside our tables. Each Optuna trial is one of our trials
(`Trial.optuna_trial` is its number in the study; the Optuna trial carries our id as the user
attribute `ssmbench_trial_id`). All ask/tell state lives in the databases, so a scheduler killed at
any moment and started again continues the same studies without losing or duplicating a trial.

Where Optuna's tables live. Optuna's table names include `trials`, which is also ours, so the two
schemas cannot share one namespace. Optuna gets its own, next to ours (`optuna_storage_url`):
- SQLite `…/name.db` → the file `…/name-optuna.db` beside it (WAL, like ours);
- PostgreSQL → the schema `<schema>_optuna` in the same database, where `<schema>` is the first
  entry of the URL's `search_path` option, or the schema `optuna` when the URL sets none.

The flow, driven by the scheduler (`Scheduler.search` is a `SearchCoordinator`):
- `ask(session, scheduler)`, every step: for each open search sweep, keep a small window of trials
  pending or running (the cluster's CPU — and GPU — slots for one trial's resources, at most
  `max_concurrent`; at least 1) while the sweep has fewer stored trials than its budget (`min(cells × tasks × n_trials,
  budget.max_trials)`, the same figure `store.close_finished_sweeps` waits for). The study with the
  fewest trials is asked next. The sampled values go to their config paths in the grid cell and
  become a `TrialConfig` (seed: the sweep's first seed); a config that does not validate is stored
  as a `failed` trial (the cell's config, the sampled values and the error in `Trial.error`) and told
  FAIL at once — it counts against the budget, so a space that only yields invalid configs ends.
  A sampled config whose hash already has a completed result reuses it and is told at once.
- `tell(session, trial_id)`, after each finished trial: completed → the objective (below);
  pruned → PRUNED; failed, diverged, cancelled → FAIL. Idempotent: an Optuna trial already finished
  is left alone.
- Reconciliation (on first sight of a sweep in a process, every `reconcile_seconds`, when a sweep
  is about to close, and on `close`): trials that finished while nobody told Optuna (a scheduler
  that died, a trial given up after a stale heartbeat, a cancelled sweep) are told; an Optuna trial
  left RUNNING with none of ours (the scheduler died between asking Optuna and committing our row)
  is adopted — stored as our trial with its sampled values — once it is older than
  `orphan_grace_seconds`, or told FAIL when the sweep is closed or its budget is spent.
- The epoch hook (`EpochHook`, pickled to the Ray worker): `trial.report(value, step=epoch + 1)`
  (step = epochs completed, the resource Hyperband counts), then `should_prune()`.

The objective of a completed trial is the best value of `objective.metric` (an `on_epoch` key:
`val_metric`, `val_accuracy`, `val_loss`, …) over its epochs — max when maximizing, min when
minimizing — taken from the stored result's epoch list, else from the epoch-metric rows. A
completed trial without that metric is told FAIL (logged). `nsgaii` is multi-objective: the
objective and the trainable parameter count (`TrialResult.parameters["trainable"]`, minimized);
Optuna cannot prune multi-objective trials, so the pruner is not used with it.

Samplers are seeded from the sweep's first seed, the study's position and the number of trials the
study already holds (so a restarted scheduler does not replay the first samples): `tpe` (constant
liar, `min(10, max(2, n_trials // 4))` startup trials), `random`, `cmaes` (needs the `cmaes`
package), `nsgaii` (population `max(4, min(50, n_trials // 2))`), `grid` (every space entry is
`choices` or a range with `step`; integer ranges step 1 by default). Pruners: `median` (startup
`min(5, max(1, n_trials // 4))` completed trials), `hyperband` (resource = epochs, `min_resource`
1, `max_resource` the cell's `optim.epochs`, reduction factor 3), `none`.

`validate_search(spec)` checks a search block before anything is stored (types of every space
entry against the config field, log/step rules, no path both a grid axis and searched, the grid's
finiteness and size, the sampler's availability). Submit paths call it after `spec.validate_spec`;
a stored search sweep that fails it anyway is cancelled by `ask` (logged), never half-searched.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import sqlite3
import sys
import time
import types
import typing
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Text, cast, create_engine, exc, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ssm.config import ModelConfig, OptimConfig, TrialConfig

from . import store
from .db import process_sessions
from .models import FINAL_TRIAL_STATES, OPEN_SWEEP_STATES, EpochMetric, Result, Sweep, Trial, utcnow
from .spec import SearchSpec, SpecError, SweepSpec, make_trial_config

log = logging.getLogger(__name__)

MAX_GRID_POINTS = 100_000
TRIAL_ID_ATTR = "ssmbench_trial_id"


class SearchError(RuntimeError):
    """A database the search cannot use (an in-memory SQLite database, an unsupported server)."""


# --- where Optuna's tables live ---------------------------------------------------------------------

_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*(\S+)")


def optuna_schema(database_url: str) -> str:
    """PostgreSQL: the schema holding Optuna's tables for the database at `database_url`."""
    options = make_url(database_url).query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    match = _SEARCH_PATH.search(options)
    entries = [e.strip().strip('"') for e in match.group(1).split(",")] if match else []
    base = next((e for e in entries if e and e != "$user"), None)
    schema = f"{base}_optuna" if base else "optuna"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
        raise SearchError(f"cannot derive an Optuna schema name from the search_path {match.group(1)!r}")
    return schema.lower()


def optuna_storage_url(database_url: str) -> str:
    """The URL of Optuna's storage for our database at `database_url` (see the module docstring).

    This is also the URL to give `optuna-dashboard`."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database
        if not path or path == ":memory:" or url.query.get("mode") == "memory":
            raise SearchError(
                "an Optuna search needs a database file or server: an in-memory SQLite database "
                "is private to one process"
            )
        p = Path(path)
        return url.set(database=str(p.with_name(f"{p.stem}-optuna{p.suffix or '.db'}"))).render_as_string(
            hide_password=False
        )
    if backend == "postgresql":
        schema = optuna_schema(database_url)
        options = url.query.get("options", "")
        if isinstance(options, tuple):
            options = " ".join(options)
        setting = f"-csearch_path={schema}"
        if _SEARCH_PATH.search(options):
            options = _SEARCH_PATH.sub(setting, options, count=1)
        else:
            options = f"{options} {setting}".strip()
        return url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    raise SearchError(f"Optuna search supports SQLite and PostgreSQL databases, not {backend!r}")


def _engine_kwargs(storage_url: str) -> dict[str, Any]:
    if make_url(storage_url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def _prepare_namespace(database_url: str) -> None:
    """Create Optuna's schema (PostgreSQL) or put its SQLite file in WAL mode, before RDBStorage."""
    storage_url = optuna_storage_url(database_url)
    url = make_url(storage_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(url.database, timeout=30) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        return
    schema = optuna_schema(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except exc.IntegrityError:  # created concurrently by another process
        pass
    finally:
        engine.dispose()


def open_storage(database_url: str, *, create: bool = True) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for our database; `create` makes its schema and tables when missing."""
    storage_url = optuna_storage_url(database_url)
    if create:
        _prepare_namespace(database_url)
    return optuna.storages.RDBStorage(
        storage_url, engine_kwargs=_engine_kwargs(storage_url), skip_table_creation=not create
    )


# --- the search space --------------------------------------------------------------------------------


def _field_kind(annotation: Any) -> str:
    """'int', 'float' or 'other' (categorical only) for a config field's annotation."""
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    concrete = [a for a in args if a is not type(None)]
    if len(concrete) == 1 and concrete[0] is not bool and concrete[0] in (int, float):
        return "int" if concrete[0] is int else "float"
    return "other"


def _distribution(
    path: str, entry: dict[str, Any], *, grid: bool
) -> tuple[BaseDistribution, list[Any] | None]:
    """The Optuna distribution of one space entry (and its grid values when `grid`); SpecError if bad."""
    where = f"search.space.{path}"
    section, _, name = path.partition(".")
    info = (ModelConfig if section == "model" else OptimConfig).model_fields[name]
    kind = _field_kind(info.annotation)
    adapter = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)

    def check(value: Any, key: str) -> None:
        try:
            adapter.validate_python(value)
        except ValidationError as err:
            message = err.errors()[0]["msg"].removeprefix("Value error, ")
            raise SpecError(f"{value!r} is not a valid {name}: {message}", f"{where}.{key}") from None

    if "choices" in entry:
        choices = list(entry["choices"])
        for i, choice in enumerate(choices):
            if choice is not None and not isinstance(choice, str | int | float | bool):
                raise SpecError("a choice is a number, a string, a boolean or null", f"{where}.choices[{i}]")
            check(choice, f"choices[{i}]")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise SpecError("choices repeat", f"{where}.choices")
        return CategoricalDistribution(choices), choices

    low, high = entry["low"], entry["high"]
    log_scale, step = entry.get("log", False), entry.get("step")
    if kind == "other":
        raise SpecError(f"{name} is not numeric: search it with {{choices: [...]}}", where)
    for key, value in (("low", low), ("high", high), ("step", step)):
        if value is None and key == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{key} must be a number", f"{where}.{key}")
        if kind == "int" and not isinstance(value, int):
            raise SpecError(f"{name} is an integer: {key} must be an integer", f"{where}.{key}")
    if not isinstance(log_scale, bool):
        raise SpecError("log is true or false", f"{where}.log")
    if step is not None and step <= 0:
        raise SpecError("step must be positive", f"{where}.step")
    if log_scale and step is not None:
        raise SpecError("log and step cannot be combined; list log-spaced values as choices", where)
    if log_scale and low <= 0:
        raise SpecError("a log scale needs low > 0", f"{where}.low")
    check(low, "low")
    check(high, "high")

    if kind == "int":
        step = step or 1
        count = (high - low) // step + 1
    elif step is not None:
        count = math.floor((high - low) / step + 1e-9) + 1
    else:
        count = None
    if grid and count is None:
        raise SpecError(
            "the grid sampler needs a finite grid: give this range a step, or list choices", where
        )
    if count is not None and count > MAX_GRID_POINTS:
        raise SpecError(f"the range has {count} steps, more than {MAX_GRID_POINTS}", where)
    if kind == "int":
        values = list(range(low, low + (count - 1) * step + 1, step))
        if grid:
            return CategoricalDistribution(values), values
        return IntDistribution(low, values[-1], log=log_scale, step=step), None
    if step is not None:
        values = [round(low + i * step, 12) for i in range(count)]
        if grid:
            return CategoricalDistribution(values), values
        return FloatDistribution(float(low), float(values[-1]), step=float(step)), None
    return FloatDistribution(float(low), float(high), log=log_scale), None


def _grid_axes(spec: SweepSpec) -> list[str]:
    """The config paths that are grid axes (a list in `model` or `optim`): they tell cells apart."""
    return [
        f"{section}.{key}"
        for section in ("model", "optim")
        for key, value in getattr(spec, section).items()
        if isinstance(value, list)
    ]


def _study_key(config: dict[str, Any], axes: Sequence[str]) -> str:
    """What names a trial's study inside its sweep: the task and the grid-axis values of its config
    (the JSON form, as `Trial.config` stores it)."""
    parts: list[Any] = [config["task"]]
    for path in axes:
        section, _, name = path.partition(".")
        parts.append(config[section].get(name))
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class StudyRef:
    index: int
    name: str
    key: str
    model: dict[str, Any]
    optim: dict[str, Any]
    task_index: int
    config: TrialConfig
    pruner_args: tuple[tuple[str, Any], ...]


@dataclass
class SearchPlan:
    """Everything the coordinator needs about one search sweep, derived from its spec."""

    sweep_id: int
    spec: SweepSpec
    search: SearchSpec
    axes: list[str]
    studies: list[StudyRef]
    by_key: dict[str, StudyRef]
    distributions: dict[str, BaseDistribution]
    grid: dict[str, list[Any]] | None
    budget: int

    @property
    def multi_objective(self) -> bool:
        return self.search.sampler == "nsgaii"

    @property
    def directions(self) -> list[str]:
        first = self.search.objective.direction
        return [first, "minimize"] if self.multi_objective else [first]

    def study_of(self, config: dict[str, Any]) -> StudyRef | None:
        return self.by_key.get(_study_key(config, self.axes))


def build_plan(spec: SweepSpec, sweep_id: int = 0, root: yaml.Node | None = None) -> SearchPlan:
    """Validate `spec.search` and lay out its studies. Raises SpecError naming the key path."""
    search = spec.search
    if search is None:
        raise SpecError("the sweep has no search block", "search")
    axes = _grid_axes(spec)
    distributions: dict[str, BaseDistribution] = {}
    grid: dict[str, list[Any]] | None = {} if search.sampler == "grid" else None
    for path, entry in search.space.items():
        if path in axes:
            raise SpecError(
                f"{path} is a grid axis in {path.partition('.')[0]}: grid it or search it, not both",
                f"search.space.{path}",
                _space_line(root, path),
            )
        try:
            distribution, values = _distribution(path, entry, grid=grid is not None)
        except SpecError as err:
            raise SpecError(err.message, err.path, _space_line(root, path)) from None
        distributions[path] = distribution
        if grid is not None:
            grid[path] = values
    if grid is not None:
        size = math.prod(len(v) for v in grid.values())
        if size > MAX_GRID_POINTS:
            raise SpecError(f"the grid has {size} points, more than {MAX_GRID_POINTS}", "search.space")
        if search.n_trials > size:
            raise SpecError(
                f"n_trials={search.n_trials} exceeds the grid's {size} points; set n_trials: {size}",
                "search.n_trials",
            )
    if search.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise SpecError(
                "the cmaes sampler needs the cmaes package: pip install cmaes", "search.sampler"
            ) from None

    studies: list[StudyRef] = []
    by_key: dict[str, StudyRef] = {}
    for cell_index, (model, optim) in enumerate(spec.grid_cells()):
        for task_index, task in enumerate(spec.tasks):
            config = make_trial_config(spec, task, model, optim, spec.seeds[0])
            key = _study_key(config.model_dump(mode="json"), axes)
            if key in by_key:
                raise SpecError(
                    f"two grid cells or tasks are the same ({task.name}, cell {cell_index}); "
                    "each study needs its own cell and task",
                    "tasks",
                )
            if "optim.epochs" in search.space:
                max_resource: int | str = "auto"
            else:
                max_resource = config.optim.epochs
            pruner_args = (
                ("n_startup_trials", min(5, max(1, search.n_trials // 4))),
                ("max_resource", max_resource),
            )
            ref = StudyRef(
                index=len(studies),
                name=f"ssmbench-sweep{sweep_id}-cell{cell_index}-task{task_index}-{task.name}",
                key=key,
                model=dict(model),
                optim=dict(optim),
                task_index=task_index,
                config=config,
                pruner_args=pruner_args,
            )
            studies.append(ref)
            by_key[key] = ref
    budget = spec.n_trials()
    if spec.budget.max_trials is not None:
        budget = min(budget, spec.budget.max_trials)
    return SearchPlan(sweep_id, spec, search, axes, studies, by_key, distributions, grid, budget)


def validate_search(spec: SweepSpec, root: yaml.Node | None = None) -> None:
    """Reject a search block that cannot run, before anything is stored (no-op without one).

    Call it at submit time after `spec.validate_spec`; `root` (the YAML node tree, `yaml.compose`)
    adds line numbers. Raises `SpecError` with the key path, e.g. `search.space.optim.lr`."""
    if spec.search is not None:
        build_plan(spec, root=root)


def _space_line(root: yaml.Node | None, path: str) -> int | None:
    node = root
    for name in ("search", "space", path):
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if getattr(k, "value", None) == name), None)
        if node is None:
            return None
    return node.start_mark.line + 1


# --- samplers and pruners -------------------------------------------------------------------------


class _GridSampler(optuna.samplers.GridSampler):
    """GridSampler without `study.stop()` when the grid is exhausted: that only works inside
    `study.optimize`; here the budget (n_trials ≤ grid size) ends the search."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_sampler(plan: SearchPlan, seed: int) -> optuna.samplers.BaseSampler:
    n_trials = plan.search.n_trials
    match plan.search.sampler:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, n_trials // 4)))
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        case "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 2)))
        case "grid":
            return _GridSampler(plan.grid, seed=seed)
    raise ValueError(f"unknown sampler {plan.search.sampler!r}")


def make_pruner(name: str, args: tuple[tuple[str, Any], ...]) -> optuna.pruners.BasePruner:
    options = dict(args)
    match name:
        case "median":
            return optuna.pruners.MedianPruner(n_startup_trials=options["n_startup_trials"], n_warmup_steps=0)
        case "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=options["max_resource"], reduction_factor=3
            )
        case "none":
            return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}")


# --- the coordinator (in the scheduler) ------------------------------------------------------------


class SearchCoordinator:
    """Maps Optuna studies onto our trials for the scheduler. Cheap while no search sweep exists:
    one query per step, and Optuna's storage is opened only when a search sweep appears."""

    reconcile_seconds = 5.0
    orphan_grace_seconds = 10.0
    cluster_cache_seconds = 10.0

    def __init__(self, database_url: str):
        self.database_url = database_url
        self._storage: optuna.storages.RDBStorage | None = None
        self._plans: dict[int, SearchPlan | None] = {}  # None: a grid sweep (or a broken search)
        self._studies: dict[str, optuna.Study] = {}
        self._asked: dict[str, int] = {}  # Optuna trials per study (ours, adopted, failed at validation)
        self._last_reconcile: dict[int, float] = {}
        self._orphans: dict[int, int] = {}
        self._open: set[int] = set()
        self._closing: set[int] = set()  # closed search sweeps that may still have untold trials
        self._scanned_closed = False
        self._cluster: tuple[float, dict[str, float]] = (-math.inf, {})

    # --- the storage and its studies ------------------------------------------------------------
    @property
    def storage(self) -> optuna.storages.RDBStorage:
        if self._storage is None:
            self._storage = open_storage(self.database_url, create=True)
        return self._storage

    @property
    def storage_url(self) -> str:
        return optuna_storage_url(self.database_url)

    def study(self, plan: SearchPlan, ref: StudyRef, *, create: bool = True) -> optuna.Study | None:
        """The study of `ref`, created (or loaded: `load_if_exists`) on first use in this process."""
        study = self._studies.get(ref.name)
        if study is not None:
            return study
        storage = self.storage
        try:
            existing = len(storage.get_all_trials(storage.get_study_id_from_name(ref.name), deepcopy=False))
            fresh = False
        except KeyError:
            if not create:
                return None
            existing, fresh = 0, True
        seed = (plan.spec.seeds[0] + 1000 * ref.index + existing) % 2**32
        study = optuna.create_study(
            storage=storage,
            study_name=ref.name,
            sampler=make_sampler(plan, seed),
            pruner=make_pruner(plan.search.pruner, ref.pruner_args),
            directions=plan.directions,
            load_if_exists=True,
        )
        if fresh:
            study.set_user_attr("ssmbench_sweep_id", plan.sweep_id)
            study.set_user_attr("ssmbench_task", ref.config.task.model_dump(mode="json"))
            study.set_user_attr(
                "ssmbench_cell", {**ref.model, **{f"optim.{k}": v for k, v in ref.optim.items()}}
            )
            study.set_user_attr("ssmbench_objective", plan.search.objective.model_dump())
        self._studies[ref.name] = study
        self._asked[ref.name] = existing
        return study

    def _frozen(self, study: optuna.Study, number: int) -> FrozenTrial | None:
        try:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        except KeyError:
            return None
        return self.storage.get_trial(trial_id)

    def _plan(self, sweep_id: int, spec_json: dict[str, Any]) -> SearchPlan | None:
        if sweep_id in self._plans:
            return self._plans[sweep_id]
        plan = None
        if spec_json.get("search"):
            plan = build_plan(SweepSpec.model_validate(spec_json), sweep_id)
        self._plans[sweep_id] = plan
        return plan

    def _plan_for(self, session: Session, sweep_id: int) -> SearchPlan | None:
        if sweep_id not in self._plans:
            try:
                return self._plan(
                    sweep_id, session.scalar(select(Sweep.spec).where(Sweep.id == sweep_id)) or {}
                )
            except Exception:  # a spec that no longer reads: nothing to tell Optuna (the sweep failed)
                log.warning("sweep %s: its stored spec does not read; its search is left alone", sweep_id)
                self._plans[sweep_id] = None
        return self._plans[sweep_id]

    # --- ask ----------------------------------------------------------------------------------------
    def ask(self, session: Session, scheduler: Any = None) -> None:
        """Top up every open search sweep with new trials from Optuna; tell what is untold."""
        rows = session.execute(
            select(Sweep.id, Sweep.spec, Sweep.max_concurrent).where(Sweep.state.in_(OPEN_SWEEP_STATES))
        ).all()
        now_open = set()
        for sweep_id, spec_json, max_concurrent in rows:
            try:
                plan = self._plan(sweep_id, spec_json)
            except (SpecError, ValidationError) as err:
                log.error("sweep %s has a search block that cannot run, cancelling it: %s", sweep_id, err)
                self._plans[sweep_id] = None
                store.cancel_sweep(session, sweep_id)
                continue
            except Exception as err:  # the scheduler fails this sweep, not every sweep's pass
                raise store.SweepFailure(sweep_id, store.failure_reason("planning its search", err)) from err
            if plan is None:
                continue
            now_open.add(sweep_id)
            try:
                self._ask_sweep(session, plan, max_concurrent, scheduler)
            except optuna.exceptions.StorageInternalError as err:  # a dropped connection: next step
                log.warning("Optuna storage error for sweep %s, retrying next step: %s", sweep_id, err)
            except exc.DBAPIError:
                raise
            except Exception as err:
                reason = store.failure_reason("asking Optuna for trials", err)
                raise store.SweepFailure(sweep_id, reason) from err
        for sweep_id in self._open - now_open:  # closed since the last step: reconcile at once
            self._closing.add(sweep_id)
            self._last_reconcile.pop(sweep_id, None)
        self._open = now_open
        self._reconcile_closed(session)

    def _ask_sweep(self, session: Session, plan: SearchPlan, max_concurrent: int | None, scheduler) -> None:
        sweep_id = plan.sweep_id
        counts = store.state_counts(session, sweep_id)
        total, active = sum(counts.values()), counts.get("pending", 0) + counts.get("running", 0)
        now = time.monotonic()
        due = now - self._last_reconcile.get(sweep_id, -math.inf) >= self.reconcile_seconds
        if due or (active == 0 and total >= plan.budget):
            self._last_reconcile[sweep_id] = now
            if self.reconcile(session, plan, orphans="adopt"):
                counts = store.state_counts(session, sweep_id)
                total = sum(counts.values())
                active = counts.get("pending", 0) + counts.get("running", 0)
        room = min(
            plan.budget - total - self._orphans.get(sweep_id, 0),
            self._window(plan, max_concurrent, scheduler) - active,
        )
        if room <= 0:
            return
        sweep = session.get(Sweep, sweep_id)
        for _ in range(room):
            ref = self._next_study(plan)
            if ref is None:
                return
            study = self.study(plan, ref)
            trial = study.ask(plan.distributions)
            self._asked[ref.name] += 1
            self._materialize(session, sweep, plan, ref, study, trial.number, trial._trial_id, trial.params)

    def _next_study(self, plan: SearchPlan) -> StudyRef | None:
        best, fewest = None, plan.search.n_trials
        for ref in plan.studies:
            self.study(plan, ref)
            if self._asked[ref.name] < fewest:
                best, fewest = ref, self._asked[ref.name]
        return best

    def _window(self, plan: SearchPlan, max_concurrent: int | None, scheduler) -> int:
        resources = plan.spec.resources
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            stamp, cluster = self._cluster
            if time.monotonic() - stamp > self.cluster_cache_seconds:
                cluster = ray.cluster_resources()
                self._cluster = (time.monotonic(), cluster)
            slots = cluster.get("CPU", 0.0) / resources.cpus
            if resources.gpus > 0:
                slots = min(slots, cluster.get("GPU", 0.0) / resources.gpus)
        else:
            slots = (os.cpu_count() or 1) / resources.cpus
        window = max(1, math.floor(slots + 1e-9))
        if max_concurrent is not None:
            window = min(window, max_concurrent)
        return window

    def _materialize(
        self,
        session: Session,
        sweep: Sweep,
        plan: SearchPlan,
        ref: StudyRef,
        study: optuna.Study,
        number: int,
        optuna_trial_id: int,
        params: dict[str, Any],
    ) -> Trial:
        """Store Optuna trial `number` of `study` as our trial: pending, or failed when its config
        does not validate (then told FAIL at once), or completed when its hash has a result."""
        model, optim = dict(ref.model), dict(ref.optim)
        for path, value in params.items():
            section, _, name = path.partition(".")
            (model if section == "model" else optim)[name] = value
        resources = plan.spec.resources.model_dump()
        sampled = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
        try:
            missing = sorted(set(plan.distributions) - set(params))
            if missing:
                raise SpecError(f"the Optuna trial has no value for {', '.join(missing)}")
            config = make_trial_config(plan.spec, ref.config.task, model, optim, plan.spec.seeds[0])
        except SpecError as err:
            number_in_sweep = session.scalar(
                select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep.id)
            )
            trial = store.trial_row(sweep.id, number_in_sweep or 0, ref.config, resources)
            trial.state, trial.finished_at, trial.optuna_trial = "failed", utcnow(), number
            trial.error = (
                f"the sampled config is invalid ({sampled}); the config stored is the grid cell's: {err}"
            )
            session.add(trial)
            session.flush()
            self.storage.set_trial_user_attr(optuna_trial_id, TRIAL_ID_ATTR, trial.id)
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            log.warning("sweep %s: Optuna trial %s of %s is invalid: %s", sweep.id, number, ref.name, err)
            return trial
        (trial,) = store.add_trials(session, sweep, [config], resources)
        trial.optuna_trial = number
        session.flush()
        self.storage.set_trial_user_attr(optuna_trial_id, TRIAL_ID_ATTR, trial.id)
        if trial.state in FINAL_TRIAL_STATES:  # a reused result
            self._tell_trial(session, plan, trial)
        return trial

    # --- tell ---------------------------------------------------------------------------------------
    def tell(self, session: Session, trial_id: int) -> None:
        """Tell Optuna how our trial ended (no-op for a grid trial, an unfinished or a told one)."""
        trial = session.get(Trial, trial_id)
        if trial is None or trial.optuna_trial is None or trial.state not in FINAL_TRIAL_STATES:
            return
        plan = self._plan_for(session, trial.sweep_id)
        if plan is not None:
            try:
                self._tell_trial(session, plan, trial)
            except optuna.exceptions.StorageInternalError as err:  # reconciliation tells it later
                log.warning("telling Optuna about trial %s failed, will retry: %s", trial_id, err)

    def _tell_trial(self, session: Session, plan: SearchPlan, trial: Trial) -> bool:
        ref = plan.study_of(trial.config)
        if ref is None:
            log.warning("trial %s matches no study of sweep %s", trial.id, plan.sweep_id)
            return False
        study = self.study(plan, ref, create=False)
        frozen = None if study is None else self._frozen(study, trial.optuna_trial)
        if frozen is None or frozen.state.is_finished():
            return False
        state, values = self._outcome(session, plan, trial)
        study.tell(trial.optuna_trial, values, state=state, skip_if_finished=True)
        return True

    def _outcome(self, session: Session, plan: SearchPlan, trial: Trial) -> tuple[TrialState, Any]:
        if trial.state == "pruned":
            return TrialState.PRUNED, None
        if trial.state != "completed":
            return TrialState.FAIL, None
        result = session.scalar(select(Result).where(Result.trial_id == trial.id))
        value = objective_value(
            session, trial, plan.search.objective.metric, plan.search.objective.direction, result
        )
        if value is None:
            log.warning(
                "trial %s completed without the objective metric %r: told FAIL",
                trial.id,
                plan.search.objective.metric,
            )
            return TrialState.FAIL, None
        if not plan.multi_objective:
            return TrialState.COMPLETE, value
        trainable = ((result.payload or {}).get("parameters") or {}).get("trainable") if result else None
        if trainable is None:
            log.warning("trial %s has no trainable parameter count: told FAIL", trial.id)
            return TrialState.FAIL, None
        return TrialState.COMPLETE, [value, float(trainable)]

    # --- reconciliation ----------------------------------------------------------------------------
    def reconcile(self, session: Session, plan: SearchPlan, *, orphans: str) -> int:
        """Tell Optuna about our finished trials it still has RUNNING. Optuna trials RUNNING with none
        of ours (orphans) older than `orphan_grace_seconds` are, by `orphans`: "adopt"ed (stored as our
        trials while the budget allows, else told FAIL), told "fail", or left alone ("keep"). A younger
        orphan may be a trial another scheduler is storing this instant. Returns trials adopted."""
        running: dict[tuple[int, int], tuple[optuna.Study, FrozenTrial]] = {}
        for ref in plan.studies:
            study = self.study(plan, ref, create=False)
            if study is None:
                continue
            for frozen in self.storage.get_all_trials(
                study._study_id, deepcopy=False, states=(TrialState.RUNNING,)
            ):
                running[(ref.index, frozen.number)] = (study, frozen)
        self._orphans[plan.sweep_id] = 0
        if not running:
            return 0
        ours: dict[tuple[int, int], Trial] = {}
        numbers = sorted({number for _, number in running})
        for trial in session.scalars(
            select(Trial).where(Trial.sweep_id == plan.sweep_id, Trial.optuna_trial.in_(numbers))
        ):
            ref = plan.study_of(trial.config)
            if ref is not None:
                ours[(ref.index, trial.optuna_trial)] = trial
        adopted, left = 0, 0
        stored = None
        for (index, number), (study, frozen) in sorted(running.items(), key=lambda item: item[0]):
            trial = ours.get((index, number))
            if trial is not None:
                if trial.state in FINAL_TRIAL_STATES:
                    self._tell_trial(session, plan, trial)
                continue
            started = frozen.datetime_start or datetime.now()
            if orphans == "keep" or (datetime.now() - started).total_seconds() < self.orphan_grace_seconds:
                left += 1
                continue
            if stored is None:
                stored = session.scalar(
                    select(func.count()).select_from(Trial).where(Trial.sweep_id == plan.sweep_id)
                )
            if orphans == "adopt" and stored < plan.budget:
                ref = plan.studies[index]
                sweep = session.get(Sweep, plan.sweep_id)
                log.warning(
                    "sweep %s: adopting Optuna trial %s of %s, left without a trial",
                    plan.sweep_id,
                    number,
                    ref.name,
                )
                self._materialize(session, sweep, plan, ref, study, number, frozen._trial_id, frozen.params)
                stored += 1
                adopted += 1
            else:
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        self._orphans[plan.sweep_id] = left
        return adopted

    def _reconcile_closed(self, session: Session) -> None:
        """Closed (completed or cancelled) search sweeps that may hold untold trials: all of them the
        first time (a new process), then those that closed since; dropped once nothing is RUNNING."""
        if not self._scanned_closed:
            self._scanned_closed = True
            # the text, parsed here: one sweep's spec that does not read must not stop this scan
            for sweep_id, spec_text in session.execute(
                select(Sweep.id, cast(Sweep.spec, Text)).where(Sweep.state.not_in(OPEN_SWEEP_STATES))
            ):
                try:
                    searched = bool(json.loads(spec_text or "{}").get("search"))
                except (ValueError, AttributeError):  # its sweep failed on it; nothing to tell Optuna
                    continue
                if searched:
                    self._closing.add(sweep_id)
        now = time.monotonic()
        for sweep_id in sorted(self._closing):
            if now - self._last_reconcile.get(sweep_id, -math.inf) < self.reconcile_seconds:
                continue
            self._last_reconcile[sweep_id] = now
            plan = self._plan_for(session, sweep_id)
            if plan is None or self._settle(session, plan):
                self._closing.discard(sweep_id)
                self._last_reconcile.pop(sweep_id, None)

    def _settle(self, session: Session, plan: SearchPlan) -> bool:
        """Reconcile a closed sweep; True when none of its trials can change any more."""
        self.reconcile(session, plan, orphans="fail")
        unfinished = session.scalar(
            select(func.count())
            .select_from(Trial)
            .where(Trial.sweep_id == plan.sweep_id, Trial.state.not_in(FINAL_TRIAL_STATES))
        )
        return not unfinished and not self._orphans.get(plan.sweep_id)

    def close(self, sessions: sessionmaker[Session]) -> None:
        """Tell Optuna about every trial that finished since the last step (the last trials of a
        sweep often finish in the step that closes it), then release the storage. Never raises."""
        try:
            if self._plans:
                with sessions() as session, session.begin():
                    for sweep_id in sorted(self._open | self._closing):
                        plan = self._plan_for(session, sweep_id)
                        if plan is not None:
                            self.reconcile(session, plan, orphans="keep")
        except Exception:
            log.exception("telling Optuna about finished trials on close failed; the next scheduler will")
        if self._storage is not None:
            self._storage.engine.dispose()
            self._storage = None
            self._studies.clear()

    # --- the epoch hook -----------------------------------------------------------------------------
    def epoch_hook(self, sweep_id: int) -> EpochHook | None:
        """What the worker calls after each epoch of a trial of `sweep_id` (None: nothing to do)."""
        plan = self._plans.get(sweep_id)
        if plan is None or plan.multi_objective:
            return None
        return EpochHook(
            database_url=self.database_url,
            storage_url=self.storage_url,
            metric=plan.search.objective.metric,
            pruner=plan.search.pruner,
            axes=tuple(plan.axes),
            studies=tuple((ref.key, ref.name, ref.pruner_args) for ref in plan.studies),
        )


def objective_value(
    session: Session, trial: Trial, metric: str, direction: str, result: Result | None = None
) -> float | None:
    """The best finite value of `metric` over the trial's epochs (max or min by `direction`): from
    its stored result's epoch list, else from its epoch-metric rows (the latest attempt wins)."""
    epochs: list[dict[str, Any]] = []
    if result is not None:
        epochs = list((result.payload or {}).get("epochs") or [])
    if not any(metric in e for e in epochs):
        source = trial.reused_from or trial.id
        by_epoch: dict[int, dict[str, Any]] = {}
        for _attempt, epoch, metrics in session.execute(
            select(EpochMetric.attempt, EpochMetric.epoch, EpochMetric.metrics)
            .where(EpochMetric.trial_id == source)
            .order_by(EpochMetric.attempt)
        ):
            by_epoch[epoch] = metrics or {}
        epochs = [by_epoch[e] for e in sorted(by_epoch)]
    values = [float(e[metric]) for e in epochs if isinstance(e.get(metric), int | float)]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


# --- the worker side ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _worker_storage(storage_url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(
        storage_url, engine_kwargs=_engine_kwargs(storage_url), skip_table_creation=True
    )


@functools.lru_cache(maxsize=64)
def _worker_study(storage_url: str, name: str, pruner: str, pruner_args: tuple) -> optuna.Study:
    # The sampler is never used here (report and should_prune only): the cheapest one.
    return optuna.load_study(
        study_name=name,
        storage=_worker_storage(storage_url),
        sampler=optuna.samplers.RandomSampler(),
        pruner=make_pruner(pruner, pruner_args),
    )


_WORKER_TRIALS: OrderedDict[tuple[str, int], tuple[str, int] | None] = OrderedDict()


@dataclass(frozen=True)
class EpochHook:
    """The per-epoch Optuna call in the Ray worker: `hook(trial_id, metrics) -> keep_going`.

    Plain data only (it is pickled to the worker); the storage, studies and the trial's study and
    Optuna number are looked up on first use and cached per process. Any error keeps the trial
    going (logged): pruning is an optimization, never a reason to fail a trial."""

    database_url: str
    storage_url: str
    metric: str
    pruner: str
    axes: tuple[str, ...]
    studies: tuple[tuple[str, str, tuple], ...]  # (study key, study name, pruner args)

    def __call__(self, trial_id: int, metrics: dict[str, Any]) -> bool:
        value = metrics.get(self.metric)
        if not isinstance(value, int | float) or not math.isfinite(value) or "epoch" not in metrics:
            return True
        try:
            located = self._locate(trial_id)
            if located is None:
                return True
            study, optuna_trial_id = located
            trial = optuna.trial.Trial(study, optuna_trial_id)
            trial.report(float(value), step=int(metrics["epoch"]) + 1)
            return not trial.should_prune()
        except Exception:
            log.warning("Optuna report for trial %s failed; the trial goes on", trial_id, exc_info=True)
            return True

    def _locate(self, trial_id: int) -> tuple[optuna.Study, int] | None:
        cache_key = (self.database_url, trial_id)
        if cache_key not in _WORKER_TRIALS:
            with process_sessions(self.database_url)() as s:
                row = s.execute(select(Trial.config, Trial.optuna_trial).where(Trial.id == trial_id)).first()
            found = None
            if row is not None and row.optuna_trial is not None:
                key = _study_key(row.config, self.axes)
                for study_key, name, pruner_args in self.studies:
                    if study_key == key:
                        study = _worker_study(self.storage_url, name, self.pruner, pruner_args)
                        storage = _worker_storage(self.storage_url)
                        found = (
                            name,
                            storage.get_trial_id_from_study_id_trial_number(
                                study._study_id, row.optuna_trial
                            ),
                        )
                        break
            _WORKER_TRIALS[cache_key] = found
            while len(_WORKER_TRIALS) > 4096:
                _WORKER_TRIALS.popitem(last=False)
        found = _WORKER_TRIALS[cache_key]
        if found is None:
            return None
        name, optuna_trial_id = found
        pruner_args = next(args for _, n, args in self.studies if n == name)
        return _worker_study(self.storage_url, name, self.pruner, pruner_args), optuna_trial_id
