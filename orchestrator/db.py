"""Engines, sessions and migrations for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import migrations

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
VERSION_TABLE = "ssmbench_alembic_version"  # not Alembic's default: Optuna's migrations use that one


class DatabaseNotMigrated(RuntimeError):
    """The database lacks our tables or is behind the code's schema."""


def engine_options(url: str) -> dict[str, Any]:
    """`create_engine`'s options for `url`, for engines made by others from a URL (Optuna's
    storage): SQLite waits 30 s for a lock; PostgreSQL pre-pings every checkout, so a connection the
    server dropped is replaced."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}


SERVICE_POOL = {"pool_size": 5, "max_overflow": 5}
"""The PostgreSQL pool of a scheduler's or the API's engine (`make_engine`): at most 10 connections."""
WORKER_POOL = {"pool_size": 2, "max_overflow": 1}
"""The PostgreSQL pool of a Ray worker process (`process_sessions`): a trial's own writes and its
heartbeat thread hold one connection each, the search's pruning hook a third at most.

So the connections to PostgreSQL are bounded by
    3 × (Ray worker processes that ran a trial) + 10 × (scheduler and API engines)
    + 15 × (Optuna storages opened: one per scheduler with a search sweep, one per worker running one)
(`connection_bound`; tests/orchestrator/test_connections.py measures it in `pg_stat_activity`)."""


def connection_bound(worker_processes: int, service_engines: int, optuna_storages: int = 0) -> int:
    """The most PostgreSQL connections our processes can hold at once (see `WORKER_POOL`)."""
    per_engine = lambda pool: pool["pool_size"] + pool["max_overflow"]  # noqa: E731
    optuna = engine_options("postgresql://")
    return (
        per_engine(WORKER_POOL) * worker_processes
        + per_engine(SERVICE_POOL) * service_engines
        + per_engine(optuna) * optuna_storages
    )


def make_engine(url: str, pool: dict[str, int] | None = None) -> Engine:
    """An engine for `url`. SQLite gets WAL (readers never block the writer), a 30 s busy timeout
    and foreign keys on every connection. PostgreSQL gets the `pool` (default `SERVICE_POOL`) and a
    ping per checkout, so a connection the server dropped is replaced before use (a test drops
    every connection mid-sweep; pinging only idle connections did not survive it)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **engine_options(url))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **(pool or SERVICE_POOL))


def postgres_unreachable(url: str) -> str | None:
    """None when the PostgreSQL server at `url` answers within 3 s, else one line saying why not."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as err:  # any failure to connect means: no server here
        return f"not reachable at {url}: {type(err).__name__}: {err}".splitlines()[0]
    return None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@functools.lru_cache(maxsize=4)
def process_sessions(database_url: str) -> sessionmaker[Session]:
    """The session factory of this process for `database_url`: one engine (one connection pool) per
    process, shared by everything a Ray worker runs — the trial's writes and the search's hook — with
    the small `WORKER_POOL`."""
    return session_factory(make_engine(database_url, WORKER_POOL))


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with factory() as session, session.begin():
        yield session


def in_transaction(
    factory: sessionmaker[Session], work: Callable[[Session], T], attempts: int = 6, backoff: float = 0.2
) -> T:
    """Run `work(session)` in a transaction, retrying when the connection was lost or the database
    was busy (a restarted PostgreSQL, a terminated backend, SQLite's lock). `work` must be idempotent
    — every write in `orchestrator.store` is."""
    for attempt in range(attempts):
        try:
            with transaction(factory) as session:
                return work(session)
        except (OperationalError, DBAPIError) as err:
            if attempt == attempts - 1 or not (
                isinstance(err, OperationalError) or err.connection_invalidated
            ):
                raise
            log.warning("database error (%s), retrying: %s", type(err).__name__, str(err).splitlines()[0])
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def insert_ignoring_conflicts(session: Session, table):
    """INSERT … ON CONFLICT DO NOTHING for the dialect in use (SQLite or PostgreSQL): the idempotent
    write every worker and scheduler insert goes through."""
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate our tables (`ssmbench db upgrade`). Optuna's tables are Optuna's own."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def require_migrated(engine: Engine) -> None:
    """Refuse to run on a database whose schema is not at the code's head revision."""
    with engine.connect() as connection:
        current = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
    if current != head_revision():
        state = "has no ssmbench tables" if current is None else f"is at revision {current}"
        raise DatabaseNotMigrated(
            f"the database {engine.url.render_as_string(hide_password=True)} {state}; "
            f"run `ssmbench db upgrade` to bring it to {head_revision()}"
        )
