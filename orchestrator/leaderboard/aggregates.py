"""The leaderboard's numbers in SQL: n, mean and std per task × configuration group, and the running
sums in `leaderboard_cells` that the result writer keeps — the write side of the leaderboard, which
`orchestrator.store` calls in the transaction that stores each result.

What counts: trials in state "completed" whose result has status "completed" and a test metric (the
test metric at the best validation epoch, a fraction). Pruned, failed, diverged, cancelled, pending
and running trials do not.

Where the numbers come from: n, Σx and Σx² per task × group are summed in SQL (GROUP BY), and
mean = Σx/n, std = sqrt((Σx² − (Σx)²/n)/(n − 1)) (the sample std; None for one seed) in the same
statement. Over every sweep they are read from `leaderboard_cells` — running sums that
`record_result_aggregate` keeps — because a GROUP BY over all results takes seconds at 10⁶ results on
PostgreSQL (bench/leaderboard.py). For one sweep they are summed from that sweep's results and
trials directly (an index lookup). A result reused from an earlier trial (`Trial.reused_from`)
counts once: under its own sweep it is one of that sweep's results; across sweeps it is the
original's result, already counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import Float, Select, case, cast, func, literal, select, text
from sqlalchemy.orm import Session

from ..db import insert_ignoring_conflicts
from ..models import LeaderboardCell, LeaderboardEntry, Result, Trial


class Aggregate(NamedTuple):
    """One row of `aggregates_from_cells` / `aggregates_from_results`."""

    task: str
    group_key: str
    layer: str
    init: str
    reparam: str
    train_eigenvalues: bool
    metric: str
    n: int
    mean: float
    std: float | None
    sweep_ids: str  # ",3,17,"
    trial_id: int | None  # a trial of the group, whose config names it


# The trial columns that name a leaderboard cell: a configuration group on one task.
GROUP_COLUMNS = (Trial.task, Trial.group_key, Trial.layer, Trial.init, Trial.reparam, Trial.train_eigenvalues)


def _mean_and_std(n, sum_x, sum_xx) -> tuple:
    """SQL expressions for the mean and the sample std from n, Σx, Σx² (expressions or columns).
    The variance is clamped at 0: equal values can leave a rounding residue of either sign. An
    undefined variance (inf − inf: NaN on PostgreSQL, NULL on SQLite) stays undefined, not 0."""
    variance = (sum_xx - sum_x * sum_x / n) / (n - 1)
    std = case((n > 1, func.sqrt(case((variance < 0, 0.0), else_=variance))), else_=None)
    return cast(sum_x, Float) / n, std


def _group_filters(columns, conditions: Mapping[str, Any]) -> list:
    return [getattr(columns, name) == value for name, value in conditions.items() if value is not None]


def aggregates_from_cells(**conditions: Any) -> Select:
    """n, mean, std per task × group over every sweep, from the running sums in `leaderboard_cells`.
    `conditions`: task, layer, init, reparam, train_eigenvalues (None: any)."""
    cell = LeaderboardCell
    mean, std = _mean_and_std(cell.n, cell.sum_x, cell.sum_xx)
    return select(
        cell.task,
        cell.group_key,
        cell.layer,
        cell.init,
        cell.reparam,
        cell.train_eigenvalues,
        cell.metric,
        cell.n,
        mean.label("mean"),
        std.label("std"),
        cell.sweep_ids,
        cell.trial_id,
    ).where(cell.n > 0, *_group_filters(cell, conditions))


def aggregates_from_results(sweep_id: int | None = None, **conditions: Any) -> Select:
    """The same columns as `aggregates_from_cells`, summed from results ⋈ trials (GROUP BY): of one
    sweep, its reused results included; or, with `sweep_id` None, of every result row (reused copies
    too) — the plain query that `leaderboard_cells` replaces, kept for the benchmark."""
    x = Result.test_metric
    n = func.count(x)
    mean, std = _mean_and_std(n, func.sum(x), func.sum(x * x))
    group = GROUP_COLUMNS
    sweep_ids = literal(f",{sweep_id}," if sweep_id is not None else "")
    statement = (
        select(
            *group,
            func.min(Result.metric).label("metric"),
            n.label("n"),
            mean.label("mean"),
            std.label("std"),
            sweep_ids.label("sweep_ids"),
            func.min(Trial.id).label("trial_id"),
        )
        .join(Result, Result.trial_id == Trial.id)
        .where(*counted_rows(), *_group_filters(Trial, conditions))
        .group_by(*group)
    )
    if sweep_id is not None:
        statement = statement.where(Trial.sweep_id == sweep_id)
    return statement


def counted_rows() -> tuple:
    """The rows that count (the leaderboard's rule, the report's too): a completed trial with a
    completed result that has a test metric."""
    return (Trial.state == "completed", Result.status == "completed", Result.test_metric.is_not(None))


# --- keeping leaderboard_cells ----------------------------------------------------------------------


def record_result_aggregate(session: Session, trial_id: int) -> bool:
    """Add a finished trial's result to the leaderboard's running sums, in the caller's transaction.

    Call it after the trial's final state and its result are written (the result writer, and the
    planner when it stores a reused result), before the commit. Idempotent: a trial is added at most
    once, however often this is called. Returns True when the trial was added now; False when it was
    already, or does not count (not completed, no completed result, no test metric). A reused result
    (`reused_from` set) adds the trial's sweep to the cell's `sweep_ids` but not its value: the
    original is counted already.
    """
    trial = session.execute(
        select(
            Trial.id,
            Trial.sweep_id,
            *GROUP_COLUMNS,
            Trial.reused_from,
            Result.metric,
            Result.test_metric,
        )
        .join(Result, Result.trial_id == Trial.id)
        .where(Trial.id == trial_id, *counted_rows())
    ).one_or_none()
    if trial is None:
        return False
    entry = (
        insert_ignoring_conflicts(session, LeaderboardEntry)
        .values(trial_id=trial.id)
        .on_conflict_do_nothing()
    )
    if session.scalar(entry.returning(LeaderboardEntry.trial_id)) is None:
        return False  # counted already

    counted = trial.reused_from is None
    x = trial.test_metric if counted else 0.0
    sweep = f",{trial.sweep_id},"
    cell = insert_ignoring_conflicts(session, LeaderboardCell).values(
        task=trial.task,
        group_key=trial.group_key,
        layer=trial.layer,
        init=trial.init,
        reparam=trial.reparam,
        train_eigenvalues=trial.train_eigenvalues,
        metric=trial.metric,
        n=int(counted),
        sum_x=x,
        sum_xx=x * x,
        sweep_ids=sweep,
        trial_id=trial.id,
    )
    table = LeaderboardCell.__table__.c
    session.execute(
        cell.on_conflict_do_update(
            index_elements=["task", "group_key"],
            set_={
                "n": table.n + cell.excluded.n,
                "sum_x": table.sum_x + cell.excluded.sum_x,
                "sum_xx": table.sum_xx + cell.excluded.sum_xx,
                "sweep_ids": case(
                    (table.sweep_ids.contains(sweep), table.sweep_ids),
                    else_=table.sweep_ids + f"{trial.sweep_id},",
                ),
                "trial_id": func.coalesce(table.trial_id, cell.excluded.trial_id),
            },
        )
    )
    return True


def rebuild_leaderboard_aggregates(session: Session) -> int:
    """Recount `leaderboard_cells` from every result, in the caller's transaction — after deleting
    trials or sweeps (the running sums do not subtract), or to repair a writer that did not record.
    Returns the number of trials counted. On PostgreSQL, result writers wait for it (their
    `record_result_aggregate` then counts what the rebuild did not see); readers do not."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE leaderboard_entries, leaderboard_cells IN SHARE ROW EXCLUSIVE MODE"))
    session.execute(LeaderboardCell.__table__.delete())
    session.execute(LeaderboardEntry.__table__.delete())
    counted_ids = select(Trial.id).join(Result, Result.trial_id == Trial.id).where(*counted_rows())
    session.execute(LeaderboardEntry.__table__.insert().from_select(["trial_id"], counted_ids))

    x = Result.test_metric
    own = Trial.reused_from.is_(None)
    group = GROUP_COLUMNS
    per_sweep = (
        select(
            *group,
            Trial.sweep_id,
            func.min(Result.metric).label("metric"),
            func.sum(case((own, 1), else_=0)).label("n"),
            func.sum(case((own, x), else_=0.0)).label("sum_x"),
            func.sum(case((own, x * x), else_=0.0)).label("sum_xx"),
            func.min(Trial.id).label("trial_id"),
        )
        .join(Result, Result.trial_id == Trial.id)
        .where(*counted_rows())
        .group_by(*group, Trial.sweep_id)
        .subquery()
    )
    s = per_sweep.c
    by_group = (s.task, s.group_key, s.layer, s.init, s.reparam, s.train_eigenvalues)
    cells = select(
        *by_group,
        func.min(s.metric),
        func.sum(s.n),
        func.sum(s.sum_x),
        func.sum(s.sum_xx),
        literal(",") + func.aggregate_strings(cast(s.sweep_id, LeaderboardCell.sweep_ids.type), ",") + ",",
        func.min(s.trial_id),
    ).group_by(*by_group)
    columns = ["task", "group_key", "layer", "init", "reparam", "train_eigenvalues", "metric"]
    columns += ["n", "sum_x", "sum_xx", "sweep_ids", "trial_id"]
    session.execute(LeaderboardCell.__table__.insert().from_select(columns, cells))
    return session.scalar(select(func.count()).select_from(LeaderboardEntry)) or 0


__all__ = [
    "Aggregate",
    "aggregates_from_cells",
    "aggregates_from_results",
    "rebuild_leaderboard_aggregates",
    "record_result_aggregate",
]
