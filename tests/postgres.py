"""The PostgreSQL half of the test matrix: one helper for every test directory.

The server is at 127.0.0.1:5432 (database `test`, trust auth; SSMBENCH_TEST_PG overrides). Each test
gets a schema of its own, selected through `search_path` in the URL, tagged with the schema as
`application_name` (so a fault test can terminate only its own connections), and dropped afterwards
together with the `<schema>_optuna` sibling that Optuna's studies use.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

PG_BASE = os.environ.get("SSMBENCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def unreachable_reason() -> str | None:
    """None when the server answers, else one line saying why not."""
    from orchestrator.db import postgres_unreachable

    reason = postgres_unreachable(PG_BASE)
    return reason and f"PostgreSQL {reason}"


def require_postgres() -> None:
    """Skip the calling test when no server answers — but fail under CI, which must reach one."""
    reason = unreachable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def schema_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}&application_name={schema}"


@contextlib.contextmanager
def postgres_schema(prefix: str = "t", migrate: bool = True) -> Iterator[str]:
    """A new schema (migrated unless `migrate=False`), dropped afterwards; yields its URL."""
    from orchestrator.db import upgrade

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = schema_url(schema)
        if migrate:
            upgrade(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema}_optuna CASCADE"))
        admin.dispose()
