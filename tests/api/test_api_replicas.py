"""Two service replicas (`ssmbench serve`, each with its scheduler and a local Ray) on one PostgreSQL
database: a sweep submitted through one of them is trained exactly once — every trial completed at
attempt 1, no epoch written twice — while the lease keeps the other on standby; both answer the
same leaderboard as `orchestrator.leaderboard`. Processes are ended in teardown by their pids."""

from __future__ import annotations

import json

import httpx
from conftest import (
    SPEC,
    ServeProcess,
    check_every_trial_ran_once,
    local_boards,
    stop_and_check_shutdown,
)
from postgres import postgres_schema, require_postgres  # tests/postgres.py
from typer.testing import CliRunner

from api.cli import app as cli_app


def test_two_replicas_on_postgresql_run_every_trial_once(tmp_path, listops_data_dir):  # submit checks files
    require_postgres()
    with postgres_schema("api") as url:
        replicas = [ServeProcess(url, tmp_path / f"replica-{i}.log") for i in range(2)]
        try:
            states = [
                r.wait_ready(scheduler_state=("active", "standby"))["scheduler"]["state"] for r in replicas
            ]
            runner = CliRunner()
            made = runner.invoke(cli_app, ["token", "create", "--name", "alice", "--db", url, "--json"])
            token = json.loads(made.stdout)["token"]
            first, second = replicas
            spec = tmp_path / "e2e.yaml"
            spec.write_text(SPEC.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))

            result = runner.invoke(
                cli_app,
                [
                    "submit",
                    str(spec),
                    "--wait",
                    "--poll",
                    "0.5",
                    "--json",
                    "--url",
                    first.url,
                    "--token",
                    token,
                ],
            )
            assert result.exit_code == 0, (result.stdout, result.stderr, first.log(), second.log())
            sweep_id = json.loads(result.stdout)["sweep"]["id"]
            check_every_trial_ran_once(url, sweep_id, 12)

            everything, one_sweep = local_boards(url, sweep_id)
            for replica in replicas:  # either replica answers the same
                board = runner.invoke(
                    cli_app, ["leaderboard", "--sweep", str(sweep_id), "--json", "--url", replica.url]
                )
                assert json.loads(board.stdout) == one_sweep
            board = runner.invoke(cli_app, ["leaderboard", "--json", "--url", second.url])
            assert json.loads(board.stdout) == everything

            healths = [httpx.get(f"{r.url}/api/v1/health").json()["scheduler"] for r in replicas]
            assert sorted(h["state"] for h in healths) == ["active", "standby"], (states, healths)
            assert sum(h["holds_lease"] for h in healths) == 1
            for replica in replicas:
                stop_and_check_shutdown(replica)
        finally:
            for replica in replicas:
                replica.stop()
