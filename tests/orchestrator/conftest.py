"""Database fixtures: every orchestrator test runs on SQLite and on PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (database `test`, trust auth); each test gets a schema of
its own (via `search_path` in the URL) that is dropped afterwards. Where no server answers, the
PostgreSQL half is skipped with the reason — in CI it must answer (.ci/run starts it).
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from orchestrator.db import make_engine, session_factory, upgrade

PG_BASE = os.environ.get("SSMBENCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as err:  # any failure to connect means: no server here
        return f"PostgreSQL not reachable at {PG_BASE}: {type(err).__name__}: {err}".splitlines()[0]
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty database URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ssmbench.db'}"
        upgrade(url)
        yield url
        return
    reason = _pg_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    # application_name marks this test's connections, so a fault test can terminate only its own
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}&application_name={schema}"
    upgrade(url)
    try:
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    return session_factory(engine)
