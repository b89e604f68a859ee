"""Read-side queries the API, the CLI and the reports share: sweeps with progress, trials, epoch
metrics, a trial's diagnostics."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, load_only

from . import models
from .array_codec import decode_array
from .models import EpochMetric, Result, Sweep, Trial, TrialState, utcnow

# What a list shows of each row. Lists load only these columns: a sweep's spec and a trial's config
# can be large, and a page of them would be read (and parsed) for nothing.
SWEEP_LIST_COLUMNS = (
    Sweep.id, Sweep.name, Sweep.state, Sweep.owner, Sweep.created_at, Sweep.finished_at, Sweep.error
)  # fmt: skip
# What tells a trial's configuration apart within a sweep, as every trials list shows it.
TRIAL_CONFIG_COLUMNS = (
    Trial.task,
    Trial.layer,
    Trial.init,
    Trial.reparam,
    Trial.train_eigenvalues,
    Trial.seed,
)
TRIAL_LIST_COLUMNS = (
    Trial.id,
    Trial.sweep_id,
    Trial.number,
    Trial.state,
    Trial.attempt,
    *TRIAL_CONFIG_COLUMNS,
    Trial.config_hash,
    Trial.reused_from,
    Trial.error,
    Trial.created_at,
    Trial.started_at,
    Trial.finished_at,
)


class SettledCounts:
    """Trials per state of the sweeps whose counts can no longer change, kept by a long-lived reader
    (the API keeps one per app) so that listing finished sweeps stops counting their trials.

    A sweep's counts settle when it is closed (completed, failed or cancelled), every trial of it is
    in a final state, and it closed over `margin` ago: nothing moves a final trial again or reopens a
    closed sweep, and the margin outlasts a transaction that began before the sweep closed and may
    still add a trial to it (a search's `ask`). At most `max_sweeps` are kept, the oldest dropped.
    Keep one per database: sweep ids are the keys."""

    def __init__(self, max_sweeps: int = 100_000, margin: timedelta = timedelta(minutes=1)):
        self.max_sweeps, self.margin = max_sweeps, margin
        self._counts: dict[int, dict[str, int]] = {}
        self._lock = threading.Lock()

    def get(self, sweep_id: int) -> dict[str, int] | None:
        return self._counts.get(sweep_id)

    def offer(self, sweep: Sweep, counts: dict[str, int]) -> None:
        """Keep `counts` (just read, after `sweep`'s row) when they have settled."""
        settled = (
            sweep.state in models.FINAL_SWEEP_STATES
            and sweep.finished_at is not None
            and sweep.finished_at < utcnow() - self.margin
            and all(state in models.FINAL_TRIAL_STATES for state in counts)
        )
        if settled:
            with self._lock:
                self._counts[sweep.id] = dict(counts)
                while len(self._counts) > self.max_sweeps:
                    del self._counts[next(iter(self._counts))]


def sweep_summary(
    session: Session,
    sweep: Sweep,
    counts: dict[str, int] | None = None,
    settled: SettledCounts | None = None,
) -> dict[str, Any]:
    """A sweep with its progress; `counts` (its trials per state) are queried unless given."""
    counts = sweeps_state_counts(session, [sweep], settled)[sweep.id] if counts is None else counts
    total = sum(counts.values())
    done = sum(n for state, n in counts.items() if state in models.FINAL_TRIAL_STATES)
    return {
        "id": sweep.id,
        "name": sweep.name,
        "state": sweep.state,
        "owner": sweep.owner,
        "n_trials": total,
        "trials_by_state": counts,
        "progress": done / total if total else 0.0,
        "created_at": sweep.created_at,
        "finished_at": sweep.finished_at,
        "error": sweep.error,
    }


def sweeps_state_counts(
    session: Session, sweeps: Sequence[Sweep], settled: SettledCounts | None = None
) -> dict[int, dict[str, int]]:
    """Trials per state of each of `sweeps` (an empty dict for a sweep without trials), in one
    query for those whose counts `settled` does not keep: what a page of sweeps shows, without a
    query per sweep."""
    counts: dict[int, dict[str, int]] = {}
    to_count: list[Sweep] = []
    for sweep in sweeps:
        kept = settled.get(sweep.id) if settled is not None else None
        if kept is None:
            counts[sweep.id] = {}
            to_count.append(sweep)
        else:
            counts[sweep.id] = dict(kept)
    if to_count:
        query = (
            select(Trial.sweep_id, Trial.state, func.count())
            .where(Trial.sweep_id.in_([sweep.id for sweep in to_count]))
            .group_by(Trial.sweep_id, Trial.state)
        )
        for sweep_id, state, n in session.execute(query):
            counts[sweep_id][state] = n
        if settled is not None:
            for sweep in to_count:
                settled.offer(sweep, counts[sweep.id])
    return counts


def list_sweeps(
    session: Session, *, state: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Sweep], int]:
    """A page of sweeps, newest first, with only SWEEP_LIST_COLUMNS loaded (others load on access),
    and how many there are in all."""
    query = select(Sweep).options(load_only(*SWEEP_LIST_COLUMNS))
    count = select(func.count()).select_from(Sweep)
    if state is not None:
        query, count = query.where(Sweep.state == state), count.where(Sweep.state == state)
    sweeps = session.scalars(query.order_by(Sweep.id.desc()).offset(offset).limit(limit)).all()
    return list(sweeps), session.scalar(count) or 0


# A trial's result as a list shows it (`result` of each item of list_trials).
RESULT_LIST_COLUMNS = (Result.status, Result.metric, Result.best_epoch, Result.val_metric, Result.test_metric)
# What list_trials sorts by: "metric" is the result's test metric, "duration" finished − started.
TRIAL_SORT_KEYS = ("number", "state", "attempt", "metric", "duration")


def _duration_seconds(dialect: str):
    """`finished_at − started_at` in seconds as an SQL expression of the session's dialect."""
    if dialect == "postgresql":
        return func.extract("epoch", Trial.finished_at - Trial.started_at)
    return (func.julianday(Trial.finished_at) - func.julianday(Trial.started_at)) * 86400.0


def list_trials(
    session: Session,
    sweep_id: int,
    *,
    sort: str = "number",
    descending: bool = False,
    state: str | None = None,
    offset: int = 0,
    limit: int | None = 100,
) -> tuple[list[dict[str, Any]], int]:
    """A page of a sweep's trials (`limit` None: all) sorted by one of TRIAL_SORT_KEYS (by default
    planning order; trials without a value last, then by number), and how many match. Each is a
    dict of TRIAL_LIST_COLUMNS, its `seconds` (finished − started, None while either is missing: the
    pages show it; TrialSummary ignores it) and its `result` (RESULT_LIST_COLUMNS, or None).
    Two statements; rows straight to dicts, no ORM objects (a page is read on every poll)."""
    if sort not in TRIAL_SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; valid keys: {', '.join(TRIAL_SORT_KEYS)}")
    seconds = _duration_seconds(session.get_bind().dialect.name)
    key = {
        "number": Trial.number,
        "state": Trial.state,
        "attempt": Trial.attempt,
        "metric": Result.test_metric,
        "duration": seconds,
    }[sort]
    ordered = key.desc() if descending else key.asc()
    # a trial's number is never NULL and tells trials apart: planning order needs nothing more
    order = [ordered] if sort == "number" else [key.is_(None), ordered, Trial.number]
    names = [column.key for column in TRIAL_LIST_COLUMNS]
    result_names = [column.key for column in RESULT_LIST_COLUMNS]
    query = (
        select(*TRIAL_LIST_COLUMNS, seconds.label("seconds"), *RESULT_LIST_COLUMNS)
        .outerjoin(Result, Result.trial_id == Trial.id)
        .where(Trial.sweep_id == sweep_id)
    )
    count = select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep_id)
    if state is not None:
        query, count = query.where(Trial.state == state), count.where(Trial.state == state)
    trials = []
    for row in session.execute(query.order_by(*order).offset(offset).limit(limit)):
        trial = dict(zip(names, row[: len(names)], strict=True))
        trial["seconds"] = row[len(names)]
        result = row[len(names) + 1 :]  # a result's status is never NULL: NULL is no result
        trial["result"] = None if result[0] is None else dict(zip(result_names, result, strict=True))
        trials.append(trial)
    return trials, session.scalar(count) or 0


def trial_detail(session: Session, trial: Trial) -> dict[str, Any]:
    result = session.scalar(select(Result).where(Result.trial_id == trial.id))
    return {
        "id": trial.id,
        "sweep_id": trial.sweep_id,
        "number": trial.number,
        "state": trial.state,
        "attempt": trial.attempt,
        "task": trial.task,
        "layer": trial.layer,
        "init": trial.init,
        "reparam": trial.reparam,
        "train_eigenvalues": trial.train_eigenvalues,
        "seed": trial.seed,
        "config_hash": trial.config_hash,
        "config": trial.config,
        "node_id": trial.node_id,
        "worker": trial.worker,
        "error": trial.error,
        "reused_from": trial.reused_from,
        "optuna_trial": trial.optuna_trial,
        "created_at": trial.created_at,
        "started_at": trial.started_at,
        "finished_at": trial.finished_at,
        "result": None
        if result is None
        else {
            "status": result.status,
            "metric": result.metric,
            "best_epoch": result.best_epoch,
            "val_metric": result.val_metric,
            "test_metric": result.test_metric,
        },
    }


def epoch_metrics(session: Session, trial_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(EpochMetric)
        .where(EpochMetric.trial_id == trial_id)
        .order_by(EpochMetric.attempt, EpochMetric.epoch)
    ).all()
    return [{"attempt": r.attempt, "epoch": r.epoch, **r.metrics} for r in rows]


@dataclass
class StoredDiagnostics:
    """A trial's end-of-trial diagnostics as stored (`orchestrator.store.record_diagnostics`).

    source_trial_id: the trial that computed them — the trial itself, or for a reused result the
      trial whose result it reuses.
    attempt: that trial's attempt that wrote them; None when there are none.
    snapshots: {"init" | "best" | "end": one dict per SSM layer, in layer order, quantity → float32
      array}: "eigenvalues" λ and "Ab" with [re, im] in a last axis of 2 (S4D (H, N/2, 2), S5
      (N/2, 2), S4 (H, N, 2)), "dt", "memory_function" MF (channels, max_lag) with MF[h, k] at lag
      k = 0 … max_lag − 1, "memory_capacity" MC (channels,) with its closed-form tail. NaN: an
      unstable channel. Only the snapshots that were recorded (a diverged trial has "init" only).
    fourier_noise: [{"frequency": f (cycles per step) or None for clean, "accuracy": fraction}, ...]
      or None (not asked for, or not a classification task).
    The per-epoch diagnostic scalars are in the epoch metrics (`epoch_metrics`).
    """

    source_trial_id: int
    attempt: int | None = None
    snapshots: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    fourier_noise: list[dict[str, Any]] | None = None


def trial_diagnostics(
    session: Session, trial: Trial, snapshots: Iterable[str] | None = None
) -> StoredDiagnostics:
    """The stored diagnostics of `trial` (its reused original's when it reused a result), limited to
    `snapshots` when given; empty (`attempt` None, no snapshots) when the trial has none."""
    source = trial.reused_from or trial.id
    stored = StoredDiagnostics(source_trial_id=source)
    header = session.get(models.TrialDiagnostics, source)
    if header is None:
        return stored
    stored.attempt, stored.fourier_noise = header.attempt, header.fourier_noise
    query = select(models.TrialDiagnosticArray).where(models.TrialDiagnosticArray.trial_id == source)
    if snapshots is not None:
        query = query.where(models.TrialDiagnosticArray.snapshot.in_(list(snapshots)))
    rows = session.scalars(query.order_by(models.TrialDiagnosticArray.layer)).all()
    for snapshot in models.DIAGNOSTIC_SNAPSHOTS:  # in time order, whatever the database returns
        layers: dict[int, dict[str, np.ndarray]] = {}
        for row in rows:
            if row.snapshot == snapshot:
                layers.setdefault(row.layer, {})[row.quantity] = decode_array(row.shape, row.data)
        if layers:
            stored.snapshots[snapshot] = [layers[i] for i in sorted(layers)]
    return stored


def owner_load(session: Session, owner: str) -> tuple[int, int]:
    """(open sweeps, pending trials) of `owner`: what the service's per-owner quotas count."""
    open_sweeps = session.scalar(
        select(func.count()).where(Sweep.owner == owner, Sweep.state.in_(models.OPEN_SWEEP_STATES))
    )
    pending_trials = session.scalar(
        select(func.count())
        .select_from(Trial)
        .join(Sweep, Sweep.id == Trial.sweep_id)
        .where(Sweep.owner == owner, Trial.state == TrialState.PENDING)
    )
    return int(open_sweeps or 0), int(pending_trials or 0)


def completed_config_hashes(session: Session, hashes: set[str]) -> set[str]:
    """Those of `hashes` that a completed trial has (its result would be reused by a new sweep,
    `store.create_sweep`); for a dry run's plan."""
    if not hashes:
        return set()
    found = session.scalars(
        select(Trial.config_hash)
        .join(Result, Result.trial_id == Trial.id)
        .where(
            Trial.config_hash.in_(hashes), Trial.state == TrialState.COMPLETED, Trial.reused_from.is_(None)
        )
        .distinct()
    )
    return set(found)


# --- what the web pages read (api/pages): a page of rows in a fixed number of statements ---------------


class BestTrial(NamedTuple):
    """The completed trial with the highest test metric of a sweep (a fraction, or r²)."""

    sweep_id: int
    trial_id: int
    number: int
    task: str
    layer: str
    init: str
    reparam: str
    train_eigenvalues: bool
    metric: str
    test_metric: float


def best_trials(session: Session, sweep_ids: Sequence[int]) -> dict[int, BestTrial]:
    """Each sweep's best completed trial so far, by test metric (ties: the lower trial id), in one
    statement; sweeps with no completed result are absent."""
    if not sweep_ids:
        return {}
    # A window over the sweeps' results. Joining back on max(test_metric) per sweep instead is faster on
    # SQLite but PostgreSQL plans that float-equality join as nested loops: minutes at 10⁴ results.
    position = (
        func.row_number()
        .over(partition_by=Trial.sweep_id, order_by=(Result.test_metric.desc(), Trial.id))
        .label("position")
    )
    ranked = (
        select(
            Trial.sweep_id,
            Trial.id.label("trial_id"),
            Trial.number,
            Trial.task,
            Trial.layer,
            Trial.init,
            Trial.reparam,
            Trial.train_eigenvalues,
            Result.metric,
            Result.test_metric,
            position,
        )
        .join(Result, Result.trial_id == Trial.id)
        .where(
            Trial.sweep_id.in_(sweep_ids),
            Trial.state == "completed",
            Result.status == "completed",
            Result.test_metric.is_not(None),
        )
        .subquery()
    )
    fields = [ranked.c[name] for name in BestTrial._fields]
    rows = session.execute(select(*fields).where(ranked.c.position == 1))
    return {row.sweep_id: BestTrial(*row) for row in rows}


def result_payload(session: Session, trial_id: int) -> dict[str, Any] | None:
    """The stored TrialResult of a trial (its diagnostics, parameters, wall time), or None."""
    return session.scalar(select(Result.payload).where(Result.trial_id == trial_id))


# --- study runs (the /studies page) ------------------------------------------------------------------


def study_runs_page(
    session: Session, *, offset: int = 0, limit: int = 10
) -> tuple[list[models.StudyRunRecord], int]:
    """A page of recorded study runs, newest first, and how many there are (two statements)."""
    rows = session.scalars(
        select(models.StudyRunRecord).order_by(models.StudyRunRecord.id.desc()).offset(offset).limit(limit)
    ).all()
    return list(rows), session.scalar(select(func.count()).select_from(models.StudyRunRecord)) or 0
