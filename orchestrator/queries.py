"""Read-side queries the API and CLI share: sweeps with progress, trials, epoch metrics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from .models import FINAL_TRIAL_STATES, OPEN_SWEEP_STATES, EpochMetric, Result, Sweep, Trial, TrialState
from .store import state_counts


def sweep_summary(session: Session, sweep: Sweep) -> dict[str, Any]:
    counts = state_counts(session, sweep.id)
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
    session: Session, sweep_id: int, *, state: str | None = None, offset: int = 0, limit: int | None = 100
) -> tuple[list[Trial], int]:
    """A page of a sweep's trials in planning order (`limit` None: all), each with its `result`
    loaded, and how many match."""
    query = select(Trial).options(selectinload(Trial.result)).where(Trial.sweep_id == sweep_id)
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
