"""Definitions that more than one revision uses.

Frozen, like the revisions themselves: a revision must emit the same SQL forever, so nothing here
changes once a revision uses it, and nothing here imports application code. A revision that needs
something different defines it itself (or adds a new definition here).
"""

import sqlalchemy as sa


def configuration_columns() -> list[sa.Column]:
    """The columns naming a model configuration: 0001's `trials` and 0003's `leaderboard_cells`
    (new Column objects on each call: a column belongs to one table)."""
    return [
        sa.Column("layer", sa.String(length=16), nullable=False),
        sa.Column("init", sa.String(length=16), nullable=False),
        sa.Column("reparam", sa.String(length=16), nullable=False),
        sa.Column("train_eigenvalues", sa.Boolean(), nullable=False),
    ]


def baselines_table() -> sa.TableClause:
    """The `baselines` columns that 0002 seeds and 0005 rewrites, for INSERT and DELETE."""
    return sa.table(
        "baselines",
        sa.column("model", sa.String),
        sa.column("task", sa.String),
        sa.column("test_accuracy", sa.Float),
        sa.column("source", sa.String),
    )
