"""Indexes for the reads of a sweep's trials: counts by state, and a page in planning order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

`GET /api/v1/sweeps` counts the trials of a page of sweeps per state (`GROUP BY sweep_id, state`
over `sweep_id IN (…)`) and `GET /api/v1/sweeps/{id}` one sweep's; `GET /api/v1/sweeps/{id}/trials`
reads a page of one sweep's trials ordered by `number` and counts them (per state with `?state=`).
The existing indexes are `(sweep_id)` and `(state, sweep_id)`: the counts read every trial row of
the sweeps (or the whole `(state, sweep_id)` index), and a page sorts all of a sweep's trials first.
`(sweep_id, state)` answers the counts from the index alone and `(sweep_id, number)` reads a page
in order and stops at its end (bench/RESULTS.md "API under load").
"""

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"


def upgrade() -> None:
    op.create_index("ix_trials_sweep_state", "trials", ["sweep_id", "state"])
    op.create_index("ix_trials_sweep_number", "trials", ["sweep_id", "number"])


def downgrade() -> None:
    op.drop_index("ix_trials_sweep_number", table_name="trials")
    op.drop_index("ix_trials_sweep_state", table_name="trials")
