"""Per-trial diagnostics: the Fourier-noise table (`trial_diagnostics`) and the per-layer arrays at
init, best epoch and end (`trial_diagnostic_arrays`, float32 bytes, `orchestrator.array_codec`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Results stored before this revision keep their diagnostics inside `results.payload`; they are not
moved (no database had them for long: the arrays came with the same release).
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"


def upgrade() -> None:
    op.create_table(
        "trial_diagnostics",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("fourier_noise", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trial_id"),
    )
    op.create_table(
        "trial_diagnostic_arrays",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.String(length=8), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.String(length=40), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["trial_id"], ["trial_diagnostics.trial_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trial_id", "snapshot", "layer", "quantity"),
    )


def downgrade() -> None:
    op.drop_table("trial_diagnostic_arrays")
    op.drop_table("trial_diagnostics")
