"""Fixtures of the service tests: migrated databases (SQLite and PostgreSQL), apps, tokens, and a
real HTTP server — uvicorn in a thread of the test process, or `ssmbench serve` in a subprocess.

Migrating takes a while, so each database is migrated once per test process and emptied between
tests: SQLite by copying a migrated template file, PostgreSQL by truncating a schema of this
process's own (`?options=-csearch_path%3D<schema>`, as in tests/orchestrator/conftest.py). The
published baselines (a migration's seed) stay. Where no PostgreSQL answers, its half is skipped
with the reason (failed under CI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from api_fakes import completed  # tests/api/api_fakes.py
from fastapi.testclient import TestClient
from postgres import postgres_schema, require_postgres  # tests/postgres.py
from sqlalchemy import func, select, text

from api.app import create_app
from api.deps import ServiceSettings
from api.server import uvicorn_limits
from orchestrator import store
from orchestrator.db import make_engine, session_factory, transaction, upgrade
from orchestrator.leaderboard import leaderboard, record_result_aggregate
from orchestrator.models import EpochMetric, Result, Trial
from orchestrator.tokens import create_token
from ssm.config import TrialConfig

HERE = Path(__file__).resolve().parent
YAML = {"Content-Type": "application/yaml"}
KEPT_TABLES = ("baselines", "ssmbench_alembic_version")
CLI = [sys.executable, "-c", "from api.cli import app; app()"]  # the `ssmbench` script, whatever the venv


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 420
) -> subprocess.CompletedProcess:
    """`ssmbench ARGS` in a subprocess, stdout and stderr captured apart."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SSMBENCH_")}
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ssmbench.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    require_postgres()
    with postgres_schema("api") as url:
        yield url


def _truncate(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            tables = connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
            emptied = [t for t in tables if t not in KEPT_TABLES]
            if emptied:
                connection.execute(text(f"TRUNCATE {', '.join(emptied)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, sqlite_template) -> str:
    """A migrated, empty database (baselines seeded), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "ssmbench.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_session_url")
    _truncate(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template) -> str:
    """A migrated, empty SQLite database, for tests whose subject is not the database."""
    path = tmp_path / "ssmbench.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


GRID_YAML = """\
name: grid
tasks: [delay, listops]
model:
  layer: s4d
  init: [inv, lin]
  d_model: 8
seeds: [0, 1]
"""


def finish_trials(sessions, sweep_id: int, n: int | None = None) -> list[int]:
    """Run trials of the sweep to completion here (as a worker would), with epoch metrics."""
    with transaction(sessions) as s:
        trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.id)).all()
        done = []
        for trial in trials[:n]:
            attempt = store.claim(s, trial.id)
            if attempt is None:  # not pending: reused a completed result
                continue
            config = TrialConfig.model_validate(trial.config)
            accuracy = 0.6 + 0.01 * trial.seed + (0.05 if trial.init == "lin" else 0.0)
            for epoch in range(2):
                store.record_epoch(
                    s, trial.id, attempt, {"epoch": epoch, "train_loss": 1.0, "val_metric": accuracy}
                )
            store.finish(s, trial.id, attempt, completed(config, accuracy), "completed")
            record_result_aggregate(s, trial.id)
            done.append(trial.id)
        store.close_finished_sweeps(s)
    return done


def service_settings(url: str, **overrides) -> ServiceSettings:
    return ServiceSettings(**{"database_url": url, "scheduler": False, **overrides})


@pytest.fixture
def sessions_for():
    engines = []

    def make(url: str):
        engine = make_engine(url)
        engines.append(engine)
        return session_factory(engine)

    yield make
    for engine in engines:
        engine.dispose()


def make_tokens(sessions, *names: str) -> dict[str, str]:
    with transaction(sessions) as session:
        return {name: create_token(session, name) for name in names}


@pytest.fixture
def service(db_url, sessions_for):
    """(client, sessions, tokens) for a fresh app on `db_url`, users alice and bob."""
    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice", "bob")
    with TestClient(create_app(service_settings(db_url))) as client:
        yield client, sessions, tokens


def submit_sweep(client, token, text=GRID_YAML) -> dict:
    """POST the YAML spec `text` as the token's user; the created sweep (201 checked)."""
    response = client.post("/api/v1/sweeps", content=text, headers={**YAML, **bearer(token)})
    assert response.status_code == 201, response.text
    return response.json()


def one_line_error(result, code: int = 2) -> str:
    """The one stderr line `error: ...` of a CLI run that exited with `code`."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def error_of(response, status: int = 422) -> dict:
    """The error of an API answer, after checking its status and the error body's shape (code,
    message, field; a message that says something)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    assert body["error"]["message"]
    return body["error"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def listops_data_dir(tmp_path, monkeypatch) -> Path:
    """$SSMBENCH_DATA_DIR with the ListOps split files present (empty: `submit` and `run` check that
    files exist, a service without a scheduler reads none), for tests that submit GRID_YAML."""
    from ssm.data.listops import LISTOPS_DIR, SPLIT_FILES, require_listops_files

    data = tmp_path / "listops-data"
    (data / LISTOPS_DIR).mkdir(parents=True)
    for name in SPLIT_FILES.values():
        (data / LISTOPS_DIR / name).touch()
    require_listops_files(data)  # what the check looks for
    monkeypatch.setenv("SSMBENCH_DATA_DIR", str(data))
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a real HTTP server in this process (no scheduler, no Ray) ---------------------------------------


class ThreadedServer:
    """uvicorn serving `create_app(settings)` on a loopback port from a thread of the test process,
    with the connection limits `ssmbench serve` sets (`api.server.uvicorn_limits`); `options` go to
    uvicorn (`log_config=None` leaves logging to the test: caplog sees uvicorn's records)."""

    def __init__(self, settings: ServiceSettings, **options):
        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {
            "host": "127.0.0.1",
            "port": self.port,
            "log_level": "warning",
            "lifespan": "on",
            **options,
        }
        config = uvicorn.Config(self.app, **uvicorn_limits(settings), **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the threaded uvicorn server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# --- `ssmbench serve` in a subprocess (the scheduler, a local Ray, the fake trainer) -----------------


class ServeProcess:
    """`ssmbench serve` in its own process group, so that teardown can end it and every
    process it started (Ray's) by the group id — its own pid."""

    def __init__(self, db: str, log_path: Path, *, scheduler: bool = True, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SSMBENCH_")}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "SSMBENCH_FAKE_TRAINER": "api_fakes:quick",
                "SSMBENCH_CHECKPOINT_DIR": str(log_path.parent / "checkpoints"),
                "SSMBENCH_SCHEDULER_POLL_SECONDS": "0.05",
                "SSMBENCH_HEARTBEAT_SECONDS": "1",
                "RAY_DEDUP_LOGS": "0",
                **(extra_env or {}),
            }
        )
        command = [*CLI, "serve", "--port", str(self.port), "--db", db]
        command += ["--num-cpus", "2", "--log-level", "warning"]
        if not scheduler:
            command.append("--no-scheduler")
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self, timeout: float = 300, scheduler_state: tuple[str, ...] = ()) -> dict:
        """Poll /health until it answers 200 (and, if given, the scheduler is in one of the states)."""
        deadline = time.monotonic() + timeout
        health: dict = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ssmbench serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                response = httpx.get(f"{self.url}/api/v1/health", timeout=5)
                health = response.json()
                if response.status_code == 200 and (
                    not scheduler_state or health["scheduler"]["state"] in scheduler_state
                ):
                    return health
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"ssmbench serve at {self.url} not ready: {health}\n{self.log()}")

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown: the scheduler and Ray stop), then SIGKILL to the
        process group of whatever is left."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        finally:
            self._log.close()


# --- checks of a served sweep ------------------------------------------------------------------------

SPEC = """\
name: e2e
tasks: [delay, listops]
model: {layer: s4d, init: [inv, lin], d_model: 8, d_state: 4, n_layers: 1}
optim: {epochs: 2}
seeds: [0, 1]
resources: {cpus: 0.5}
"""


def check_every_trial_ran_once(url: str, sweep_id: int, n_trials: int) -> None:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id)).all()
            assert len(trials) == n_trials
            assert {(t.state, t.attempt) for t in trials} == {("completed", 1)}, [
                (t.id, t.state, t.attempt) for t in trials
            ]
            assert s.scalar(select(func.count()).select_from(Result)) == n_trials
            epochs = s.execute(
                select(EpochMetric.trial_id, func.count()).group_by(EpochMetric.trial_id)
            ).all()
            assert sorted(n for _, n in epochs) == [2] * n_trials  # no epoch written twice
    finally:
        engine.dispose()


def local_boards(url: str, sweep_id: int) -> tuple[dict, dict]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return leaderboard(s).to_dict(), leaderboard(s, sweep_id=sweep_id).to_dict()
    finally:
        engine.dispose()


def stop_and_check_shutdown(serve: ServeProcess) -> None:
    """SIGINT: uvicorn shuts down, the lifespan stops the scheduler and Ray; nothing is left."""
    serve.process.send_signal(signal.SIGINT)
    # generous bounds: on a loaded 2-CPU machine Ray takes tens of seconds to start and to stop
    assert serve.process.wait(timeout=120) == 0, serve.log()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(serve.process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    pytest.fail(f"processes of ssmbench serve outlived it:\n{serve.log()}")
