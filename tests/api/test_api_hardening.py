"""Regression tests of issue 13's findings about the service (one or more per finding): NUL bytes,
unauthenticated resource holding, metrics label cardinality, admin-only priority and per-owner
quotas, secrets in output, internals in responses, token revocation and expiry, owner-less sweeps,
/docs without a CDN, one traceback per 500. On SQLite and PostgreSQL where the database is involved."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import string
import time
from datetime import timedelta

import httpx
import pytest
from conftest import GRID_YAML, ThreadedServer, bearer, error_of, make_tokens, run_cli, service_settings
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update
from typer.testing import CliRunner

from api.app import create_app, use_database
from api.cli import app as cli_app
from api.client import Client, ServerUnreachable
from api.metrics import HTTP_METHODS
from orchestrator import store
from orchestrator.db import transaction
from orchestrator.models import ApiToken, Sweep, Trial, utcnow
from orchestrator.service import RayStatus, SchedulerStatus
from orchestrator.spec import load_spec
from orchestrator.tokens import create_token

YAML = {"Content-Type": "application/yaml"}
TRACEBACK = """Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/ssm/train.py", line 88, in train
    loss = step(batch)
RuntimeError: CUDA out of memory
"""


@pytest.fixture
def service(db_url, sessions_for):
    """(client, sessions, tokens): users alice and bob, admin root, on SQLite and PostgreSQL."""
    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice", "bob")
    with transaction(sessions) as session:
        tokens["root"] = create_token(session, "root", role="admin")
    with TestClient(create_app(service_settings(db_url))) as client:
        yield client, sessions, tokens


def submit(client, token, text=GRID_YAML):
    return client.post("/api/v1/sweeps", content=text, headers={**YAML, **bearer(token)})


# --- 4: a NUL byte in a query string --------------------------------------------------------------------


def test_a_nul_byte_in_any_query_parameter_or_path_is_422_naming_it(service):
    client, _, _ = service
    for path, field in (
        ("/api/v1/leaderboard?task=%00", "task"),
        ("/api/v1/leaderboard?layer=s4d%00x", "layer"),
        ("/api/v1/sweeps?state=%00", "state"),
        ("/api/v1/sweeps/1/trials?limit=5&state=%00", "state"),
        ("/api/v1/sweeps/%00", "path"),
        ("/api/v1/leaderboard?ta%00sk=1", "task"),
    ):
        error = error_of(client.get(path), 422)
        assert error["field"] == field and "NUL" in error["message"], (path, error)
    assert client.get("/api/v1/leaderboard?task=listops").status_code == 200


# --- 5: unauthenticated resource holding ----------------------------------------------------------------


def _asgi(app, method: str, path: str, headers: dict[str, str], receive) -> tuple[list[dict], float]:
    """Drive `app` with one request whose body comes from `receive`; the messages it sent and the
    seconds it took."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    start = time.monotonic()
    asyncio.run(app(scope, receive, send))
    return sent, time.monotonic() - start


def _status(sent: list[dict]) -> tuple[int, dict[bytes, bytes], dict]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body)


def test_a_write_without_a_valid_token_is_refused_before_its_body_is_read(sqlite_url, sessions_for):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    app = create_app(service_settings(sqlite_url))
    reads = []

    async def never_read():
        reads.append(1)
        await asyncio.sleep(3600)  # a client that never sends its announced megabyte

    big = {"Content-Type": "application/yaml", "Content-Length": "1000000"}
    for headers, code in (({}, "unauthorized"), (bearer("ssmb_forged"), "invalid_token")):
        sent, seconds = _asgi(app, "POST", "/api/v1/sweeps", {**big, **headers}, never_read)
        status, response_headers, body = _status(sent)
        assert (status, body["error"]["code"], body["error"]["field"]) == (401, code, "Authorization")
        assert response_headers[b"connection"] == b"close" and seconds < 5
    # a write to no route (404) or with a wrong method (405) does not read its body either
    for method, path, status in (("POST", "/api/v1/nothing", 404), ("PUT", "/api/v1/sweeps", 405)):
        sent, _ = _asgi(app, method, path, big, never_read)
        assert _status(sent)[0] == status
    assert reads == []

    chunks = [GRID_YAML.encode()]

    async def one_body():
        return {"type": "http.request", "body": chunks.pop() if chunks else b"", "more_body": False}

    sent, _ = _asgi(app, "POST", "/api/v1/sweeps", {**YAML, **bearer(tokens["alice"])}, one_body)
    assert _status(sent)[0] == 201


def test_a_body_that_does_not_arrive_in_time_is_408(sqlite_url, sessions_for):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    app = create_app(service_settings(sqlite_url, body_timeout_seconds=0.5))
    parts = [{"type": "http.request", "body": b"name: slow\n", "more_body": True}]

    async def trickle():
        if parts:
            return parts.pop()
        await asyncio.sleep(3600)  # the rest of the body never comes

    sent, seconds = _asgi(app, "POST", "/api/v1/sweeps", {**YAML, **bearer(tokens["alice"])}, trickle)
    status, headers, body = _status(sent)
    assert status == 408 and body["error"]["code"] == "request_timeout" and headers[b"connection"] == b"close"
    assert 0.4 < seconds < 5


def _partial_head(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # the head's end never comes
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (answers before that are read)."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            if sock.recv(4096) == b"":
                return True
        return False
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def test_slow_request_heads_are_closed_and_connections_are_bounded(sqlite_url):
    settings = service_settings(sqlite_url, header_timeout_seconds=1.0, max_connections=4)
    with ThreadedServer(settings) as served:
        health = f"{served.url}/api/v1/health"
        holders = [_partial_head(served.port) for _ in range(4)]
        time.sleep(0.2)
        assert httpx.get(health, timeout=5).status_code == 503  # over max_connections: uvicorn refuses
        assert all(_closed_by_server(sock, within=5.0) for sock in holders)  # the head deadline
        assert httpx.get(health, timeout=5).status_code == 200

        with httpx.Client(timeout=5) as keep_alive:  # a connection that answered once gets a new deadline
            assert keep_alive.get(health).status_code == 200
        sock = socket.create_connection(("127.0.0.1", served.port))
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\n")  # a second request's head, trickled
        assert _closed_by_server(sock, within=5.0)


# --- 6: metrics label cardinality -----------------------------------------------------------------------


def test_random_methods_and_paths_leave_metrics_small_with_bounded_labels(sqlite_url):
    app = create_app(service_settings(sqlite_url))
    rng = random.Random(13)
    with TestClient(app) as client:
        for _ in range(300):
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
            path = rng.choice(
                (
                    f"/api/v1/sweeps/{rng.randint(1, 10**6)}",
                    f"/api/v1/trials/{rng.randint(1, 10**6)}/metrics",
                    f"/{rng.getrandbits(64):x}/{rng.getrandbits(32):x}",
                )
            )
            client.request(rng.choice((method, "GET")), path)
        text = client.get("/metrics").text
    samples = [
        sample.labels
        for family in text_string_to_metric_families(text)
        if family.name == "ssmbench_http_request_duration_seconds"
        for sample in family.samples
    ]
    templates = set(app.openapi()["paths"]) | {"/openapi.json", "unmatched"}
    assert {labels["method"] for labels in samples} <= HTTP_METHODS | {"other"}
    assert {labels["method"] for labels in samples} >= {"GET", "other"}
    assert {labels["route"] for labels in samples} <= templates
    assert {labels["route"] for labels in samples} >= {"/api/v1/sweeps/{sweep_id}", "unmatched"}
    series = {(labels["method"], labels["route"], labels["status"]) for labels in samples}
    assert len(series) <= 12, series  # 2 methods × 3 templates × a few statuses, whatever was sent
    assert len(text) < 40_000, len(text)


# --- 7: priority is an admin's; per-owner quotas --------------------------------------------------------


def test_only_an_admin_may_set_a_priority(service):
    client, _, tokens = service
    urgent = GRID_YAML + "priority: 5\n"
    error = error_of(submit(client, tokens["alice"], urgent), 403)
    assert error["field"] == "priority" and "admin" in error["message"]
    assert submit(client, tokens["alice"], GRID_YAML + "priority: 0\n").status_code == 201
    created = submit(client, tokens["root"], urgent)
    assert created.status_code == 201, created.text


def test_per_owner_quotas_are_429_with_retry_after(db_url, sessions_for):
    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice", "bob")
    with transaction(sessions) as session:
        tokens["root"] = create_token(session, "root", role="admin")
    settings = service_settings(db_url, max_open_sweeps_per_owner=2, max_pending_trials_per_owner=20)
    twelve = GRID_YAML.replace("seeds: [0, 1]", "seeds: [0, 1, 2]")  # GRID_YAML plans 8 trials
    six = twelve.replace("[delay, listops]", "[delay]")

    def cancel(sweep_id: int) -> None:
        response = client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=bearer(tokens["alice"]))
        assert response.status_code == 200

    with TestClient(create_app(settings)) as client:
        first, second = (submit(client, tokens["alice"]).json()["id"] for _ in range(2))
        refused = submit(client, tokens["alice"])  # a third open sweep
        error = error_of(refused, 429)
        assert error["code"] == "too_many_open_sweeps" and refused.headers["retry-after"] == "60"
        assert submit(client, tokens["bob"]).status_code == 201  # quotas are per owner
        assert submit(client, tokens["root"]).status_code == 201  # admins are exempt

        cancel(first)
        third = submit(client, tokens["alice"], twelve)  # 8 pending + 12 = 20: at the limit, allowed
        assert third.status_code == 201, third.text
        cancel(second)
        refused = submit(client, tokens["alice"], twelve)  # 12 pending + 12 > 20
        error = error_of(refused, 429)
        assert error["code"] == "too_many_pending_trials" and "20" in error["message"]
        assert refused.headers["retry-after"] == "60"
        assert submit(client, tokens["alice"], six).status_code == 201  # 12 + 6 ≤ 20


# --- 8: secrets in output ------------------------------------------------------------------------------

SECRET_URL = "postgresql+psycopg://ssmbench:hunter2@127.0.0.1:9/ssmbench?connect_timeout=2"


def _one_masked_line(result, code: int) -> str:
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    assert "hunter2" not in output and "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_cli_failures_are_one_line_with_the_password_masked(tmp_path, monkeypatch):
    monkeypatch.delenv("SSMBENCH_DATABASE_URL", raising=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntasks: [delay]\n")
    runner = CliRunner()
    for args in (
        ["run", str(spec), "--db", SECRET_URL],
        ["db", "upgrade", "--db", SECRET_URL],
        ["token", "create", "--name", "alice", "--db", SECRET_URL],
        ["token", "list", "--db", SECRET_URL],
        ["serve", "--db", SECRET_URL, "--no-scheduler"],
        ["export", "1", "--out", str(tmp_path / "x.csv"), "--db", SECRET_URL],
    ):
        line = _one_masked_line(runner.invoke(cli_app, args), 1)
        assert "ssmbench:***@127.0.0.1:9" in line, (args, line)

    with pytest.raises(ServerUnreachable) as unreachable:
        Client("http://alice:hunter2@127.0.0.1:9", timeout=2).health()
    assert "hunter2" not in str(unreachable.value) and "alice:***@" in str(unreachable.value)


def test_an_unforeseen_cli_failure_is_one_line_not_a_traceback(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntasks: [delay]\n")
    result = run_cli("submit", str(spec), "--url", "http://bob:hunter2@[::1", timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "hunter2" not in result.stderr, (
        result.stderr
    )


# --- 9: internals in responses --------------------------------------------------------------------------


def test_a_trials_traceback_is_for_its_owner_and_admins_readers_get_its_last_line(service):
    client, sessions, tokens = service
    sweep_id = submit(client, tokens["alice"]).json()["id"]
    with transaction(sessions) as session:
        trial_id = session.scalars(select(Trial.id).where(Trial.sweep_id == sweep_id)).first()
        attempt = store.claim(session, trial_id)
        store.finish(session, trial_id, attempt, None, "failed", error=TRACEBACK)
    for token, expected in (
        (None, "RuntimeError: CUDA out of memory"),
        (tokens["bob"], "RuntimeError: CUDA out of memory"),
        (tokens["alice"], TRACEBACK),
        (tokens["root"], TRACEBACK),
    ):
        headers = bearer(token) if token else {}
        detail = client.get(f"/api/v1/trials/{trial_id}", headers=headers).json()
        listed = client.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"state": "failed"}, headers=headers)
        assert detail["error"] == expected and listed.json()["items"][0]["error"] == expected
    assert error_of(client.get(f"/api/v1/trials/{trial_id}", headers=bearer("ssmb_forged")), 401)


def test_health_never_shows_exception_text(sqlite_url):
    from orchestrator.db import make_engine

    app = create_app(service_settings(sqlite_url))
    use_database(app, make_engine("postgresql+psycopg://nobody:hunter2@127.0.0.1:9/none?connect_timeout=2"))
    secret = "TypeError: '<' not supported, /opt/venv/lib/python3.11/site-packages/orchestrator/spec.py"

    class LeakyScheduler:  # a SchedulerService whose status carries exception text
        def status(self):
            return SchedulerStatus(
                state="active", holds_lease=True, in_flight=0, last_step_at=None, failing_passes=3,
                last_error=secret,
            )  # fmt: skip

        def ray_status(self):
            return RayStatus(ok=False, detail=f"not reachable: {secret}")

    with TestClient(app) as client:
        app.state.scheduler = LeakyScheduler()
        response = client.get("/api/v1/health")
    body = response.text
    assert response.status_code == 503 and response.json()["status"] == "degraded"
    for leak in ("127.0.0.1", "hunter2", "OperationalError", "site-packages", "TypeError"):
        assert leak not in body, (leak, body)
    health = response.json()
    assert health["scheduler"]["last_error"] and "service log" in health["scheduler"]["last_error"]
    assert not health["database"]["ok"] and not health["ray"]["ok"]


def test_a_value_that_does_not_fit_the_database_is_422_without_the_drivers_words(service):
    client, _, tokens = service
    response = submit(client, tokens["alice"], "name: x\ntasks: [delay]\nseeds: [100000000000000000000]\n")
    error = error_of(response, 422)
    assert error["code"] == "invalid_spec"
    for driver_word in ("psycopg", "sqlite", "SQL", "parameters", "OverflowError", "int too big"):
        assert driver_word not in error["message"], error


# --- low: tokens, owner-less sweeps, 403 wording, /docs, 500 logging -------------------------------------


def test_revoked_and_expired_tokens_are_refused(service, db_url):
    client, sessions, tokens = service
    assert submit(client, tokens["alice"]).status_code == 201
    with transaction(sessions) as session:
        session.execute(
            update(ApiToken).where(ApiToken.name == "bob").values(expires_at=utcnow() - timedelta(seconds=1))
        )
    result = CliRunner().invoke(cli_app, ["token", "revoke", "alice", "--db", db_url])
    assert result.exit_code == 0, result.stderr
    for name in ("alice", "bob"):
        error = error_of(submit(client, tokens[name]), 401)
        assert error["code"] == "invalid_token" and "expired" in error["message"]
        assert error_of(client.get("/api/v1/trials/1", headers=bearer(tokens[name])), 401)


def test_token_cli_creates_admin_and_expiring_tokens_lists_and_revokes(sqlite_url):
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(cli_app, [*args, "--db", sqlite_url])

    made = cli("token", "create", "--name", "root", "--admin", "--expires", "30d", "--json")
    assert made.exit_code == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["role"] == "admin" and created["token"].startswith("ssmb_") and created["expires_at"]
    assert cli("token", "create", "--name", "alice").exit_code == 0
    assert _one_masked_line(cli("token", "create", "--name", "x", "--expires", "soon"), 2)
    assert _one_masked_line(cli("token", "create", "--name", "x", "--expires", "2000-01-01"), 2)

    listed = json.loads(cli("token", "list", "--json").stdout)
    assert [(t["name"], t["role"], t["state"]) for t in listed] == [
        ("alice", "user", "active"),
        ("root", "admin", "active"),
    ]
    assert "ssmb_" not in cli("token", "list", "--json").stdout  # never the tokens themselves
    assert cli("token", "revoke", "alice").exit_code == 0
    assert "no valid token" in _one_masked_line(cli("token", "revoke", "alice"), 2)
    assert json.loads(cli("token", "list", "--json").stdout)[0]["state"] == "revoked"
    again = cli("token", "create", "--name", "alice", "--json")  # rotation: a new token, same owner
    assert again.exit_code == 0 and json.loads(again.stdout)["token"] != created["token"]


def test_an_owner_less_sweep_is_cancelled_by_admins_only_and_403_names_nobody(service):
    client, sessions, tokens = service
    with transaction(sessions) as session:  # as `ssmbench run` stores it: no owner
        orphan = store.create_sweep(session, load_spec(GRID_YAML)).id
    error = error_of(client.post(f"/api/v1/sweeps/{orphan}/cancel", headers=bearer(tokens["alice"])), 403)
    assert error["field"] == "sweep_id"
    owned = submit(client, tokens["alice"]).json()["id"]
    error = error_of(client.post(f"/api/v1/sweeps/{owned}/cancel", headers=bearer(tokens["bob"])), 403)
    assert "alice" not in error["message"] and str(owned) in error["message"]
    for sweep_id in (orphan, owned):
        response = client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=bearer(tokens["root"]))
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
    with sessions() as session:
        assert session.get(Sweep, orphan).state == "cancelled"


def test_no_page_loads_assets_from_a_cdn(sqlite_url):
    with TestClient(create_app(service_settings(sqlite_url))) as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 404
        assert client.get("/openapi.json").status_code == 200
        assert "/docs" not in client.get("/nothing").json()["error"]["message"]


def test_a_500_logs_one_traceback(sqlite_url, caplog, monkeypatch):
    # uvicorn's own logging config (used by other tests in this process) stops "uvicorn" records
    # from reaching the root logger, where caplog listens
    monkeypatch.setattr(logging.getLogger("uvicorn"), "propagate", True)
    settings = service_settings(sqlite_url)
    server = ThreadedServer(settings, log_config=None)  # uvicorn logs through the root logger

    def broken():
        raise ZeroDivisionError("a bug")

    server.app.add_api_route("/broken", broken)
    with server, caplog.at_level(logging.INFO):
        response = httpx.get(f"{server.url}/broken", timeout=10)
        time.sleep(0.2)
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    # (distinct records: once uvicorn has configured logging, caplog's handler may see one twice)
    with_traceback = {id(r) for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError}
    assert len(with_traceback) == 1, [(r.name, r.getMessage()) for r in caplog.records]
    assert any("/broken" in r.getMessage() for r in caplog.records if r.name == "api")
