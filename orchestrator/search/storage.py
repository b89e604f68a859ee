"""Where Optuna's tables live, beside ours (DESIGN.md "Contracts").

Optuna's table names include `trials`, which is also ours, so the two schemas cannot share one
namespace. Optuna gets its own, next to ours (`optuna_storage_url`):
- SQLite `…/name.db` → the file `…/name-optuna.db` beside it (WAL, like ours);
- PostgreSQL → the schema `<schema>_optuna` in the same database, where `<schema>` is the first
  entry of the URL's `search_path` option, or the schema `optuna` when the URL sets none.
Engines are made by `orchestrator.db`, with the same options as ours.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from sqlalchemy import exc, text
from sqlalchemy.engine import make_url

from ..db import engine_options, make_engine

_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*(\S+)")


class SearchError(RuntimeError):
    """A database the search cannot use (an in-memory SQLite database, an unsupported server)."""


def _options(database_url: str) -> str:
    options = make_url(database_url).query.get("options", "")
    return " ".join(options) if isinstance(options, tuple) else options


def optuna_schema(database_url: str) -> str:
    """PostgreSQL: the schema holding Optuna's tables for the database at `database_url`."""
    match = _SEARCH_PATH.search(_options(database_url))
    entries = [e.strip().strip('"') for e in match.group(1).split(",")] if match else []
    base = next((e for e in entries if e and e != "$user"), None)
    schema = f"{base}_optuna" if base else "optuna"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
        raise SearchError(f"cannot derive an Optuna schema name from the search_path {match.group(1)!r}")
    return schema.lower()


def optuna_storage_url(database_url: str) -> str:
    """The URL of Optuna's storage for our database at `database_url` (see the module docstring).

    This is also the URL to give `optuna-dashboard`."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database
        if not path or path == ":memory:" or url.query.get("mode") == "memory":
            raise SearchError(
                "an Optuna search needs a database file or server: an in-memory SQLite database "
                "is private to one process"
            )
        p = Path(path)
        return url.set(database=str(p.with_name(f"{p.stem}-optuna{p.suffix or '.db'}"))).render_as_string(
            hide_password=False
        )
    if backend == "postgresql":
        options = _options(database_url)
        setting = f"-csearch_path={optuna_schema(database_url)}"
        if _SEARCH_PATH.search(options):
            options = _SEARCH_PATH.sub(setting, options, count=1)
        else:
            options = f"{options} {setting}".strip()
        return url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    raise SearchError(f"Optuna search supports SQLite and PostgreSQL databases, not {backend!r}")


def _prepare_namespace(database_url: str) -> None:
    """Create Optuna's schema (PostgreSQL), or its SQLite file in WAL mode, before RDBStorage does
    its tables: `make_engine` sets WAL on every SQLite connection."""
    storage_url = optuna_storage_url(database_url)
    sqlite = make_url(storage_url).get_backend_name() == "sqlite"
    engine = make_engine(storage_url if sqlite else database_url)
    try:
        with engine.begin() as connection:
            if not sqlite:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{optuna_schema(database_url)}"'))
    except exc.IntegrityError:  # created concurrently by another process
        pass
    finally:
        engine.dispose()


def open_storage(database_url: str, *, create: bool = True) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for our database; `create` makes its schema and tables when missing."""
    storage_url = optuna_storage_url(database_url)
    if create:
        _prepare_namespace(database_url)
    return optuna.storages.RDBStorage(
        storage_url, engine_kwargs=engine_options(storage_url), skip_table_creation=not create
    )
