"""SQL statements per read request (issue 18 §2): each read endpoint runs a fixed number of queries,
however many sweeps and trials the database holds — an N+1 (a query per listed row) fails here."""

from __future__ import annotations

from conftest import GRID_YAML, bearer, finish_trials, make_tokens, service_settings
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from api.app import create_app
from api.routes import read_paths
from orchestrator.models import Trial

YAML = {"Content-Type": "application/yaml"}
# The most statements any read may run; the cached leaderboard answers after one (its stamp). A page
# of trials with a token: the owner, the count, the page (its results joined), the token.
MOST_STATEMENTS = 4


def _statements_per_read(client, engine, sweep_id: int, trial_id: int, token: str) -> dict[str, int]:
    executed: list[str] = []

    def count(_conn, _cursor, statement, *_):
        executed.append(statement)

    reads = [*read_paths(sweep_id, trial_id), f"/api/v1/trials/{trial_id}/metrics"]
    counts = {}
    event.listen(engine, "before_cursor_execute", count)
    try:
        for path in reads:
            for headers in ({}, bearer(token)):  # anonymous, and a viewer whose token is looked up
                client.get(path, headers=headers)  # the leaderboard's first answer computes the board
                executed.clear()
                response = client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text)
                counts[f"{path} {'token' if headers else 'anonymous'}"] = len(executed)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return counts


def test_reads_run_a_bounded_number_of_statements_whatever_the_database_holds(sqlite_url, sessions_for):
    sessions = sessions_for(sqlite_url)
    token = make_tokens(sessions, "alice")["alice"]
    # the database path: anonymous reads kept in memory (api.read_cache) would run no statement at all
    app = create_app(service_settings(sqlite_url, read_cache_seconds=0))
    with TestClient(app) as client:

        def add_sweeps(n: int) -> int:
            for _ in range(n):
                response = client.post("/api/v1/sweeps", content=GRID_YAML, headers={**YAML, **bearer(token)})
                assert response.status_code == 201, response.text
                sweep_id = response.json()["id"]
                finish_trials(sessions, sweep_id, n=5)  # some done, some pending: several states
            return sweep_id

        first = add_sweeps(2)
        with sessions() as s:
            trial_id = s.scalar(select(Trial.id).where(Trial.sweep_id == first).order_by(Trial.id))
        few = _statements_per_read(client, app.state.engine, first, trial_id, token)
        add_sweeps(6)
        many = _statements_per_read(client, app.state.engine, first, trial_id, token)

        assert many == few  # nothing grows with the number of sweeps (or of their trials)
        assert max(few.values()) <= MOST_STATEMENTS, few
        # the page of sweeps counts each sweep's trials as the sweep's own page does
        listed = client.get("/api/v1/sweeps").json()["items"]
        assert len(listed) == 8
        for item in listed:
            alone = client.get(f"/api/v1/sweeps/{item['id']}").json()
            assert item["trials_by_state"] == alone["trials_by_state"] == {"completed": 5, "pending": 3}
            assert item["n_trials"] == 8 and item["progress"] == 5 / 8
