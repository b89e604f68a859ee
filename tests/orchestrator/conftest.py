"""Database fixtures: every orchestrator test runs on SQLite and on PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (database `test`, trust auth); each test gets a schema of
its own (via `search_path` in the URL) that is dropped afterwards. Where no server answers, the
PostgreSQL half is skipped with the reason — in CI it must answer (.ci/run starts it).
"""

from __future__ import annotations

import pytest
from postgres import postgres_schema, require_postgres  # tests/postgres.py

from orchestrator.db import make_engine, session_factory, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty database URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ssmbench.db'}"
        upgrade(url)
        yield url
        return
    require_postgres()
    with postgres_schema("t") as url:
        yield url


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    return session_factory(engine)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of our own for one test module (never another process's cluster), shut down after it."""
    import ray

    if ray.is_initialized():  # a Ray another test module of this process left running
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
