"""End to end over real HTTP: `ssmbench serve` in a subprocess (uvicorn, the scheduler, a local Ray
with 2 CPUs, the fake trainer of api_fakes.py) on SQLite, driven by the `ssmbench` CLI. The same on
PostgreSQL with two replicas: test_api_replicas.py (a file of its own, so that the two run in
parallel under `pytest -n 2 --dist loadfile`).

Every process started here is ended in teardown by its pid (its process group: Ray's too), also
when the test fails.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from conftest import (
    SPEC,
    ServeProcess,
    check_every_trial_ran_once,
    local_boards,
    run_cli,
    stop_and_check_shutdown,
)
from typer.testing import CliRunner

from api.cli import app as cli_app
from api.client import ApiError, Client


def test_serve_submit_wait_and_leaderboard_over_http_on_sqlite(sqlite_url, tmp_path, listops_data_dir):
    serve = ServeProcess(sqlite_url, tmp_path / "serve.log")
    try:
        made = run_cli("token", "create", "--name", "alice", "--db", sqlite_url, "--json")
        assert made.returncode == 0, made.stderr
        token = json.loads(made.stdout)["token"]
        health = serve.wait_ready(scheduler_state=("active",))
        assert health["ray"]["ok"] and "2 CPU" in health["ray"]["detail"], health

        with Client(serve.url, token) as client, pytest.raises(ApiError) as refused:
            client.submit(SPEC.replace("cpus: 0.5", "cpus: 8"))  # the local Ray has 2 CPUs
        assert refused.value.status == 422 and refused.value.field == "resources"

        spec = tmp_path / "e2e.yaml"
        spec.write_text(SPEC)
        # a service on this machine: submit checks the task files in the data directory (placeholders)
        env = {
            "SSMBENCH_API_URL": serve.url,
            "SSMBENCH_TOKEN": token,
            "SSMBENCH_DATA_DIR": str(listops_data_dir),
        }
        submitted = run_cli("submit", str(spec), "--wait", "--poll", "0.5", env=env)
        assert submitted.returncode == 0, (submitted.stdout, submitted.stderr, serve.log())
        assert "sweep 1 completed" in submitted.stdout and "Leaderboard" in submitted.stdout

        check_every_trial_ran_once(sqlite_url, 1, 8)
        everything, one_sweep = local_boards(sqlite_url, 1)
        printed = run_cli("leaderboard", "--sweep", "1", "--json", env=env)
        assert printed.returncode == 0 and printed.stderr == "", printed.stderr
        assert json.loads(printed.stdout) == one_sweep
        assert [r["n_seeds"] for r in one_sweep["rows"] if not r["is_baseline"]] == [2, 2, 2, 2]
        unfiltered = CliRunner().invoke(cli_app, ["leaderboard", "--json", "--url", serve.url])
        assert unfiltered.exit_code == 0 and json.loads(unfiltered.stdout) == everything

        metrics = httpx.get(f"{serve.url}/metrics").text
        assert 'ssmbench_trials{state="completed"} 8.0' in metrics
        assert "ssmbench_trial_duration_seconds_count 8.0" in metrics
        assert "ssmbench_sweeps_submitted_total 1.0" in metrics
        stop_and_check_shutdown(serve)
    finally:
        serve.stop()


def test_health_is_degraded_while_scheduling_passes_keep_failing(sqlite_url, monkeypatch):
    """The service's scheduler loop keeps running when a pass raises, and /health says so: 503
    `degraded` after a few failing passes in a row, with a few words and not the exception's text;
    `ok` again once passes go through. Ray is left out (the passes are injected)."""
    from fastapi.testclient import TestClient

    import orchestrator.cluster
    import orchestrator.scheduler
    from api.app import create_app
    from api.deps import ServiceSettings

    monkeypatch.setattr(orchestrator.cluster, "connect_ray", lambda num_cpus=None: None)
    monkeypatch.setattr(
        orchestrator.cluster,
        "cluster_summary",
        lambda: {"nodes": [], "cpus_total": 2.0, "cpus_in_use": 0.0, "gpus_total": 0.0},
    )
    failing = {"now": True}

    def step(self):
        if failing["now"]:
            raise RuntimeError("internal detail: /secret/path")
        self.holds_lease = True
        return False

    monkeypatch.setattr(orchestrator.scheduler.Scheduler, "step", step)
    settings = ServiceSettings(database_url=sqlite_url, scheduler_poll_seconds=0.02)

    def health_when(client, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = client.get("/api/v1/health")
            if predicate(response):
                return response
            time.sleep(0.05)
        raise AssertionError(f"health never got there: {response.status_code} {response.text}")

    with TestClient(create_app(settings)) as client:
        degraded = health_when(client, lambda r: r.status_code == 503)
        body = degraded.json()
        assert body["status"] == "degraded" and body["ray"]["ok"] and body["database"]["ok"]
        assert body["scheduler"]["failing_passes"] >= 3
        assert body["scheduler"]["last_error"] == "the last scheduling pass failed (see the service log)"
        assert "secret" not in degraded.text
        failing["now"] = False
        recovered = health_when(client, lambda r: r.status_code == 200).json()
        assert recovered["status"] == "ok" and recovered["scheduler"]["failing_passes"] == 0
        assert recovered["scheduler"]["state"] == "active" and recovered["scheduler"]["last_error"] is None
