"""The in-process cache of anonymous reads (api/read_cache.py, issue 18 §2): what it keeps, for whom,
for how long, and what drops it."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import sqlite3
import time

import anyio.to_thread
import httpx
from conftest import (
    GRID_YAML,
    ThreadedServer,
    bearer,
    finish_trials,
    make_tokens,
    service_settings,
    submit_sweep,
)
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from api.app import create_app
from api.read_cache import WRITES, ReadCacheMiddleware
from orchestrator.db import transaction
from orchestrator.models import Sweep, Trial

YAML = {"Content-Type": "application/yaml"}


def _statements(engine):
    executed: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: executed.append(statement))
    return executed


@contextlib.contextmanager
def _served(url: str, sessions_for, seconds: float):
    """(client, app, sessions, tokens of alice and bob) of a fresh app whose read cache keeps `seconds`."""
    sessions = sessions_for(url)
    tokens = make_tokens(sessions, "alice", "bob")
    app = create_app(service_settings(url, read_cache_seconds=seconds))
    with TestClient(app) as client:
        yield client, app, sessions, tokens


def test_an_anonymous_read_is_answered_from_memory_with_an_etag_and_304(sqlite_url, sessions_for):
    with _served(sqlite_url, sessions_for, 30) as (client, app, _, tokens):
        token = tokens["alice"]
        sweep_id = submit_sweep(client, token)["id"]
        executed = _statements(app.state.engine)
        first = client.get(f"/api/v1/sweeps/{sweep_id}")
        assert first.status_code == 200 and executed
        executed.clear()
        again = client.get(f"/api/v1/sweeps/{sweep_id}")
        assert executed == [] and again.json() == first.json()
        etag = again.headers["etag"]
        assert etag.startswith('W/"') and again.headers["cache-control"] == "no-cache"

        not_modified = client.get(f"/api/v1/sweeps/{sweep_id}", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304 and not_modified.content == b""
        other = client.get(f"/api/v1/sweeps/{sweep_id}", headers={"If-None-Match": 'W/"other"'})
        assert other.status_code == 200 and other.json() == first.json()

        # the same answer gzip-compressed for a client that takes it, plain for one that does not
        raw = client.get("/api/v1/sweeps?limit=5", headers={"Accept-Encoding": "gzip"})
        kept = client.get("/api/v1/sweeps?limit=5", headers={"Accept-Encoding": "gzip"})
        assert kept.headers.get("content-encoding") == raw.headers.get("content-encoding")
        assert kept.json() == raw.json()
        big = client.get("/api/v1/leaderboard", headers={"Accept-Encoding": "gzip"})
        with client.stream("GET", "/api/v1/leaderboard", headers={"Accept-Encoding": "gzip"}) as streamed:
            assert streamed.headers["content-encoding"] == "gzip"
            assert gzip.decompress(b"".join(streamed.iter_raw())) == big.content
        plain = client.get("/api/v1/leaderboard", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == big.content

        # an error is not kept: an unknown sweep is looked up each time
        executed.clear()
        assert client.get("/api/v1/sweeps/999999").status_code == 404
        assert client.get("/api/v1/sweeps/999999").status_code == 404
        assert len(executed) >= 2


def test_a_write_through_this_process_drops_what_was_kept(sqlite_url, sessions_for):
    with _served(sqlite_url, sessions_for, 30) as (client, _, sessions, tokens):
        first = submit_sweep(client, tokens["alice"])["id"]
        assert client.get("/api/v1/sweeps").json()["total"] == 1
        second = submit_sweep(client, tokens["alice"])["id"]  # through the API
        assert [s["id"] for s in client.get("/api/v1/sweeps").json()["items"]] == [second, first]

        before = client.get(f"/api/v1/sweeps/{first}").json()
        finish_trials(sessions, first, n=3)  # another engine of this process, as the scheduler's
        after = client.get(f"/api/v1/sweeps/{first}").json()
        assert before["trials_by_state"] == {"pending": 8}
        assert after["trials_by_state"] == {"completed": 3, "pending": 5}

        # a Core update (no ORM flush) counts as a write too
        client.get(f"/api/v1/sweeps/{second}")
        with transaction(sessions) as s:
            s.execute(update(Sweep).where(Sweep.id == second).values(name="renamed"))
        assert client.get(f"/api/v1/sweeps/{second}").json()["name"] == "renamed"


def test_another_process_s_write_shows_within_read_cache_seconds(sqlite_url, sessions_for):
    with _served(sqlite_url, sessions_for, 0.5) as (client, _, _, tokens):
        sweep_id = submit_sweep(client, tokens["alice"])["id"]
        assert client.get(f"/api/v1/sweeps/{sweep_id}").json()["name"] == "grid"
        # sqlite3 itself, not SQLAlchemy: what a write from another process looks like to this one
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
            raw.execute("UPDATE sweeps SET name = 'elsewhere' WHERE id = ?", (sweep_id,))
        assert client.get(f"/api/v1/sweeps/{sweep_id}").json()["name"] == "grid"  # kept, 0.5 s at most
        time.sleep(0.6)
        assert client.get(f"/api/v1/sweeps/{sweep_id}").json()["name"] == "elsewhere"


def test_reads_with_a_token_are_never_kept_and_see_what_their_caller_may(sqlite_url, sessions_for):
    with _served(sqlite_url, sessions_for, 30) as (client, app, sessions, tokens):
        sweep_id = submit_sweep(client, tokens["alice"])["id"]
        with transaction(sessions) as s:
            trial_id = s.scalar(select(Trial.id).where(Trial.sweep_id == sweep_id).order_by(Trial.id))
            s.execute(
                update(Trial)
                .where(Trial.id == trial_id)
                .values(
                    state="failed", error="Traceback (most recent call last):\n  File x\nValueError: boom"
                )
            )
        path = f"/api/v1/trials/{trial_id}"
        assert client.get(path).json()["error"] == "ValueError: boom"  # now kept for anonymous readers
        executed = _statements(app.state.engine)
        owner = client.get(path, headers=bearer(tokens["alice"]))
        assert owner.json()["error"].startswith("Traceback") and executed  # from the database
        assert "etag" not in owner.headers
        assert client.get(path, headers=bearer(tokens["bob"])).json()["error"] == "ValueError: boom"
        assert client.get(path, headers=bearer("not-a-token")).status_code == 401
        assert client.get(path).json()["error"] == "ValueError: boom"


def test_with_read_auth_or_at_zero_seconds_nothing_is_kept(sqlite_url, sessions_for):
    token = make_tokens(sessions_for(sqlite_url), "alice")["alice"]
    for settings in (
        service_settings(sqlite_url, read_auth=True, read_cache_seconds=30),
        service_settings(sqlite_url, read_cache_seconds=0),
    ):
        app = create_app(settings)
        with TestClient(app) as client:
            executed = _statements(app.state.engine)
            for _ in range(2):
                executed.clear()
                anonymous = client.get("/api/v1/baselines")
                assert anonymous.status_code == (401 if settings.read_auth else 200)
                assert client.get("/api/v1/baselines", headers=bearer(token)).status_code == 200
                assert executed  # both answered through the database, the second time too


# --- the middleware alone, on a fake app ---------------------------------------------------------------


def _fake_app(calls: list[str], write_while_answering: bool = False, pause: float = 0.0):
    async def app(scope, receive, send):
        calls.append(scope["path"])
        await asyncio.sleep(pause)
        if write_while_answering:
            WRITES.bump()
        body = f'{{"n": {len(calls)}}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def _get(app, path: str, n: int = 1) -> list[httpx.Response]:
    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.get(path) for _ in range(n)))

    return asyncio.run(run())


def test_concurrent_misses_compute_once_and_an_answer_raced_by_a_write_is_not_kept():
    calls: list[str] = []
    cache = ReadCacheMiddleware(_fake_app(calls, pause=0.05), seconds=30, read_auth=False)
    answers = _get(cache, "/api/v1/x", n=10)
    assert calls == ["/api/v1/x"] and {a.json()["n"] for a in answers} == {1}

    calls.clear()
    racing = ReadCacheMiddleware(_fake_app(calls, write_while_answering=True), seconds=30, read_auth=False)
    assert [a.json()["n"] for a in _get(racing, "/api/v1/y")] == [1]  # answered once, not twice
    assert [a.json()["n"] for a in _get(racing, "/api/v1/y")] == [2]  # computed again: not kept

    calls.clear()
    elsewhere = ReadCacheMiddleware(_fake_app(calls), seconds=30, read_auth=False)
    _get(elsewhere, "/metrics", n=2)
    _get(elsewhere, "/sweeps/1", n=2)  # the web pages are not the API's: not kept
    assert calls == ["/metrics"] * 2 + ["/sweeps/1"] * 2


def test_a_request_after_a_write_does_not_take_an_answer_begun_before_it():
    calls: list[str] = []
    cache = ReadCacheMiddleware(_fake_app(calls, pause=0.2), seconds=30, read_auth=False)

    async def run():
        transport = httpx.ASGITransport(app=cache)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            early = asyncio.create_task(client.get("/api/v1/w"))
            await asyncio.sleep(0.05)  # its answer is being computed
            WRITES.bump()  # a write commits (the client below made it and now reads)
            late = await client.get("/api/v1/w")
            together = await asyncio.gather(early, client.get("/api/v1/w"))
            return [(await early).json()["n"], late.json()["n"], together[1].json()["n"]]

    # the early request answers its own computation (concurrent with the write, not kept); the late
    # one computes anew, and that answer is kept
    assert asyncio.run(run()) == [1, 2, 2]


def test_an_entry_past_half_its_age_is_refreshed_in_the_background_and_never_served_past_it():
    calls: list[str] = []
    cache = ReadCacheMiddleware(_fake_app(calls), seconds=0.4, read_auth=False)

    async def run():
        transport = httpx.ASGITransport(app=cache)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = (await client.get("/api/v1/z")).json()["n"]
            await asyncio.sleep(0.25)  # past half its age: answered as kept, recomputed behind
            kept = (await client.get("/api/v1/z")).json()["n"]
            await asyncio.sleep(0.05)
            refreshed = (await client.get("/api/v1/z")).json()["n"]
            await asyncio.sleep(0.5)  # past its age: never answered, computed again
            expired = (await client.get("/api/v1/z")).json()["n"]
            return first, kept, refreshed, expired

    assert asyncio.run(run()) == (1, 1, 2, 3)


# --- the database path under more concurrent requests than threads ---------------------------------


def test_reads_answer_under_more_concurrent_requests_than_threads_and_connections(sqlite_url, sessions_for):
    """A sync route whose answer FastAPI validates (a model or dict returned) does so in a second hop
    to the thread pool: its session must have given its pooled connection back by then, or with every
    thread waiting for a connection nothing is answered until the pool's 30 s timeout."""
    token = make_tokens(sessions_for(sqlite_url), "alice")["alice"]
    # read_auth: every read looks its token up in one hop to the thread pool, then runs its route in another
    with ThreadedServer(service_settings(sqlite_url, read_cache_seconds=0, read_auth=True)) as server:

        @server.app.get("/test/few-threads", include_in_schema=False)
        async def few_threads() -> dict[str, int]:  # this loop's thread limit, as a loaded server's
            anyio.to_thread.current_default_thread_limiter().total_tokens = 4
            return {"threads": 4}

        with httpx.Client(base_url=server.url, timeout=10) as client:
            sweep_id = client.post(
                "/api/v1/sweeps", content=GRID_YAML, headers={**YAML, **bearer(token)}
            ).json()["id"]
            trials = client.get(f"/api/v1/sweeps/{sweep_id}/trials", headers=bearer(token))
            trial_id = trials.json()["items"][0]["id"]
            assert client.get("/test/few-threads").status_code == 200

        async def many() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
                paths = ["/api/v1/health", f"/api/v1/trials/{trial_id}/diagnostics"] * 10  # > 15 + 4
                paths += [f"/api/v1/trials/{trial_id}", f"/api/v1/sweeps/{sweep_id}/trials"] * 10
                answers = await asyncio.gather(*(client.get(p, headers=bearer(token)) for p in paths))
                return [r.status_code for r in answers]

        assert asyncio.run(many()) == [200] * 40


def test_a_cold_leaderboard_answers_more_concurrent_requests_than_connections(sqlite_url, monkeypatch):
    """The first requests for a page the board cache does not hold wait for the one computing it,
    which reads the board in a session of its own: a waiting request must have given its pooled
    connection back, or with as many waiting as the pool holds (15 on SQLite; 40 threads) the one
    computing waits for a connection until the pool's 30 s timeout, and so do they all."""
    from api.routes import leaderboard as route

    def slow_inputs(*args, **kwargs):  # a board of 10⁵ results: long enough for all to arrive
        time.sleep(1.0)
        return board_inputs(*args, **kwargs)

    board_inputs = route.board_inputs
    monkeypatch.setattr(route, "board_inputs", slow_inputs)
    with ThreadedServer(service_settings(sqlite_url, read_cache_seconds=0)) as server:

        async def many() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
                paths = ["/api/v1/leaderboard?task=delay"] * 40
                answers = await asyncio.gather(*(client.get(p) for p in paths))
                return [r.status_code for r in answers]

        assert asyncio.run(many()) == [200] * 40
