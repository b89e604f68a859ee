"""Sweeps record why they failed: `sweeps.error`, set with the new sweep state `failed`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

The scheduler isolates sweeps: an exception while handling one (its stored spec no longer reads,
planning or the search's ask/tell raises) marks that sweep `failed` with a short reason here instead
of stopping every sweep's scheduling. `state` is a plain string column, so the new state needs no
schema change of its own.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    # the code before this revision knows no failed sweep: what it can show is a closed one
    op.execute("UPDATE sweeps SET state = 'cancelled' WHERE state = 'failed'")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("error")
