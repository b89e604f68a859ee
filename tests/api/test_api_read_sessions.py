"""How the service reads (issue 18 §2): a read's statements autocommit, with no transaction open on
the database (no BEGIN or ROLLBACK round trips, none on the event loop), while a write stays one
transaction; and the trial counts of sweeps that can no longer change are counted once per app."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import GRID_YAML, bearer, finish_trials, make_tokens, service_settings
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from api.app import create_app
from orchestrator.db import transaction
from orchestrator.models import Sweep, Trial, utcnow
from orchestrator.queries import SettledCounts, sweeps_state_counts

YAML = {"Content-Type": "application/yaml"}


def _in_transaction(dbapi_connection) -> bool:
    """Whether the database connection itself has a transaction open (not SQLAlchemy's idea of it)."""
    if hasattr(dbapi_connection, "in_transaction"):  # sqlite3
        return dbapi_connection.in_transaction
    from psycopg.pq import TransactionStatus

    return dbapi_connection.info.transaction_status != TransactionStatus.IDLE


def _statements(client, engine, method: str, path: str, **kwargs) -> list[tuple[str, bool]]:
    """Each statement `method path` ran, with whether a transaction was open when it ran."""
    seen: list[tuple[str, bool]] = []

    def note(conn, _cursor, statement, *_):
        seen.append((statement.split()[0].upper(), _in_transaction(conn.connection.driver_connection)))

    event.listen(engine, "after_cursor_execute", note)
    try:
        response = client.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
    finally:
        event.remove(engine, "after_cursor_execute", note)
    return seen


# PostgreSQL only: Python's sqlite3 opens a transaction only before a write, so on SQLite a read never
# holds one, autocommit or not.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_reads_autocommit_and_a_write_is_one_transaction(db_url, sessions_for):
    sessions = sessions_for(db_url)
    token = make_tokens(sessions, "alice")["alice"]
    app = create_app(service_settings(db_url, read_cache_seconds=0))
    with TestClient(app) as client:
        sweep_id = client.post("/api/v1/sweeps", content=GRID_YAML, headers={**YAML, **bearer(token)}).json()[
            "id"
        ]
        for path in ("/api/v1/sweeps", f"/api/v1/sweeps/{sweep_id}", f"/api/v1/sweeps/{sweep_id}/trials"):
            for headers in ({}, bearer(token)):
                statements = _statements(client, app.state.engine, "GET", path, headers=headers)
                assert statements and not any(open_ for _, open_ in statements), (path, statements)
        cancel = _statements(
            client,
            app.state.engine,
            "POST",
            f"/api/v1/sweeps/{sweep_id}/cancel",
            **{"headers": bearer(token)},
        )
        assert any(verb == "UPDATE" for verb, _ in cancel)
        assert all(open_ for verb, open_ in cancel if verb == "UPDATE"), cancel


def _finished_sweeps(url: str, sessions, n: int) -> list[int]:
    """`n` sweeps submitted through the API, their 8 trials each run to completion (they close)."""
    token = make_tokens(sessions, "alice")["alice"]
    with TestClient(create_app(service_settings(url))) as client:
        headers = {**YAML, **bearer(token)}
        ids = [
            client.post("/api/v1/sweeps", content=GRID_YAML, headers=headers).json()["id"] for _ in range(n)
        ]
    for sweep_id in ids:
        finish_trials(sessions, sweep_id)
    return ids


def _close_sweep(sessions, sweep_id: int, ago: timedelta, state: str = "completed") -> None:
    with transaction(sessions) as s:
        s.execute(update(Sweep).where(Sweep.id == sweep_id).values(state=state, finished_at=utcnow() - ago))


def test_settled_counts_are_kept_only_for_closed_sweeps_whose_trials_are_all_final(db_url, sessions_for):
    sessions = sessions_for(db_url)
    done, running, recent, open_ = ids = _finished_sweeps(db_url, sessions, 4)
    _close_sweep(sessions, done, ago=timedelta(minutes=5))
    _close_sweep(sessions, recent, ago=timedelta(seconds=1))  # within the margin: may still change
    # a cancelled sweep whose running trial has not stopped yet, and an open one
    _close_sweep(sessions, running, ago=timedelta(hours=1), state="cancelled")
    with transaction(sessions) as s:
        first = s.scalar(select(Trial.id).where(Trial.sweep_id == running).limit(1))
        s.execute(update(Trial).where(Trial.id == first).values(state="running"))
        s.execute(update(Sweep).where(Sweep.id == open_).values(state="running", finished_at=None))

    settled = SettledCounts(margin=timedelta(minutes=1))
    with sessions() as s:
        sweeps = [s.get(Sweep, i) for i in ids]
        counts = sweeps_state_counts(s, sweeps, settled)
    assert counts[done] == {"completed": 8} and counts[running] == {"completed": 7, "running": 1}
    assert settled.get(done) == {"completed": 8}
    assert settled.get(running) is None and settled.get(recent) is None and settled.get(open_) is None

    # Kept counts are answered without counting: they do not see a change made behind their back
    # (there is none for a settled sweep; this one is forged to tell the two apart).
    with transaction(sessions) as s:
        s.execute(update(Trial).where(Trial.sweep_id.in_([done, open_])).values(state="failed"))
    with sessions() as s:
        sweeps = [s.get(Sweep, i) for i in ids]
        again = sweeps_state_counts(s, sweeps, settled)
        fresh = sweeps_state_counts(s, sweeps)
    assert again[done] == {"completed": 8} and fresh[done] == {"failed": 8}
    assert again[open_] == fresh[open_] == {"failed": 8}  # an open sweep is always counted


def test_settled_counts_keep_at_most_max_sweeps(sqlite_url, sessions_for):
    sessions = sessions_for(sqlite_url)
    ids = _finished_sweeps(sqlite_url, sessions, 3)
    for sweep_id in ids:
        _close_sweep(sessions, sweep_id, ago=timedelta(hours=1))
    settled = SettledCounts(max_sweeps=2)
    with sessions() as s:
        sweeps_state_counts(s, [s.get(Sweep, i) for i in ids], settled)
    assert [settled.get(i) is not None for i in ids] == [False, True, True]  # the oldest kept went
