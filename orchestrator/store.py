"""Every write the orchestrator makes, as small idempotent functions on a Session.

Guards live in the SQL: a trial is claimed only if it is still pending, finished only by the attempt
that runs it, and each epoch row and result is inserted at most once (unique keys + ON CONFLICT DO
NOTHING). So a retried, duplicated or zombie worker cannot double-count anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ssm.config import TrialConfig
from ssm.train import TrialResult

from .array_codec import encode_array
from .db import insert_ignoring_conflicts
from .leaderboard.aggregates import record_result_aggregate
from .models import (
    DIAGNOSTIC_SNAPSHOTS,
    FINAL_TRIAL_STATES,
    OPEN_SWEEP_STATES,
    EpochMetric,
    Result,
    Sweep,
    SweepState,
    Trial,
    TrialDiagnosticArray,
    TrialDiagnostics,
    TrialState,
    utcnow,
)
from .spec import SweepSpec, group_key, plan


def trial_row(sweep_id: int, number: int, config: TrialConfig, resources: dict[str, Any]) -> Trial:
    return Trial(
        sweep_id=sweep_id,
        number=number,
        state=TrialState.PENDING,
        attempt=0,
        config=config.model_dump(mode="json"),
        config_hash=config.hash(),
        group_key=group_key(config),
        task=config.task.name,
        layer=config.model.layer,
        init=config.model.init,
        reparam=config.model.reparam,
        train_eigenvalues=config.model.train_eigenvalues,
        seed=config.seed,
        resources=resources,
    )


def create_sweep(session: Session, spec: SweepSpec, owner: str | None = None) -> Sweep:
    """Store a sweep and (for a grid sweep) all its trials as pending, reusing completed results.

    A trial whose config hash already has a completed result anywhere in the database is stored as
    completed with a copy of that result and `reused_from` pointing at the original.
    """
    sweep = Sweep(
        name=spec.name,
        state=SweepState.PENDING,
        owner=owner,
        spec=spec.model_dump(mode="json"),
        priority=spec.priority,
        max_concurrent=spec.max_concurrent,
    )
    session.add(sweep)
    session.flush()
    if spec.search is None:
        add_trials(session, sweep, plan(spec), spec.resources.model_dump())
    return sweep


def add_trials(
    session: Session, sweep: Sweep, configs: Iterable[TrialConfig], resources: dict[str, Any]
) -> list[Trial]:
    start = session.scalar(select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep.id)) or 0
    trials = [trial_row(sweep.id, start + i, c, resources) for i, c in enumerate(configs)]
    session.add_all(trials)
    session.flush()
    _reuse_completed(session, trials)
    return trials


def _reuse_completed(session: Session, trials: list[Trial]) -> None:
    hashes = {t.config_hash for t in trials}
    if not hashes:
        return
    done = session.execute(
        select(Trial.config_hash, Result)
        .join(Result, Result.trial_id == Trial.id)
        .where(
            Trial.config_hash.in_(hashes), Trial.state == TrialState.COMPLETED, Trial.reused_from.is_(None)
        )
        .order_by(Trial.id)
    ).all()
    originals: dict[str, Result] = {}
    for config_hash, result in done:
        originals.setdefault(config_hash, result)
    now = utcnow()
    for trial in trials:
        original = originals.get(trial.config_hash)
        if original is None or original.trial_id == trial.id:
            continue
        trial.state, trial.reused_from, trial.finished_at = TrialState.COMPLETED, original.trial_id, now
        session.add(
            Result(
                trial_id=trial.id,
                attempt=0,
                status=original.status,
                metric=original.metric,
                best_epoch=original.best_epoch,
                val_metric=original.val_metric,
                test_metric=original.test_metric,
                payload=original.payload,
            )
        )
        session.flush()
        record_result_aggregate(session, trial.id)


def claim(session: Session, trial_id: int, worker: str | None = None) -> int | None:
    """pending → running with attempt + 1; returns the new attempt, or None if someone else has it."""
    now = utcnow()
    row = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.state == TrialState.PENDING)
        .values(
            state=TrialState.RUNNING,
            attempt=Trial.attempt + 1,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            error=None,
        )
        .returning(Trial.attempt)
    ).first()
    if row is None:
        return None
    session.execute(
        update(Sweep)
        .where(Sweep.id == Trial.sweep_id, Trial.id == trial_id, Sweep.state == SweepState.PENDING)
        .values(state=SweepState.RUNNING)
    )
    return row[0]


def claim_many(session: Session, trial_ids: list[int]) -> dict[int, int]:
    """`claim` for many trials in two statements (the scheduler's batch): returns the new attempt of
    each trial that was still pending; the others are someone else's."""
    if not trial_ids:
        return {}
    now = utcnow()
    rows = session.execute(
        update(Trial)
        .where(Trial.id.in_(trial_ids), Trial.state == TrialState.PENDING)
        .values(
            state=TrialState.RUNNING,
            attempt=Trial.attempt + 1,
            started_at=now,
            heartbeat_at=now,
            worker=None,
            error=None,
        )
        .returning(Trial.id, Trial.sweep_id, Trial.attempt)
        .execution_options(synchronize_session=False)
    ).all()
    sweep_ids = {sweep_id for _, sweep_id, _ in rows}
    if sweep_ids:
        session.execute(
            update(Sweep)
            .where(Sweep.id.in_(sweep_ids), Sweep.state == SweepState.PENDING)
            .values(state=SweepState.RUNNING)
            .execution_options(synchronize_session=False)
        )
    return {trial_id: attempt for trial_id, _, attempt in rows}


def heartbeat(
    session: Session, trial_id: int, attempt: int, node_id: str | None = None, worker: str | None = None
) -> bool:
    """Refresh the heartbeat; False when this attempt no longer owns the trial (stop working)."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if node_id is not None:
        values["node_id"] = node_id
    if worker is not None:
        values["worker"] = worker
    result = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.attempt == attempt, Trial.state == TrialState.RUNNING)
        .values(**values)
    )
    return result.rowcount == 1


def record_epoch(session: Session, trial_id: int, attempt: int, metrics: dict[str, Any]) -> None:
    """One epoch's metrics; a second write of the same (trial, attempt, epoch) is ignored."""
    statement = (
        insert_ignoring_conflicts(session, EpochMetric)
        .values(
            trial_id=trial_id,
            attempt=attempt,
            epoch=int(metrics["epoch"]),
            train_loss=metrics.get("train_loss"),
            val_loss=metrics.get("val_loss"),
            val_metric=metrics.get("val_metric"),
            metrics=metrics,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["trial_id", "attempt", "epoch"])
    )
    session.execute(statement)


def finish(
    session: Session,
    trial_id: int,
    attempt: int,
    result: TrialResult | None,
    state: str,
    error: str | None = None,
) -> bool:
    """running → a final state for the attempt that owns the trial, storing its result once.

    Returns False (and writes nothing) when the attempt no longer owns the trial — a zombie worker
    from an attempt that was given up, or a trial cancelled meanwhile. The result's diagnostics go
    to their own tables (`record_diagnostics`), in the same transaction, not into `Result.payload`.
    """
    if state not in FINAL_TRIAL_STATES:
        raise ValueError(f"{state!r} is not a final trial state; valid: {', '.join(FINAL_TRIAL_STATES)}")
    owned = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.attempt == attempt, Trial.state == TrialState.RUNNING)
        .values(state=state, finished_at=utcnow(), error=error)
    )
    if owned.rowcount != 1:
        return False
    if result is not None:
        record_diagnostics(session, trial_id, attempt, result)
    kept = (TrialState.COMPLETED, TrialState.PRUNED)
    if result is not None and result.status in kept and result.test_metric is not None:
        statement = (
            insert_ignoring_conflicts(session, Result)
            .values(
                trial_id=trial_id,
                attempt=attempt,
                status=result.status,
                metric=result.metric,
                best_epoch=result.best_epoch,
                val_metric=result.val_metric,
                test_metric=result.test_metric,
                # the arrays and the Fourier table live in their own tables (`record_diagnostics`)
                payload=result.model_dump(mode="json", exclude={"diagnostics": {"arrays", "fourier"}}),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["trial_id"])
        )
        session.execute(statement)
        if state == TrialState.COMPLETED:
            record_result_aggregate(session, trial_id)  # the leaderboard's running sums, same transaction
    return True


def record_diagnostics(session: Session, trial_id: int, attempt: int, result: TrialResult) -> bool:
    """Store the end-of-trial diagnostics of `result` (`TrialResult.diagnostics`): the per-layer
    arrays of each snapshot (init, best, end) and the Fourier-noise table.

    Written once per trial: when the trial already has diagnostics (a retried transaction, a second
    writer) nothing is written and False is returned, so the stored set always comes from a single
    attempt. A result without diagnostics writes nothing (False). `finish` calls this for the attempt
    that owns the trial.
    """
    arrays = result.diagnostics.get("arrays") or {}
    fourier = result.diagnostics.get("fourier")
    unknown = set(arrays) - set(DIAGNOSTIC_SNAPSHOTS)
    if unknown:
        raise ValueError(
            f"unknown diagnostics snapshot(s) {sorted(unknown)}; valid: {', '.join(DIAGNOSTIC_SNAPSHOTS)}"
        )
    if not arrays and fourier is None:
        return False
    claimed = session.execute(
        insert_ignoring_conflicts(session, TrialDiagnostics)
        .values(trial_id=trial_id, attempt=attempt, fourier_noise=fourier, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["trial_id"])
        .returning(TrialDiagnostics.trial_id)
    ).first()
    if claimed is None:  # already recorded
        return False
    rows = []
    for snapshot, layers in arrays.items():
        for layer, quantities in enumerate(layers):
            for quantity, values in quantities.items():
                shape, data = encode_array(values)
                rows.append(
                    {
                        "trial_id": trial_id,
                        "snapshot": snapshot,
                        "layer": layer,
                        "quantity": quantity,
                        "shape": shape,
                        "data": data,
                    }
                )
    if rows:
        session.execute(
            insert_ignoring_conflicts(session, TrialDiagnosticArray).on_conflict_do_nothing(
                index_elements=["trial_id", "snapshot", "layer", "quantity"]
            ),
            rows,
        )
    return True


def requeue(session: Session, trial_id: int, attempt: int, max_retries: int, reason: str) -> str:
    """A trial whose worker or node died: back to pending while retries remain, else failed."""
    trial = session.get(Trial, trial_id, with_for_update=True)
    if trial is None or trial.state != TrialState.RUNNING or trial.attempt != attempt:
        return trial.state if trial else "missing"
    if trial.attempt <= max_retries:
        trial.state, trial.error = TrialState.PENDING, f"attempt {attempt} lost: {reason}"
    else:
        trial.state, trial.finished_at = TrialState.FAILED, utcnow()
        trial.error = f"attempt {attempt} lost: {reason}; no retries left (max_retries={max_retries})"
    return trial.state


def stale_running(session: Session, older_than: timedelta, exclude: Iterable[int] = ()) -> list[Trial]:
    """Running trials whose heartbeat is older than `older_than` and that this scheduler does not track."""
    cutoff: datetime = utcnow() - older_than
    query = select(Trial).where(Trial.state == TrialState.RUNNING, Trial.heartbeat_at < cutoff)
    exclude = list(exclude)
    if exclude:
        query = query.where(Trial.id.not_in(exclude))
    return list(session.scalars(query))


def cancel_sweep(session: Session, sweep_id: int) -> int:
    """Mark the sweep cancelled and its pending trials cancelled; running ones stop at their next
    epoch (the worker sees the sweep state) or are cancelled by the scheduler. Returns trials touched."""
    return _stop_sweep(session, sweep_id, SweepState.CANCELLED, None)


class SweepFailure(Exception):
    """An error confined to one sweep (its stored spec no longer reads, its search cannot ask or
    tell): the scheduler marks that sweep failed with `reason` and goes on with the others."""

    def __init__(self, sweep_id: int, reason: str):
        super().__init__(f"sweep {sweep_id}: {reason}")
        self.sweep_id, self.reason = sweep_id, reason


def failure_reason(during: str, err: BaseException) -> str:
    """`during` and the exception's type and first line (no traceback), at most 500 characters: what
    a failed sweep's `error` tells its owner. The traceback goes to the log. A pydantic error says
    its first field and message (its own first line only counts the errors)."""
    if isinstance(err, ValidationError) and err.errors():
        first = err.errors()[0]
        lines = [f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"]
    else:
        lines = str(err).strip().splitlines()
    return f"{during}: {type(err).__name__}{': ' + lines[0] if lines else ''}"[:500]


def fail_sweep(session: Session, sweep_id: int, reason: str) -> int:
    """Mark an open sweep failed with `reason`, and its pending trials cancelled (running ones stop
    at their next epoch or are cancelled by the scheduler). A closed sweep is left as it is.
    Returns trials touched."""
    return _stop_sweep(session, sweep_id, SweepState.FAILED, reason)


def _stop_sweep(session: Session, sweep_id: int, state: SweepState, reason: str | None) -> int:
    # Guarded in SQL and without loading the row: the spec of a sweep being failed may not read.
    stopped = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.state.in_(OPEN_SWEEP_STATES))
        .values(state=state, error=reason, finished_at=utcnow())
    ).rowcount
    if not stopped:
        if session.scalar(select(Sweep.id).where(Sweep.id == sweep_id)) is None:
            raise KeyError(sweep_id)
        return 0
    result = session.execute(
        update(Trial)
        .where(Trial.sweep_id == sweep_id, Trial.state == TrialState.PENDING)
        .values(state=TrialState.CANCELLED, finished_at=utcnow())
    )
    return result.rowcount


def state_counts(session: Session, sweep_id: int | None = None) -> dict[str, int]:
    query = select(Trial.state, func.count()).group_by(Trial.state)
    if sweep_id is not None:
        query = query.where(Trial.sweep_id == sweep_id)
    return {state: n for state, n in session.execute(query)}


def close_finished_sweeps(session: Session) -> list[int]:
    """Sweeps whose trials are all final (and that need no more search trials) become completed."""
    open_sweeps = session.scalars(select(Sweep).where(Sweep.state.in_(OPEN_SWEEP_STATES))).all()
    return [sweep.id for sweep in open_sweeps if close_if_finished(session, sweep)]


def close_if_finished(session: Session, sweep: Sweep) -> bool:
    """Complete `sweep` if all its trials are final and it needs no more search trials."""
    counts = state_counts(session, sweep.id)
    unfinished = sum(n for s, n in counts.items() if s not in FINAL_TRIAL_STATES)
    wanted = (
        sweep.spec.get("search")
        and sum(counts.values()) < SweepSpec.model_validate(sweep.spec).trial_budget()
    )
    if unfinished == 0 and counts and not wanted:
        sweep.state, sweep.finished_at = SweepState.COMPLETED, utcnow()
        return True
    return False
