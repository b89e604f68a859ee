"""API tokens get a role (`user` | `admin`), an optional expiry and the time they were revoked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

`revoked_at` replaces the `revoked` flag (a token revoked before this migration keeps that state,
dated by the migration). Existing tokens become `user` tokens: nobody is an admin until an operator
says so (`ssmbench token create --admin`).
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("role", sa.String(length=10), nullable=False, server_default="user"))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    tokens = sa.table(
        "api_tokens", sa.column("revoked", sa.Boolean), sa.column("revoked_at", sa.DateTime(timezone=True))
    )
    op.execute(
        tokens.update().where(tokens.c.revoked.is_(True)).values(revoked_at=sa.func.current_timestamp())
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("revoked", sa.Boolean(), nullable=False, server_default=sa.false()))
    tokens = sa.table(
        "api_tokens", sa.column("revoked", sa.Boolean), sa.column("revoked_at", sa.DateTime(timezone=True))
    )
    op.execute(tokens.update().where(tokens.c.revoked_at.is_not(None)).values(revoked=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
        batch.drop_column("role")
