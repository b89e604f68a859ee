"""Study runs: each `ssmbench study run` recorded once its claims are judged (`study_runs`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

A row holds the study's name and scale, its sweeps `{part: sweep id}` and the claims as
`Study.judge` returned them (`{id, paper, statement, quantity, value, ci, n, rule, verdict}`), so the
/studies page shows every run's verdict table and redraws its figures from those sweeps. Running a
study again adds a row: the history of its verdicts stays.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"


def upgrade() -> None:
    op.create_table(
        "study_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study", sa.String(length=40), nullable=False),
        sa.Column("scale", sa.String(length=10), nullable=False),
        sa.Column("sweeps", sa.JSON(), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_study_runs_study", "study_runs", ["study"])


def downgrade() -> None:
    op.drop_index("ix_study_runs_study", table_name="study_runs")
    op.drop_table("study_runs")
