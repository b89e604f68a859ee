"""PostgreSQL for the end-to-end tests: a fresh schema per test, dropped afterwards.

The server is SSMBENCH_TEST_PG (default 127.0.0.1:5432, database `test`, trust auth). Where it does
not answer the tests are skipped with the reason — except under CI, which must reach it (.ci/run starts
it), where they fail.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

PG_BASE = os.environ.get("SSMBENCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _unreachable() -> str | None:
    try:
        engine = create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as err:  # any failure to connect means: no server here
        return f"PostgreSQL not reachable at {PG_BASE}: {type(err).__name__}: {err}".splitlines()[0]
    return None


@pytest.fixture
def pg_url():
    """The URL of an empty schema of its own (search_path set through the URL's `options`)."""
    reason = _unreachable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
