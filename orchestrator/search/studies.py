"""`OptunaStudies`: every Optuna call the coordinator makes, through Optuna's public API.

The coordinator speaks of studies (`StudyRef`), Optuna trial numbers and our trial states; this
adapter turns that into samplers, `create_study`, `Study.ask`/`Study.tell` and the storage's public
methods, and holds the per-process state that goes with them (the storage, loaded studies, how many
trials each study holds).

Samplers are seeded from the sweep's first seed, the study's position and the number of trials the
study already holds (so a restarted scheduler does not replay the first samples): `tpe` (constant
liar, so the trials pending at once are spread out; `min(10, max(2, n_trials // 4))` startup
trials), `random`, `cmaes` (needs the `cmaes` package), `nsgaii` (population
`max(4, min(50, n_trials // 2))`), `grid` (the space's grid, `SearchSpec.grid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from .plan import SearchPlan, StudyRef
from .pruning import make_pruner
from .storage import open_storage, optuna_storage_url

TRIAL_ID_ATTR = "ssmbench_trial_id"  # the user attribute of an Optuna trial holding our trial's id
StorageUnavailable = optuna.exceptions.StorageInternalError  # a dropped connection: try again later
_STATES = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


@dataclass(frozen=True)
class RunningTrial:
    """An Optuna trial still RUNNING: its number in the study, sampled values and age."""

    number: int
    params: dict[str, Any]
    seconds: float


class _GridSampler(optuna.samplers.GridSampler):
    """GridSampler without `study.stop()` when the grid is exhausted: that only works inside
    `study.optimize`; here the budget (n_trials ≤ grid size) ends the search."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_sampler(plan: SearchPlan, seed: int) -> optuna.samplers.BaseSampler:
    n_trials = plan.search.n_trials
    match plan.search.sampler:
        case "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=min(10, max(2, n_trials // 4)), constant_liar=True
            )
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        case "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 2)))
        case "grid":
            return _GridSampler(plan.grid, seed=seed)
    raise ValueError(f"unknown sampler {plan.search.sampler!r}")


class OptunaStudies:
    """The studies of every search sweep in one Optuna storage (opened on first use)."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self._storage: optuna.storages.RDBStorage | None = None
        self._studies: dict[str, tuple[optuna.Study, int]] = {}  # name → (study, its id in the storage)
        self._asked: dict[str, int] = {}  # trials per study: ours, adopted, failed at validation

    @property
    def opened(self) -> bool:
        """Whether the storage was opened (a search sweep was seen)."""
        return self._storage is not None

    @property
    def storage(self) -> optuna.storages.RDBStorage:
        if self._storage is None:
            self._storage = open_storage(self.database_url, create=True)
        return self._storage

    @property
    def storage_url(self) -> str:
        return optuna_storage_url(self.database_url)

    def close(self) -> None:
        """Release the storage's connections; the next call opens it again."""
        if self._storage is not None:
            self._storage.engine.dispose()
            self._storage = None
            self._studies.clear()
            self._asked.clear()

    def _study(
        self, plan: SearchPlan, ref: StudyRef, *, create: bool = True
    ) -> tuple[optuna.Study, int] | None:
        """The study of `ref` and its id, created (or loaded) on first use in this process; None when
        it does not exist and `create` is false."""
        if ref.name in self._studies:
            return self._studies[ref.name]
        storage = self.storage
        try:
            existing = storage.get_n_trials(storage.get_study_id_from_name(ref.name))
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
        self._studies[ref.name] = (study, storage.get_study_id_from_name(ref.name))
        self._asked[ref.name] = existing
        return self._studies[ref.name]

    def _trial_id(self, plan: SearchPlan, ref: StudyRef, number: int) -> int | None:
        found = self._study(plan, ref, create=False)
        if found is None:
            return None
        try:
            return self.storage.get_trial_id_from_study_id_trial_number(found[1], number)
        except KeyError:
            return None

    # --- asking -------------------------------------------------------------------------------------
    def next_study(self, plan: SearchPlan) -> StudyRef | None:
        """The study with the fewest trials, while one has fewer than `n_trials` (None: all full)."""
        best, fewest = None, plan.search.n_trials
        for ref in plan.studies:
            self._study(plan, ref)
            if self._asked[ref.name] < fewest:
                best, fewest = ref, self._asked[ref.name]
        return best

    def ask(self, plan: SearchPlan, ref: StudyRef) -> tuple[int, dict[str, Any]]:
        """A new trial of the study: its number and sampled values (config path → value)."""
        study, _ = self._study(plan, ref)
        trial = study.ask(plan.distributions)
        self._asked[ref.name] += 1
        return trial.number, trial.params

    def link(self, plan: SearchPlan, ref: StudyRef, number: int, trial_id: int) -> None:
        """Record our trial's id on Optuna trial `number` (the user attribute TRIAL_ID_ATTR)."""
        self.storage.set_trial_user_attr(self._trial_id(plan, ref, number), TRIAL_ID_ATTR, trial_id)

    # --- telling ------------------------------------------------------------------------------------
    def is_running(self, plan: SearchPlan, ref: StudyRef, number: int) -> bool:
        """Whether Optuna trial `number` exists and is not finished yet."""
        trial_id = self._trial_id(plan, ref, number)
        return trial_id is not None and not self.storage.get_trial(trial_id).state.is_finished()

    def tell(
        self,
        plan: SearchPlan,
        ref: StudyRef,
        number: int,
        state: str,
        values: float | list[float] | None = None,
    ) -> None:
        """Finish Optuna trial `number` as `completed` (with `values`), `pruned` or `failed`; a trial
        finished already is left alone."""
        study, _ = self._study(plan, ref)
        study.tell(number, values, state=_STATES[state], skip_if_finished=True)

    def running(self, plan: SearchPlan, ref: StudyRef) -> list[RunningTrial]:
        """The study's trials Optuna still has RUNNING (none when the study does not exist)."""
        found = self._study(plan, ref, create=False)
        if found is None:
            return []
        now = datetime.now()  # Optuna stores local naive times
        return [
            RunningTrial(t.number, t.params, (now - (t.datetime_start or now)).total_seconds())
            for t in self.storage.get_all_trials(found[1], deepcopy=False, states=(TrialState.RUNNING,))
        ]
