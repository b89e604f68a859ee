"""`SearchCoordinator`: maps Optuna studies onto our trials for the scheduler.

Driven by the scheduler (`Scheduler.search`):
- `ask(session, cluster)`, every bookkeeping pass: for each open search sweep, keep a small window of
  trials pending or running (the slots `cluster` — Ray's `cluster_resources()` — has for one trial's
  CPUs and GPUs, at most `max_concurrent`, at least 1) while the sweep has fewer stored trials than
  its budget (`SweepSpec.trial_budget()`). The study with the fewest trials is asked next; the sampled
  values go to their config paths in the grid cell and become a `TrialConfig` (seed: the sweep's
  first seed). A config that does not validate is stored as a `failed` trial (the cell's config, the
  sampled values and the error in `Trial.error`) and told FAIL at once — it counts against the
  budget, so a space that only yields invalid configs ends. A sampled config whose hash already has
  a completed result reuses it and is told at once. A stored search that cannot run (a sampler
  missing here) cancels its sweep (logged), never half-searched.
- `tell(session, trial_id)`, after each finished trial: completed → the objective (below);
  pruned → PRUNED; failed, diverged, cancelled → FAIL. Idempotent: an Optuna trial already finished
  is left alone.
- Reconciliation (on first sight of a sweep in a process, every `reconcile_seconds`, when a sweep
  is about to close, and on `close`): trials that finished while nobody told Optuna (a scheduler
  that died, a trial given up after a stale heartbeat, a cancelled sweep) are told; an Optuna trial
  left RUNNING with none of ours (the scheduler died between asking Optuna and committing our row)
  is adopted — stored as our trial with its sampled values — once it is older than
  `orphan_grace_seconds`, or told FAIL when the sweep is closed or its budget is spent.
- `epoch_hook(sweep_id)`: the `pruning.EpochHook` the worker runs after each epoch of a trial.

The objective of a completed trial is the best value of `objective.metric` (an `on_epoch` key:
`val_metric`, `val_accuracy`, `val_loss`, …) over its epochs — max when maximizing, min when
minimizing — taken from the stored result's epoch list, else from the epoch-metric rows. A
completed trial without that metric is told FAIL (logged). `nsgaii` is multi-objective: the
objective and the trainable parameter count (`TrialResult.parameters["trainable"]`, minimized);
Optuna cannot prune multi-objective trials, so it gets no epoch hook.

Every Optuna call goes through `OptunaStudies`; this module speaks only of our tables and plans.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Text, cast, exc, func, select
from sqlalchemy.orm import Session, sessionmaker

from .. import store
from ..db import process_sessions
from ..models import (
    FINAL_TRIAL_STATES,
    OPEN_SWEEP_STATES,
    EpochMetric,
    Result,
    Sweep,
    Trial,
    TrialState,
    utcnow,
)
from ..spec import SpecError, SweepSpec
from .plan import SearchPlan, StudyRef, build_plan
from .pruning import EpochHook
from .studies import OptunaStudies, StorageUnavailable

log = logging.getLogger(__name__)


class SearchCoordinator:
    """Asks, tells and reconciles the studies of every search sweep. Cheap while no search sweep
    exists: one query per pass, and Optuna's storage is opened only when a search sweep appears."""

    reconcile_seconds = 5.0
    orphan_grace_seconds = 10.0

    def __init__(self, database_url: str, sessions: sessionmaker[Session] | None = None):
        self.database_url = database_url
        self.sessions = sessions or process_sessions(database_url)  # for plans read outside a pass
        self.studies = OptunaStudies(database_url)
        self._plans: dict[int, SearchPlan | None] = {}  # None: a grid sweep, or a search that cannot run
        self._open: set[int] = set()  # open search sweeps at the last `ask`
        self._closing: set[int] | None = None  # closed sweeps that may hold untold trials; None: not scanned
        self._last_reconcile: dict[int, float] = {}
        self._orphans: dict[int, int] = {}  # per sweep: Optuna trials RUNNING with none of ours, left alone

    @property
    def storage(self):
        """Optuna's storage (`optuna.storages.RDBStorage`), opened on first use."""
        return self.studies.storage

    @property
    def storage_url(self) -> str:
        return self.studies.storage_url

    def _plan(
        self, session: Session, sweep_id: int, spec_json: dict[str, Any] | None = None
    ) -> SearchPlan | None:
        """The plan of a search sweep (None for a grid sweep or a search that cannot run), made on
        first sight in this process; a search that cannot run is logged and its sweep cancelled."""
        if sweep_id in self._plans:
            return self._plans[sweep_id]
        if spec_json is None:
            spec_json = session.scalar(select(Sweep.spec).where(Sweep.id == sweep_id)) or {}
        plan = None
        if spec_json.get("search"):
            try:
                plan = build_plan(SweepSpec.model_validate(spec_json), sweep_id)
            except (SpecError, ValidationError) as err:
                log.error("sweep %s has a search block that cannot run, cancelling it: %s", sweep_id, err)
                store.cancel_sweep(session, sweep_id)
        self._plans[sweep_id] = plan
        return plan

    # --- ask ----------------------------------------------------------------------------------------
    def ask(self, session: Session, cluster: Mapping[str, float] | None = None) -> None:
        """Top up every open search sweep with new trials from Optuna; tell what is untold.

        `cluster`: the cluster's resources (`{"CPU": 8.0, "GPU": 1.0}`, Ray's `cluster_resources()`)
        that size each sweep's window of trials; None: this machine's CPUs."""
        rows = session.execute(
            select(Sweep.id, Sweep.spec, Sweep.max_concurrent).where(Sweep.state.in_(OPEN_SWEEP_STATES))
        ).all()
        now_open = set()
        for sweep_id, spec_json, max_concurrent in rows:
            try:
                plan = self._plan(session, sweep_id, spec_json)
            except Exception as err:  # the scheduler fails this sweep, not every sweep's pass
                raise store.SweepFailure(sweep_id, store.failure_reason("planning its search", err)) from err
            if plan is None:
                continue
            now_open.add(sweep_id)
            try:
                self._ask_sweep(session, plan, max_concurrent, cluster)
            except StorageUnavailable as err:
                log.warning("Optuna storage error for sweep %s, retrying next pass: %s", sweep_id, err)
            except exc.DBAPIError:  # the database's error, not the sweep's
                raise
            except Exception as err:
                reason = store.failure_reason("asking Optuna for trials", err)
                raise store.SweepFailure(sweep_id, reason) from err
        self._reconcile_closed(session, self._open - now_open)
        self._open = now_open

    def _ask_sweep(
        self,
        session: Session,
        plan: SearchPlan,
        max_concurrent: int | None,
        cluster: Mapping[str, float] | None,
    ) -> None:
        sweep_id = plan.sweep_id
        counts = store.state_counts(session, sweep_id)
        total, active = (
            sum(counts.values()),
            counts.get(TrialState.PENDING, 0) + counts.get(TrialState.RUNNING, 0),
        )
        now = time.monotonic()
        due = now - self._last_reconcile.get(sweep_id, -math.inf) >= self.reconcile_seconds
        if due or (active == 0 and total >= plan.budget):
            self._last_reconcile[sweep_id] = now
            if self.reconcile(session, plan, orphans="adopt"):
                counts = store.state_counts(session, sweep_id)
                total = sum(counts.values())
                active = counts.get(TrialState.PENDING, 0) + counts.get(TrialState.RUNNING, 0)
        room = min(
            plan.budget - total - self._orphans.get(sweep_id, 0),
            self._window(plan, max_concurrent, cluster) - active,
        )
        if room <= 0:
            return
        sweep = session.get(Sweep, sweep_id)
        for _ in range(room):
            ref = self.studies.next_study(plan)
            if ref is None:
                return
            number, params = self.studies.ask(plan, ref)
            self._materialize(session, sweep, plan, ref, number, params)

    @staticmethod
    def _window(plan: SearchPlan, max_concurrent: int | None, cluster: Mapping[str, float] | None) -> int:
        """How many of the sweep's trials may be pending or running at once."""
        resources = plan.spec.resources
        if cluster is None:
            slots = (os.cpu_count() or 1) / resources.cpus
        else:
            slots = cluster.get("CPU", 0.0) / resources.cpus
            if resources.gpus > 0:
                slots = min(slots, cluster.get("GPU", 0.0) / resources.gpus)
        window = max(1, math.floor(slots + 1e-9))
        return window if max_concurrent is None else min(window, max_concurrent)

    def _materialize(
        self,
        session: Session,
        sweep: Sweep,
        plan: SearchPlan,
        ref: StudyRef,
        number: int,
        params: dict[str, Any],
    ) -> Trial:
        """Store Optuna trial `number` of `ref` as our trial: pending, or failed when its config
        does not validate (then told FAIL at once), or completed when its hash has a result."""
        model, optim = dict(ref.model), dict(ref.optim)
        for path, value in params.items():
            section, _, name = path.partition(".")
            (model if section == "model" else optim)[name] = value
        resources = plan.spec.resources.model_dump()
        try:
            missing = sorted(set(plan.distributions) - set(params))
            if missing:
                raise SpecError(f"the Optuna trial has no value for {', '.join(missing)}")
            config = plan.spec.trial_config(ref.config.task, model, optim, plan.spec.seeds[0])
        except SpecError as err:
            stored = session.scalar(select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep.id))
            trial = store.trial_row(sweep.id, stored or 0, ref.config, resources)
            trial.state, trial.finished_at, trial.optuna_trial = "failed", utcnow(), number
            sampled = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
            trial.error = (
                f"the sampled config is invalid ({sampled}); the config stored is the grid cell's: {err}"
            )
            session.add(trial)
            session.flush()
            self.studies.link(plan, ref, number, trial.id)
            self.studies.tell(plan, ref, number, "failed")
            log.warning("sweep %s: Optuna trial %s of %s is invalid: %s", sweep.id, number, ref.name, err)
            return trial
        (trial,) = store.add_trials(session, sweep, [config], resources)
        trial.optuna_trial = number
        session.flush()
        self.studies.link(plan, ref, number, trial.id)
        if trial.state in FINAL_TRIAL_STATES:  # a reused result
            self._tell_trial(session, plan, trial)
        return trial

    # --- tell ---------------------------------------------------------------------------------------
    def tell(self, session: Session, trial_id: int) -> None:
        """Tell Optuna how our trial ended (no-op for a grid trial, an unfinished or a told one)."""
        trial = session.get(Trial, trial_id)
        if trial is None or trial.optuna_trial is None or trial.state not in FINAL_TRIAL_STATES:
            return
        plan = self._plan(session, trial.sweep_id)
        if plan is not None:
            try:
                self._tell_trial(session, plan, trial)
            except StorageUnavailable as err:  # reconciliation tells it later
                log.warning("telling Optuna about trial %s failed, will retry: %s", trial_id, err)

    def _tell_trial(self, session: Session, plan: SearchPlan, trial: Trial) -> bool:
        ref = plan.study_of(trial.config)
        if ref is None:
            log.warning("trial %s matches no study of sweep %s", trial.id, plan.sweep_id)
            return False
        if not self.studies.is_running(plan, ref, trial.optuna_trial):
            return False
        state, values = self._outcome(session, plan, trial)
        self.studies.tell(plan, ref, trial.optuna_trial, state, values)
        return True

    def _outcome(self, session: Session, plan: SearchPlan, trial: Trial) -> tuple[str, Any]:
        """What to tell Optuna: `completed` with the objective value(s), `pruned`, or `failed`."""
        if trial.state == "pruned":
            return "pruned", None
        if trial.state != TrialState.COMPLETED:
            return "failed", None
        result = session.scalar(select(Result).where(Result.trial_id == trial.id))
        objective = plan.search.objective
        value = objective_value(session, trial, objective.metric, objective.direction, result)
        if value is None:
            log.warning(
                "trial %s completed without the objective metric %r: told FAIL", trial.id, objective.metric
            )
            return "failed", None
        if not plan.multi_objective:
            return "completed", value
        trainable = ((result.payload or {}).get("parameters") or {}).get("trainable") if result else None
        if trainable is None:
            log.warning("trial %s has no trainable parameter count: told FAIL", trial.id)
            return "failed", None
        return "completed", [value, float(trainable)]

    # --- reconciliation -----------------------------------------------------------------------------
    def reconcile(self, session: Session, plan: SearchPlan, *, orphans: str) -> int:
        """Tell Optuna about our finished trials it still has RUNNING. Optuna trials RUNNING with none
        of ours (orphans) older than `orphan_grace_seconds` are, by `orphans`: "adopt"ed (stored as our
        trials while the budget allows, else told FAIL), told "fail", or left alone ("keep"). A younger
        orphan may be a trial another scheduler is storing this instant. Returns trials adopted."""
        running = {(ref.index, t.number): t for ref in plan.studies for t in self.studies.running(plan, ref)}
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
        adopted, left, stored = 0, 0, None
        for (index, number), running_trial in sorted(running.items(), key=lambda item: item[0]):
            ref = plan.studies[index]
            trial = ours.get((index, number))
            if trial is not None:
                if trial.state in FINAL_TRIAL_STATES:
                    self._tell_trial(session, plan, trial)
                continue
            if orphans == "keep" or running_trial.seconds < self.orphan_grace_seconds:
                left += 1
                continue
            if stored is None:
                stored = session.scalar(
                    select(func.count()).select_from(Trial).where(Trial.sweep_id == plan.sweep_id)
                )
            if orphans == "adopt" and stored < plan.budget:
                log.warning(
                    "sweep %s: adopting Optuna trial %s of %s, left without a trial",
                    plan.sweep_id,
                    number,
                    ref.name,
                )
                sweep = session.get(Sweep, plan.sweep_id)
                self._materialize(session, sweep, plan, ref, number, running_trial.params)
                stored += 1
                adopted += 1
            else:
                self.studies.tell(plan, ref, number, "failed")
        self._orphans[plan.sweep_id] = left
        return adopted

    def _reconcile_closed(self, session: Session, closed_now: set[int]) -> None:
        """Reconcile closed (completed or cancelled) search sweeps that may hold untold trials: every
        one the first time (a new process), then `closed_now` and those left from before; a sweep
        is dropped once nothing of it can change any more."""
        if self._closing is None:
            self._closing = set()
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
        for sweep_id in closed_now:  # closed since the last pass: reconcile at once
            self._closing.add(sweep_id)
            self._last_reconcile.pop(sweep_id, None)
        now = time.monotonic()
        for sweep_id in sorted(self._closing):
            if now - self._last_reconcile.get(sweep_id, -math.inf) < self.reconcile_seconds:
                continue
            self._last_reconcile[sweep_id] = now
            plan = self._plan(session, sweep_id)
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

    def close(self, sessions: sessionmaker[Session] | None = None) -> None:
        """Tell Optuna about every trial that finished since the last pass (the last trials of a
        sweep often finish in the pass that closes it), then release the storage. Never raises."""
        try:
            if self.studies.opened:
                with (sessions or self.sessions)() as session, session.begin():
                    for sweep_id in sorted(self._open | (self._closing or set())):
                        plan = self._plan(session, sweep_id)
                        if plan is not None:
                            self.reconcile(session, plan, orphans="keep")
        except Exception:
            log.exception("telling Optuna about finished trials on close failed; the next scheduler will")
        self.studies.close()

    # --- the epoch hook -----------------------------------------------------------------------------
    def epoch_hook(self, sweep_id: int) -> EpochHook | None:
        """What the worker calls after each epoch of a trial of `sweep_id`: None for a grid sweep or
        a multi-objective search (Optuna cannot prune those). The sweep's plan is read here when no
        `ask` of this process has seen the sweep yet."""
        if sweep_id not in self._plans:
            with self.sessions() as session, session.begin():
                self._plan(session, sweep_id)
        plan = self._plans[sweep_id]
        if plan is None or plan.multi_objective:
            return None
        return EpochHook(
            database_url=self.database_url,
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
