"""Regression tests of issue 13's findings about what a submitted spec may ask for: non-finite numbers,
a spec that does not survive its storage, grids built before the limit, YAML alias expansion, whole
spec/config columns in list queries, 500s that must be 4xx, unbounded numbers, non-JSON YAML types,
and what the OpenAPI schema tells a client. Each over HTTP (TestClient) on SQLite and PostgreSQL, the
shape of every error checked; the memory bound runs `ssmbench serve` in a child process and reads its
RSS from /proc."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from conftest import GRID_YAML, ServeProcess, bearer, error_of, make_tokens, run_cli, service_settings
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from api.app import create_app
from api.errors import error_body, error_response
from orchestrator.models import Sweep
from orchestrator.spec import MAX_DEPTH, MAX_NODES, parse_spec, validate_spec
from ssm.data import TASK_NAMES

YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}
SWEEPS = "/api/v1/sweeps"


@pytest.fixture
def service(db_url, sessions_for):
    """(client, sessions, alice's token) on SQLite and PostgreSQL."""
    sessions = sessions_for(db_url)
    token = make_tokens(sessions, "alice")["alice"]
    with TestClient(create_app(service_settings(db_url)), raise_server_exceptions=False) as client:
        yield client, sessions, token


def post(client, token, body, headers=YAML):
    content = body if isinstance(body, bytes) else body.encode()
    return client.post(SWEEPS, content=content, headers={**headers, **bearer(token)})


# --- 1: non-finite numbers; a spec survives its own storage --------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        (
            "name: x\ntasks: [delay]\nsearch: {space: {optim.lr: {low: 1.0e-3, high: .inf}}}\n",
            YAML,
            "search.space.optim.lr.high",
        ),
        (
            '{"name": "x", "tasks": ["delay"], "search": {"space": {"optim.lr": {"low": 0.001, "high": Infinity}}}}',
            JSON,
            "search.space.optim.lr.high",
        ),
        ('{"name": "x", "tasks": ["delay"], "optim": {"lr": NaN}}', JSON, "optim.lr"),
        ('{"name": "x", "tasks": ["delay"], "resources": {"cpus": 1e400}}', JSON, "resources.cpus"),
        ('{"name": "x", "tasks": [{"name": "memory-exp", "T": -Infinity}]}', JSON, "tasks[0].T"),
        ("name: x\ntasks: [delay]\nmodel: {dt_max: [0.1, .nan]}\n", YAML, "model.dt_max[1]"),
    ],
)
def test_non_finite_numbers_are_422_naming_the_field_and_nothing_is_stored(service, body, headers, field):
    client, sessions, token = service
    error = error_of(post(client, token, body, headers))
    assert error["field"] == field and "finite" in error["message"] and error["code"] == "invalid_spec"
    with sessions() as session:
        assert session.scalars(select(Sweep)).all() == []


def test_what_is_stored_re_validates_to_the_same_spec(service):
    client, sessions, token = service
    text = (
        GRID_YAML
        + "search: {sampler: random, n_trials: 2, space: {optim.lr: {low: 1.0e-4, high: 0.1, log: true}}}\n"
    )
    text = text.replace("tasks: [delay, listops]", "tasks: [delay, {name: listops, max_len: 256}]")
    for body in (GRID_YAML, text):
        response = post(client, token, body)
        assert response.status_code == 201, response.text
        with sessions() as session:
            stored = session.get(Sweep, response.json()["id"]).spec
        assert validate_spec(stored) == parse_spec(body)


# --- 2: the grid limit before planning ----------------------------------------------------------------


def test_a_small_spec_of_a_hundred_million_cells_is_refused_quickly(service):
    client, _, token = service
    ten = "[" + ",".join(str(v) for v in range(1, 11)) + "]"
    body = (
        f"name: g\ntasks: [delay]\nmodel: {{d_model: {ten}, n_layers: {ten}, s5_blocks: {ten}, dt_min: [.001,.002,.003,.004,.005,.006,.007,.008,.009,.01]}}\n"
        f"optim: {{epochs: {ten}, batch_size: {ten}, warmup_steps: {ten}, lr: [.1,.2,.3,.4,.5,.6,.7,.8,.9,1.0]}}\n"
    )
    assert len(body) <= 400
    start = time.monotonic()
    error = error_of(post(client, token, body))
    assert error["code"] == "too_many_trials" and "100000000 trials" in error["message"]
    assert time.monotonic() - start < 5


# --- 3: YAML alias expansion; list queries ------------------------------------------------------------

BOMB = "name: x\ntasks: [delay]\n" + "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)


def test_an_alias_bomb_is_refused_while_composing(service):
    client, _, token = service
    assert len(BOMB) < 600  # ~400 million values once expanded
    start = time.monotonic()
    error = error_of(post(client, token, BOMB))
    assert error["code"] == "spec_too_large" and f"more than {MAX_NODES} values" in error["message"]
    assert time.monotonic() - start < 5


def test_lists_select_neither_the_spec_nor_the_config(service):
    client, _, token = service
    assert post(client, token, GRID_YAML).status_code == 201
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert client.get(SWEEPS).status_code == 200
        assert client.get(f"{SWEEPS}/1/trials").status_code == 200
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert any("FROM sweeps" in s for s in selects) and any("FROM trials" in s for s in selects)
    for statement in selects:
        assert not re.search(r"sweeps\.spec\b", statement), statement
        assert not re.search(r"trials\.config\b", statement), statement


# --- 4: 500s that must be 4xx -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ("name: x\ntasks: [{name: delay, delay: " + "[" * 300 + "]" * 300 + "}]\n", YAML, None),
        (
            '{"name": "x", "tasks": [{"name": "delay", "delay": ' + "[" * 300 + "]" * 300 + "}]}",
            JSON,
            "tasks[0].delay",
        ),
        ('{"name": "x", "tasks": ["delay"], "model": ' + "[" * 50_000 + "]" * 50_000 + "}", JSON, None),
        ("name: x\ntasks: [{name: pathx, level: !!binary gIGC}]\n", YAML, "tasks[0].level"),
        (
            "name: x\ntasks: [delay]\nsearch: {space: {optim.lr: {low: 1.0e-4, high: 1.0e-2, step: 5.0e-324}}}\n",
            YAML,
            "search.space.optim.lr.step",
        ),
        ('{"name": "a\\u0000b", "tasks": ["delay"]}', JSON, "name"),
        ('{"name": "\\ud800", "tasks": ["delay"]}', JSON, "name"),
        ('{"name": "x", "tasks": ["delay"], "model": {"\\ud800": "\\udc00"}}', JSON, "model"),
        (f"name: x\ntasks: [delay]\nseeds: [{'9' * 5000}]\n", YAML, None),
    ],
)
def test_hostile_values_are_4xx_with_the_field(service, body, headers, field):
    client, _, token = service
    error = error_of(post(client, token, body, headers))
    if field is not None:
        assert error["field"] is not None and error["field"].startswith(field), error
    if "[[[" in body:
        assert f"more than {MAX_DEPTH} levels" in error["message"]


def test_an_error_quoting_invalid_unicode_still_encodes():
    """A 4xx whose message or field quotes a lone surrogate (from a JSON escape) is not a 500."""
    response = error_response(422, "invalid_spec", "bad value '\ud800'", "model.\udc00")
    assert json.loads(response.body) == error_body("invalid_spec", "bad value '\\ud800'", "model.\\udc00")


def test_a_body_that_is_not_utf8_is_422(service):
    client, _, token = service
    error = error_of(post(client, token, b"name: \xff\xfe\ntasks: [delay]\n"))
    assert error["code"] == "invalid_spec" and "UTF-8" in error["message"]


# --- 7: upper bounds, in the schema too ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("optim: {epochs: 1000000000000}", "optim.epochs"),
        ("model: {d_model: 100000000}", "model.d_model"),
        ("tasks: [{name: delay, n_train: 1000000000000}]", "tasks[0].n_train"),
        ("resources: {cpus: 1000000}", "resources.cpus"),
        ("priority: 9223372036854775807", "priority"),
        ("seeds: [-1]", "seeds[0]"),
    ],
)
def test_numbers_past_their_bound_are_422_naming_the_field(service, line, field):
    client, _, token = service
    body = f"name: x\ntasks: [delay]\n{line}\n".replace("tasks: [delay]\ntasks", "tasks")
    error = error_of(post(client, token, body))
    assert error["field"] == field, error


def test_the_schema_states_bounds_limit_s_maximum_and_the_task_names(sqlite_url):
    with TestClient(create_app(service_settings(sqlite_url))) as client:
        document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    sections = schemas["SweepSpec"]["properties"]
    for section, fields in {
        "model": ("d_model", "d_state", "n_layers", "dt_min", "dt_max", "s5_blocks"),
        "optim": ("lr", "epochs", "batch_size", "warmup_steps", "weight_decay"),
    }.items():
        for name in fields:
            value, axis = sections[section]["properties"][name]["anyOf"]
            assert "maximum" in value and axis["items"] == value, (section, name)
    for model, fields in {
        "Resources": ("cpus", "gpus"),
        "SearchSpec": ("n_trials",),
        "Budget": ("max_trials", "max_wall_seconds"),
        "DiagnosticsConfig": ("every", "memory_max_lag"),
    }.items():
        for name in fields:
            prop = schemas[model]["properties"][name]
            bounded = [prop, *prop.get("anyOf", [])]
            assert any("maximum" in p or "exclusiveMaximum" in p for p in bounded), (model, name, prop)
    spec = schemas["SweepSpec"]["properties"]
    assert spec["priority"]["maximum"] == 1_000_000 and spec["seeds"]["items"]["maximum"] == 2**31 - 1
    names, entry = spec["tasks"]["items"]["anyOf"]
    assert names["enum"] == list(TASK_NAMES)
    bounded = entry["allOf"][1]["properties"]
    assert bounded["name"]["enum"] == list(TASK_NAMES)
    assert bounded["n_train"]["anyOf"][0]["maximum"] == 1_000_000
    for path in (SWEEPS, f"{SWEEPS}/{{sweep_id}}/trials"):
        limit = next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "limit")
        assert limit["schema"]["maximum"] == 500, limit


# --- memory: a hostile corpus against `ssmbench serve` in a child process -------------------------------


def hostile_corpus() -> list[tuple[str, bytes]]:
    """Bodies under the 1 MB body limit that, unbounded, would make the service hold gigabytes."""
    ten = "[" + ",".join(str(v) for v in range(1, 11)) + "]"
    long_alias = (
        "name: x\ntasks: [delay]\ns: &s " + "y" * 200_000 + "\nt: [" + ", ".join(["*s"] * 2000) + "]\n"
    )
    return [
        ("application/yaml", BOMB.encode()),
        ("application/yaml", long_alias.encode()),
        (
            "application/yaml",
            f"name: g\ntasks: [delay]\nmodel: {{d_model: {ten}, n_layers: {ten}, s5_blocks: {ten}, d_state: [2,4,6,8,10,12,14,16,18,20]}}\noptim: {{epochs: {ten}, batch_size: {ten}, warmup_steps: {ten}, lr: [.1,.2,.3,.4,.5,.6,.7,.8,.9,1.0]}}\n".encode(),
        ),
        (
            "application/yaml",
            ("name: x\ntasks: [{name: delay, delay: " + "[" * 200_000 + "]" * 200_000 + "}]\n").encode(),
        ),
        (
            "application/json",
            (
                '{"name": "x", "tasks": [{"name": "delay", "delay": ' + "[" * 400_000 + "]" * 400_000 + "}]}"
            ).encode(),
        ),
        (
            "application/json",
            ('{"name": "x", "tasks": ["delay"], "seeds": [' + ",".join(["0"] * 400_000) + "]}").encode(),
        ),
        (
            "application/yaml",
            ("name: x\ntasks: [delay]\nseeds: [" + ",".join(["0"] * 120_000) + "]\n").encode(),
        ),
        (
            "application/yaml",
            (
                "name: x\ntasks: [delay]\nmodel: {"
                + ", ".join(f"k{i}: {{a: 1}}" for i in range(20_000))
                + "}\n"
            ).encode(),
        ),
        ("application/json", json.dumps({"name": "y" * 900_000, "tasks": ["delay"]}).encode()),
        ("application/yaml", b"name: x\ntasks: [{name: pathx, level: " + b"z" * 200_000 + b"}]\n"),
        (
            "application/yaml",
            b"name: x\ntasks: [delay]\nsearch: {sampler: grid, space: {optim.lr: {low: 1.0e-300, high: 1.0e+300, step: 1.0e-300}}}\n",
        ),
    ]


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def test_a_hostile_corpus_is_4xx_and_the_server_s_memory_stays_bounded(sqlite_url, tmp_path):
    made = run_cli("token", "create", "--name", "mallory", "--db", sqlite_url, "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    serve = ServeProcess(sqlite_url, tmp_path / "serve.log", scheduler=False)
    try:
        serve.wait_ready(timeout=120)
        corpus = hostile_corpus()
        with httpx.Client(base_url=serve.url, headers=bearer(token), timeout=60) as client:

            def send(content_type: str, body: bytes) -> httpx.Response:
                return client.post(SWEEPS, content=body, headers={"Content-Type": content_type})

            for content_type, body in corpus[:3]:  # warm up: every code path loaded once
                send(content_type, body)
            assert send("application/yaml", GRID_YAML.encode()).status_code == 201
            before = rss_kb(serve.process.pid)
            for _ in range(3):
                for content_type, body in corpus:
                    assert len(body) < 1_048_576
                    start = time.monotonic()
                    response = send(content_type, body)
                    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
                    error_of(response, response.status_code)
                    assert time.monotonic() - start < 10, (body[:80], time.monotonic() - start)
            grown_mb = (rss_kb(serve.process.pid) - before) / 1024
            print(f"the server's RSS: {before / 1024:.1f} MB before the corpus, grew by {grown_mb:.1f} MB")
            assert grown_mb < 50, f"the server's RSS grew by {grown_mb:.1f} MB"
            assert client.get(SWEEPS).json()["total"] == 1  # nothing hostile was stored
    finally:
        serve.stop()
