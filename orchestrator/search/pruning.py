"""Pruning from the Ray worker: the epoch hook and the pruners (the only part of the search a worker
imports; it imports neither Ray nor the coordinator).

After each epoch the worker calls `EpochHook(trial_id, metrics)`: the hook reports the objective
metric as the trial's intermediate value at step `epoch + 1` (epochs completed, the resource
Hyperband counts) and asks the study's pruner whether to stop — what Optuna's `Trial.report` and
`Trial.should_prune` do, through the storage's public methods, since the trial was asked elsewhere.

Pruners: `median` (startup `min(5, max(1, n_trials // 4))` completed trials), `hyperband` (resource =
epochs, `min_resource` 1, `max_resource` the cell's `optim.epochs`, reduction factor 3), `none`.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import optuna
from sqlalchemy import select

from ..db import process_sessions
from ..models import Trial
from .space import study_key
from .storage import open_storage

log = logging.getLogger(__name__)

PrunerArgs = tuple[tuple[str, Any], ...]


def make_pruner(name: str, args: PrunerArgs) -> optuna.pruners.BasePruner:
    """The pruner `name` with a study's `args` (`n_startup_trials`, `max_resource`)."""
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


@dataclass(frozen=True)
class EpochHook:
    """The per-epoch Optuna call in the Ray worker: `hook(trial_id, metrics) -> keep_going`.

    Plain data (it is pickled to the worker), made by `SearchCoordinator.epoch_hook` for one sweep;
    the storage, the studies and each trial's place in them are looked up on first use and cached
    per worker process. Any error keeps the trial going (logged): pruning is an optimization, never
    a reason to fail a trial."""

    database_url: str
    metric: str
    pruner: str
    axes: tuple[str, ...]
    studies: tuple[tuple[str, str, PrunerArgs], ...]  # (study key, study name, pruner args)

    def __call__(self, trial_id: int, metrics: dict[str, Any]) -> bool:
        value = metrics.get(self.metric)
        if not isinstance(value, int | float) or not math.isfinite(value) or "epoch" not in metrics:
            return True
        try:
            located = _locate(self, trial_id)
            if located is None:  # not a trial of this search (or no longer in the database)
                return True
            name, pruner_args, optuna_trial_id = located
            study = _worker_study(self.database_url, name, self.pruner, pruner_args)
            storage = _worker_storage(self.database_url)
            step = int(metrics["epoch"]) + 1
            if step not in storage.get_trial(optuna_trial_id).intermediate_values:  # a retried epoch
                storage.set_trial_intermediate_value(optuna_trial_id, step, float(value))
            return not study.pruner.prune(study, storage.get_trial(optuna_trial_id))
        except Exception:
            log.warning("Optuna report for trial %s failed; the trial goes on", trial_id, exc_info=True)
            return True


# --- per worker process --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _worker_storage(database_url: str) -> optuna.storages.RDBStorage:
    return open_storage(database_url, create=False)


@functools.lru_cache(maxsize=64)
def _worker_study(database_url: str, name: str, pruner: str, pruner_args: PrunerArgs) -> optuna.Study:
    # The sampler is never used here (report and prune only): the cheapest one.
    return optuna.load_study(
        study_name=name,
        storage=_worker_storage(database_url),
        sampler=optuna.samplers.RandomSampler(),
        pruner=make_pruner(pruner, pruner_args),
    )


@functools.lru_cache(maxsize=4096)
def _locate(hook: EpochHook, trial_id: int) -> tuple[str, PrunerArgs, int] | None:
    """Our trial's study (name, pruner args) and Optuna trial id; None for a trial of no study."""
    with process_sessions(hook.database_url)() as session:
        row = session.execute(select(Trial.config, Trial.optuna_trial).where(Trial.id == trial_id)).first()
    if row is None or row.optuna_trial is None:
        return None
    key = study_key(row.config, hook.axes)
    for study_key_, name, pruner_args in hook.studies:
        if study_key_ == key:
            storage = _worker_storage(hook.database_url)
            study_id = storage.get_study_id_from_name(name)
            return (
                name,
                pruner_args,
                storage.get_trial_id_from_study_id_trial_number(study_id, row.optuna_trial),
            )
    return None
