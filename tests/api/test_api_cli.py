"""The client commands and `token create` against a real HTTP server (uvicorn in a thread of this
process, no scheduler): tables, `--json` (one document on stdout, nothing else), one-line errors
with their exit codes, and the leaderboard table `ssmbench run` prints."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from conftest import (
    GRID_YAML,
    ThreadedServer,
    finish_trials,
    free_port,
    make_tokens,
    one_line_error,
    service_settings,
)
from rich.console import Console
from typer.testing import CliRunner

from api.cli import app
from api.cli.tables import leaderboard_table
from api.client import ApiError, Client, ServerUnreachable
from orchestrator import store
from orchestrator.db import transaction
from orchestrator.leaderboard import leaderboard

runner = CliRunner()


@pytest.fixture(autouse=True)
def _listops_files(listops_data_dir):
    """GRID_YAML has listops: `submit` to a service on this machine checks its files are there."""


@pytest.fixture
def server(sqlite_url, sessions_for):
    sessions = sessions_for(sqlite_url)
    tokens = make_tokens(sessions, "alice", "bob")
    with ThreadedServer(service_settings(sqlite_url)) as served:
        yield served, sessions, tokens


def cli(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(
        app, list(args), env={"SSMBENCH_API_URL": None, "SSMBENCH_TOKEN": None, **(env or {})}
    )


def one_json(result) -> object:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)  # the whole of stdout is one document


def render(table) -> str:
    console = Console(file=io.StringIO(), width=80)
    console.print(table)
    return console.file.getvalue()


def test_token_create_prints_the_token_once_and_refuses_duplicates(sqlite_url, tmp_path, sessions_for):
    created = one_json(cli("token", "create", "--name", "carol", "--db", sqlite_url, "--json"))
    assert created["name"] == "carol" and created["token"].startswith("ssmb_")
    human = cli("token", "create", "--name", "dave", "--db", sqlite_url)
    assert human.exit_code == 0 and "ssmb_" in human.stdout and "SSMBENCH_TOKEN" in human.stdout
    assert "exists already" in one_line_error(
        cli("token", "create", "--name", "carol", "--db", sqlite_url), 2
    )
    unmigrated = cli("token", "create", "--name", "x", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert "ssmbench db upgrade" in one_line_error(unmigrated, 1)
    with (
        ThreadedServer(service_settings(sqlite_url)) as served,
        Client(served.url, created["token"]) as client,
    ):
        assert client.submit(GRID_YAML).n_trials == 8  # the printed token works


def test_submit_status_trials_cancel_through_the_cli(server, tmp_path):
    served, sessions, tokens = server
    url = ["--url", served.url]
    path = tmp_path / "grid.yaml"
    path.write_text(GRID_YAML)
    created = one_json(cli("submit", str(path), *url, "--token", tokens["alice"], "--json"))
    assert created["n_trials"] == 8 and created["state"] == "pending"
    sweep_id = created["id"]
    finish_trials(sessions, sweep_id, n=3)

    listing = one_json(cli("status", *url, "--json"))
    assert listing["total"] == 1 and listing["items"][0]["trials_by_state"] == {"completed": 3, "pending": 5}
    detail = one_json(cli("status", str(sweep_id), *url, "--json"))
    assert detail["owner"] == "alice" and detail["spec"]["name"] == "grid"
    table = cli("status", str(sweep_id), *url)
    assert table.exit_code == 0 and "completed" in table.stdout and "alice" in table.stdout

    trials = one_json(cli("trials", str(sweep_id), *url, "--json"))
    assert trials["total"] == 8 and [t["number"] for t in trials["items"]] == list(range(8))
    done = one_json(cli("trials", str(sweep_id), "--state", "completed", *url, "--json"))
    assert done["total"] == 3
    table = cli("trials", str(sweep_id), *url)
    assert table.exit_code == 0 and "Trials of sweep" in table.stdout and "completed" in table.stdout

    env = {"SSMBENCH_API_URL": served.url, "SSMBENCH_TOKEN": tokens["bob"]}  # from the environment
    assert "only the owner of sweep" in one_line_error(cli("cancel", str(sweep_id), env=env), 2)
    cancelled = one_json(
        cli("cancel", str(sweep_id), "--json", env={**env, "SSMBENCH_TOKEN": tokens["alice"]})
    )
    assert cancelled["state"] == "cancelled" and cancelled["cancelled_trials"] == 5


def test_bad_input_is_one_line_and_exit_2(server, tmp_path):
    served, _, tokens = server
    url = ["--url", served.url]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntasks: [delay]\nmodel:\n  init: [inv, bogus]\n")
    line = one_line_error(cli("submit", str(bad), *url, "--token", tokens["alice"]), 2)
    assert str(bad) in line and "model.init[1]" in line and "line 4" in line
    assert "cannot read" in one_line_error(cli("submit", str(tmp_path / "missing.yaml"), *url), 2)
    good = tmp_path / "grid.yaml"
    good.write_text(GRID_YAML)
    line = one_line_error(cli("submit", str(good), *url), 2)  # a spec is checked here, then sent
    assert "Authorization" in line and "--token" in line
    assert "no sweep with id 42" in one_line_error(cli("status", "42", *url), 2)
    assert "no sweep with id 42" in one_line_error(cli("trials", "42", *url), 2)
    assert "init" in one_line_error(cli("leaderboard", "--init", "nope", *url), 2)


def test_an_unreachable_server_is_one_line_naming_the_url_and_exit_1():
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("status",), ("leaderboard",), ("trials", "1"), ("cancel", "1"), ("status", "1")):
        line = one_line_error(cli(*args, "--url", url), 1)
        assert url in line and "ssmbench serve" in line
    line = one_line_error(cli("leaderboard", env={"SSMBENCH_API_URL": url}), 1)
    assert url in line
    with pytest.raises(ServerUnreachable, match=url), Client(url) as client:
        client.health()


def test_leaderboard_json_is_the_orchestrators_and_the_table_is_the_one_run_prints(server):
    served, sessions, tokens = server
    with Client(served.url, tokens["alice"]) as client:
        sweep_id = client.submit(GRID_YAML).id
    finish_trials(sessions, sweep_id)
    url = ["--url", served.url]
    with sessions() as s:
        everything, one_sweep = leaderboard(s), leaderboard(s, sweep_id=sweep_id)
        delay = leaderboard(s, task="delay", init="lin", train_eigenvalues=True, include_baselines=False)
    assert one_json(cli("leaderboard", *url, "--json")) == everything.to_dict()
    assert one_json(cli("leaderboard", "--sweep", str(sweep_id), *url, "--json")) == one_sweep.to_dict()
    filtered = cli(
        "leaderboard", "--task", "delay", "--init", "lin", "--trained", "--no-baselines", *url, "--json"
    )
    assert one_json(filtered) == delay.to_dict()

    table = cli("leaderboard", "--sweep", str(sweep_id), *url)
    assert table.exit_code == 0
    assert table.stdout == render(leaderboard_table(one_sweep))  # what `ssmbench run` prints for it
    assert "(published)" in table.stdout and "LRA average" in table.stdout and "%" in table.stdout


def test_the_client_reads_the_whole_board_a_page_at_a_time(sqlite_url, sessions_for):
    sessions = sessions_for(sqlite_url)
    tokens = make_tokens(sessions, "alice")
    settings = service_settings(sqlite_url, max_page_size=4)
    with ThreadedServer(settings) as served, Client(served.url, tokens["alice"]) as client:
        finish_trials(sessions, client.submit(GRID_YAML).id)
        whole, page = client.leaderboard(), client.leaderboard(offset=4, limit=4)
        rest = client.leaderboard(offset=5)
    with sessions() as s:
        assert whole == leaderboard(s) and whole.total_rows > 3 * 4  # four pages at least
        assert page == leaderboard(s, offset=4, limit=4)
        assert rest.rows == leaderboard(s).rows[5:] and (rest.offset, rest.limit) == (5, None)


def test_submit_wait_follows_the_sweep_and_prints_its_leaderboard(server, tmp_path):
    served, sessions, tokens = server
    path = tmp_path / "grid.yaml"
    path.write_text(GRID_YAML)

    def worker():  # stands in for the scheduler: finish the trials once the sweep exists
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Client(served.url) as client:
                page = client.sweeps()
            if page.items:
                time.sleep(0.5)
                finish_trials(sessions, page.items[0].id)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=worker)
    thread.start()
    result = cli(
        "submit",
        str(path),
        "--wait",
        "--poll",
        "0.2",
        "--url",
        served.url,
        "--token",
        tokens["alice"],
        "--json",
    )
    thread.join()
    document = one_json(result)
    assert document["sweep"]["state"] == "completed" and document["sweep"]["progress"] == 1.0
    with sessions() as s:
        assert document["leaderboard"] == leaderboard(s, sweep_id=document["sweep"]["id"]).to_dict()


def test_client_errors_carry_the_servers_message(server):
    served, _, tokens = server
    with Client(served.url, tokens["alice"]) as client:
        with pytest.raises(ApiError) as info:
            client.submit({"name": "x", "tasks": ["delay"], "model": {"init": "bogus"}})
        assert (
            info.value.status == 422
            and info.value.field == "model.init"
            and info.value.code == "invalid_spec"
        )
        with pytest.raises(ApiError) as info:
            client.trial(123)
        assert info.value.status == 404 and "no trial with id 123" in str(info.value)
        assert client.health().status == "ok"
        assert client.baselines() and "ssmbench_http_request_duration_seconds" in client.metrics()


def test_serve_refuses_an_unmigrated_or_unreachable_database_in_one_line(tmp_path):
    line = one_line_error(cli("serve", "--db", f"sqlite:///{tmp_path / 'new.db'}", "--no-scheduler"), 1)
    assert "ssmbench db upgrade" in line
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    assert "cannot reach the database" in one_line_error(
        cli("serve", "--db", unreachable, "--no-scheduler"), 1
    )
    bad_fake = cli(
        "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", env={"SSMBENCH_FAKE_TRAINER": "no_such_module:f"}
    )
    assert "SSMBENCH_FAKE_TRAINER" in one_line_error(bad_fake, 2)


def test_a_failed_sweep_shows_its_reason_in_status_the_api_and_wait(server, tmp_path):
    served, sessions, tokens = server
    url = ["--url", served.url]
    with Client(served.url, tokens["alice"]) as client:
        sweep_id = client.submit(GRID_YAML).id
    finish_trials(sessions, sweep_id, n=2)
    reason = "its stored spec does not read: TypeError: '<' not supported"
    with transaction(sessions) as s:
        assert store.fail_sweep(s, sweep_id, reason) == 6  # the pending trials are cancelled
        assert store.fail_sweep(s, sweep_id, "again") == 0  # a closed sweep stays as it is

    detail = one_json(cli("status", str(sweep_id), *url, "--json"))
    assert detail["state"] == "failed" and detail["error"] == reason
    assert detail["trials_by_state"] == {"completed": 2, "cancelled": 6}
    listing = one_json(cli("status", *url, "--json"))
    assert listing["items"][0]["error"] == reason
    table = cli("status", str(sweep_id), *url)
    assert (
        table.exit_code == 0 and "failed" in table.stdout and "its stored spec does not read" in table.stdout
    )
    with Client(served.url) as client:
        assert client.wait(sweep_id, timeout=5).state == "failed"  # a failed sweep is closed
