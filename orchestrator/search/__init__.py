"""Optuna search for sweeps with a `search` block (DESIGN.md "Contracts", issue 6 §4).

One Optuna study per (sweep, grid cell, task), named `ssmbench-sweep{id}-cell{i}-task{j}-{task}`,
kept in Optuna's RDBStorage beside our tables. Each Optuna trial is one of our trials
(`Trial.optuna_trial` is its number in the study; the Optuna trial carries our id as the user
attribute `ssmbench_trial_id`). All ask/tell state lives in the databases, so a scheduler killed at
any moment and started again continues the same studies without losing or duplicating a trial.

The modules, in the order a sweep meets them:
- `space`: the spec's `search` block as pydantic models (ranges, choices, sampler rules) and the
  Optuna distributions they make; imported by `orchestrator.spec`, so it imports no other module here.
- `plan`: the studies of one search sweep (`build_plan`, `validate_search`).
- `storage`: where Optuna's tables live (`optuna_storage_url`, also the URL for optuna-dashboard).
- `studies`: `OptunaStudies`, the one adapter to Optuna (samplers, studies, ask, tell).
- `coordinator`: `SearchCoordinator`, what the scheduler calls: ask, tell, reconcile, the epoch hook.
- `pruning`: the epoch hook a Ray worker runs; it imports neither Ray nor the coordinator.

This package imports its modules on first use of a name (PEP 562), so `orchestrator.spec` can import
`space` and a worker can unpickle `pruning.EpochHook` without loading the coordinator.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MAX_GRID_POINTS": "space",
    "Objective": "space",
    "SearchChoices": "space",
    "SearchRange": "space",
    "SearchSpec": "space",
    "StudyRef": "plan",
    "SearchPlan": "plan",
    "build_plan": "plan",
    "validate_search": "plan",
    "SearchError": "storage",
    "open_storage": "storage",
    "optuna_schema": "storage",
    "optuna_storage_url": "storage",
    "TRIAL_ID_ATTR": "studies",
    "OptunaStudies": "studies",
    "make_sampler": "studies",
    "OPEN_SWEEP_STATES": "coordinator",
    "SearchCoordinator": "coordinator",
    "objective_value": "coordinator",
    "EpochHook": "pruning",
    "make_pruner": "pruning",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
