"""Leaderboard aggregates: running sums per task × configuration group, and the trials counted in them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

The leaderboard's GROUP BY over results ⋈ trials takes about 3 s at 10⁶ results on PostgreSQL here;
the issue's target is 100 ms. `leaderboard_cells` keeps n, Σx and Σx² of the test metric per
(task, group_key), updated in the transaction that stores each result
(`orchestrator.leaderboard.record_result_aggregate`); `leaderboard_entries` holds the trials already
counted, so recording one twice adds nothing. Existing results are counted here, with the rules of
that function: completed trials with a completed result that has a test metric; a reused result
(`reused_from`) adds its sweep to `sweep_ids` but is not counted again. The SQL is spelled out here,
not imported, so this migration stays what it was when it ran.
"""

import sqlalchemy as sa
from alembic import op

from migrations.shared import configuration_columns

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    entries = op.create_table(
        "leaderboard_entries",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trial_id"),
    )
    cells = op.create_table(
        "leaderboard_cells",
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.String(length=64), nullable=False),
        *configuration_columns(),
        sa.Column("metric", sa.String(length=20), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("sum_x", sa.Float(), nullable=False),
        sa.Column("sum_xx", sa.Float(), nullable=False),
        sa.Column("sweep_ids", sa.Text(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("task", "group_key"),
    )
    _count_existing_results(entries, cells)


def _count_existing_results(entries: sa.Table, cells: sa.Table) -> None:
    trials = sa.table(
        "trials",
        *map(sa.column, ("id", "sweep_id", "state", "task", "group_key", "layer", "init", "reparam")),
        *map(sa.column, ("train_eigenvalues", "reused_from")),
    )
    results = sa.table(
        "results", *map(sa.column, ("trial_id", "status", "metric")), sa.column("test_metric", sa.Float)
    )
    x = results.c.test_metric
    counted = sa.and_(trials.c.state == "completed", results.c.status == "completed", x.is_not(None))
    joined = trials.join(results, results.c.trial_id == trials.c.id)
    counted_ids = sa.select(trials.c.id).select_from(joined).where(counted)
    op.execute(entries.insert().from_select(["trial_id"], counted_ids))

    own = trials.c.reused_from.is_(None)  # a reused result lists its sweep but is not counted again
    columns = ("task", "group_key", "layer", "init", "reparam", "train_eigenvalues")
    per_sweep = (
        sa.select(
            *(trials.c[name] for name in columns),
            trials.c.sweep_id,
            sa.func.min(results.c.metric).label("metric"),
            sa.func.sum(sa.case((own, 1), else_=0)).label("n"),
            sa.func.sum(sa.case((own, x), else_=0.0)).label("sum_x"),
            sa.func.sum(sa.case((own, x * x), else_=0.0)).label("sum_xx"),
            sa.func.min(trials.c.id).label("trial_id"),
        )
        .select_from(joined)
        .where(counted)
        .group_by(*(trials.c[name] for name in columns), trials.c.sweep_id)
        .subquery()
    )
    s = per_sweep.c
    group = [s[name] for name in columns]
    by_group = sa.select(
        *group,
        sa.func.min(s.metric),
        sa.func.sum(s.n),
        sa.func.sum(s.sum_x),
        sa.func.sum(s.sum_xx),
        sa.literal(",") + sa.func.aggregate_strings(sa.cast(s.sweep_id, sa.Text), ",") + ",",
        sa.func.min(s.trial_id),
    ).group_by(*group)
    names = [*columns, "metric", "n", "sum_x", "sum_xx", "sweep_ids", "trial_id"]
    op.execute(cells.insert().from_select(names, by_group))


def downgrade() -> None:
    op.drop_table("leaderboard_cells")
    op.drop_table("leaderboard_entries")
