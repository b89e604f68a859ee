"""Read-side queries the API and CLI share: sweeps with progress, trials, epoch metrics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from .models import FINAL_TRIAL_STATES, OPEN_SWEEP_STATES, EpochMetric, Result, Sweep, Trial, TrialState
from .store import state_counts


def sweep_summary(session: Session, sweep: Sweep, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A sweep with its progress; `counts` (its trials per state) are queried unless given."""
    counts = state_counts(session, sweep.id) if counts is None else counts
    total = sum(counts.values())
    done = sum(n for state, n in counts.items() if state in FINAL_TRIAL_STATES)
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


def sweeps_state_counts(session: Session, sweep_ids: list[int]) -> dict[int, dict[str, int]]:
    """Trials per state of each of `sweep_ids` (an empty dict for a sweep without trials), in one
    query: what a page of sweeps shows, without a query per sweep."""
    counts: dict[int, dict[str, int]] = {sweep_id: {} for sweep_id in sweep_ids}
    if sweep_ids:
        query = (
            select(Trial.sweep_id, Trial.state, func.count())
            .where(Trial.sweep_id.in_(sweep_ids))
            .group_by(Trial.sweep_id, Trial.state)
        )
        for sweep_id, state, n in session.execute(query):
            counts[sweep_id][state] = n
    return counts


def list_sweeps(
    session: Session, *, state: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Sweep], int]:
    query = select(Sweep)
    count = select(func.count()).select_from(Sweep)
    if state is not None:
        query, count = query.where(Sweep.state == state), count.where(Sweep.state == state)
    sweeps = session.scalars(query.order_by(Sweep.id.desc()).offset(offset).limit(limit)).all()
    return list(sweeps), session.scalar(count) or 0


def list_trials(
    session: Session, sweep_id: int, *, state: str | None = None, offset: int = 0, limit: int = 100
) -> tuple[list[Trial], int]:
    # The JSON columns are deferred: a page of trials (TrialSummary) does not show them, and decoding
    # them was most of what listing a page cost.
    query = (
        select(Trial).options(defer(Trial.config), defer(Trial.resources)).where(Trial.sweep_id == sweep_id)
    )
    count = select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep_id)
    if state is not None:
        query, count = query.where(Trial.state == state), count.where(Trial.state == state)
    trials = session.scalars(query.order_by(Trial.number).offset(offset).limit(limit)).all()
    return list(trials), session.scalar(count) or 0


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


def owner_load(session: Session, owner: str) -> tuple[int, int]:
    """(open sweeps, pending trials) of `owner`: what the service's per-owner quotas count."""
    open_sweeps = session.scalar(
        select(func.count()).where(Sweep.owner == owner, Sweep.state.in_(OPEN_SWEEP_STATES))
    )
    pending_trials = session.scalar(
        select(func.count())
        .select_from(Trial)
        .join(Sweep, Sweep.id == Trial.sweep_id)
        .where(Sweep.owner == owner, Trial.state == TrialState.PENDING)
    )
    return int(open_sweeps or 0), int(pending_trials or 0)
