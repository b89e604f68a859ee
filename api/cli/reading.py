"""Where the read commands (`status`, `trials`, `leaderboard`, `report`, `export`) read from.

    with reading(db, url, token) as source:       # a Client, or a DatabaseReader: the same methods
        board = source.leaderboard(LeaderboardFilters(sweep_id=3))

`--db URL` reads that database directly; `--url` or `$SSMBENCH_API_URL` asks the service; with
neither, the default local database (`Settings().database_url`, where `ssmbench run` writes) is read
— so results need no server. Both sources answer with the same models (api.schemas, the
Leaderboard) built by the same queries the API routes call (orchestrator.queries and
orchestrator.leaderboard), so the same tables print; errors come as the client's `ApiError` (a
missing sweep: 404, exit 2) and one line. `connected` is the service client alone (submit, cancel);
`database_session` a session on the database alone (`report`, `export` without --api).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from .common import fail

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Read this database directly (e.g. sqlite:///ssmbench.db). Default: the service at --url / "
        "$SSMBENCH_API_URL when set, else the local database `ssmbench run` writes.",
    ),
]


class DatabaseReader:
    """The read methods of `api.client.Client` over a database session (no server). A direct reader
    sees what the database holds: a failed trial's whole error, as the sweep's owner does."""

    def __init__(self, url: str):
        from orchestrator.db import make_engine, require_migrated, session_factory

        self.url = url
        self.engine = make_engine(url)
        require_migrated(self.engine)
        self.sessions = session_factory(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def sweeps(self, *, state: str | None = None, offset: int = 0, limit: int = 50):
        from orchestrator.queries import list_sweeps, sweep_summary

        from ..schemas import SweepPage

        with self.sessions() as s:
            sweeps, total = list_sweeps(s, state=state, offset=offset, limit=limit)
            items = [sweep_summary(s, sweep) for sweep in sweeps]
        return SweepPage.model_validate({"items": items, "total": total, "offset": offset, "limit": limit})

    def sweep(self, sweep_id: int):
        from orchestrator.queries import sweep_summary

        from ..schemas import SweepDetail

        with self.sessions() as s:
            sweep = self._sweep_or_404(s, sweep_id, "sweep_id")
            return SweepDetail.model_validate({**sweep_summary(s, sweep), "spec": sweep.spec})

    def all_trials(self, sweep_id: int, *, state: str | None = None) -> list:
        from orchestrator.queries import list_trials

        from ..schemas import TrialSummary

        with self.sessions() as s:
            self._sweep_or_404(s, sweep_id, "sweep_id")
            trials, _ = list_trials(s, sweep_id, state=state, limit=None)
            return [TrialSummary.model_validate(trial, from_attributes=True) for trial in trials]

    def leaderboard(self, filters=None):
        from orchestrator.leaderboard import LeaderboardFilters, leaderboard

        filters = filters or LeaderboardFilters()
        with self.sessions() as s:
            if filters.sweep_id is not None:
                self._sweep_or_404(s, filters.sweep_id, "sweep")
            return leaderboard(s, **filters.model_dump())

    @staticmethod
    def _sweep_or_404(session, sweep_id: int, field: str):
        from orchestrator.models import Sweep

        from ..client import ApiError

        sweep = session.get(Sweep, sweep_id)
        if sweep is None:  # the API's answer (api.errors.not_found), so both print the same line
            raise ApiError(404, "sweep_not_found", f"no sweep with id {sweep_id}", field)
        return sweep


@contextmanager
def connected(url: str | None, token: str | None) -> Iterator:
    """A `Client`; its errors become one line on stderr and an exit code."""
    from ..client import ApiError, Client, ServerUnreachable

    client = Client(url, token)
    try:
        yield client
    except ServerUnreachable as err:
        fail(
            f"cannot reach the ssmbench server at {err.url} ({err.reason}); start one with "
            "`ssmbench serve`, or point --url / SSMBENCH_API_URL at a running one",
            code=1,
        )
    except ApiError as err:
        hint = ""
        if err.status == 401:
            hint = " (pass --token or set SSMBENCH_TOKEN; `ssmbench token create --name NAME` makes one)"
        fail(f"{err}{hint}", code=1 if err.status >= 500 else 2)
    finally:
        client.close()


@contextmanager
def reading(db: str | None, url: str | None, token: str | None) -> Iterator:
    """A Client (`url`, else $SSMBENCH_API_URL when `db` is None and it is set) or a DatabaseReader
    (`db`, else the default local database); its errors become one line on stderr and an exit code."""
    if db is None and (url is not None or os.environ.get("SSMBENCH_API_URL")):
        with connected(url, token) as client:
            yield client
        return
    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator.db import DatabaseNotMigrated
    from orchestrator.settings import Settings, masked_url

    from ..client import ApiError

    target = db or Settings().database_url
    sqlite_file = target.split("///", 1)[-1] if target.startswith("sqlite") else ""
    if sqlite_file and sqlite_file != ":memory:" and not os.path.exists(os.path.expanduser(sqlite_file)):
        fail(
            f"no ssmbench database at {target} (`ssmbench run SPEC` makes one); pass --db URL, or --url / "
            "SSMBENCH_API_URL for a service",
            code=1,
        )
    try:
        reader = DatabaseReader(target)
    except DatabaseNotMigrated as err:
        fail(str(err), code=1)
    except (SQLAlchemyError, ValueError) as err:
        fail(f"cannot read the database {masked_url(target)}: {str(err).splitlines()[0]}", code=1)
    try:
        yield reader
    except ApiError as err:
        fail(str(err), code=2)
    except SQLAlchemyError as err:
        fail(f"cannot read the database {masked_url(target)}: {str(err).splitlines()[0]}", code=1)
    finally:
        reader.close()


@contextmanager
def database_session(url: str, errors: tuple[type[Exception], ...] = ()) -> Iterator:
    """A session on the migrated database at `url`, its engine disposed after. A missing SQLite file,
    an unmigrated database or one of `errors` raised inside: one line, exit 2; a failed read: exit 1.
    Anything else (an OSError while writing) passes through for the caller to word."""
    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator.db import DatabaseNotMigrated, make_engine, require_migrated, session_factory
    from orchestrator.settings import masked_url

    if url.startswith("sqlite") and not _sqlite_file_exists(url):
        fail(f"no database at {url}")
    engine = make_engine(url)
    try:
        require_migrated(engine)
        with session_factory(engine)() as session:
            yield session
    except (*errors, DatabaseNotMigrated) as err:
        fail(escape(str(err)))  # `fail` prints rich markup: "[export]" would vanish
    except SQLAlchemyError as err:
        fail(f"cannot read {masked_url(url)}: {type(err).__name__}: {str(err).splitlines()[0]}", code=1)
    finally:
        engine.dispose()


def _sqlite_file_exists(url: str) -> bool:
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return not path or path == ":memory:" or Path(path).expanduser().exists()
