"""The local-first CLI (issue 17): `run` says when trials fail (exit code, a summary by reason with
the fix, where the results are) and refuses a sweep that cannot run; the read commands read a
database without a server and print what the service would; progress as plain lines off a terminal;
`--set` and `--dry-run` on sweeps; YAML floats; the conventions (`--version`, `-h`, examples, choices).
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import get_args

import pytest
from conftest import GRID_YAML, HERE, ThreadedServer, finish_trials, make_tokens, run_cli, service_settings
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.cli import app
from api.cli.client_commands import SWEEP_STATES, TRIAL_STATES
from api.cli.common import INITS, LAYERS, REPARAMS, PlainProgress, Verbosity, progress_bar, set_verbosity
from api.cli.tables import leaderboard_table
from api.client import Client
from orchestrator.leaderboard import leaderboard
from orchestrator.models import Sweep, SweepState, TrialState
from orchestrator.spec import parse_spec

runner = CliRunner()


@pytest.fixture(autouse=True)
def _listops_files(listops_data_dir):
    """GRID_YAML has listops: `submit` to a service on this machine checks its files are there."""


REPO = HERE.parent.parent

TROUBLED_YAML = """\
name: troubled
tasks:
  - {name: delay, n_train: 20, n_val: 8, n_test: 8, seq_len: 8, delay: 2}
  - {name: adding, n_train: 20, n_val: 8, n_test: 8, seq_len: 8}
model: {layer: s4d, init: inv, d_model: 4, d_state: 4, n_layers: 1}
optim: {epochs: 1, batch_size: 4}
seeds: [0]
resources: {cpus: 1}
"""


def cli(*args: str, env: dict[str, str | None] | None = None):
    base = {
        "SSMBENCH_API_URL": None,
        "SSMBENCH_TOKEN": None,
        "SSMBENCH_DATABASE_URL": None,
        "RAY_ADDRESS": None,
    }
    return runner.invoke(app, list(args), env={**base, **(env or {})})


def squeezed(text: str) -> str:
    """`text` without whitespace: what a message says, wherever the console wrapped it."""
    return "".join(text.split())


@pytest.fixture(autouse=True)
def _normal_verbosity():
    yield
    set_verbosity(False, False)  # the app callback sets it for the process


def test_run_with_failing_trials_exits_1_and_sums_them_up_by_reason_with_the_fix(tmp_path):
    """A real `ssmbench run` (local Ray, a fake trainer): 2 trials of a task whose files are missing
    fail, 1 diverges, 1 completes. Output not on a terminal: progress as plain lines on stderr."""
    spec = tmp_path / "troubled.yaml"
    spec.write_text(TROUBLED_YAML)
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    pythonpath = os.pathsep.join([str(REPO), str(HERE)])
    env = {"PYTHONPATH": pythonpath, "SSMBENCH_FAKE_TRAINER": "api_fakes:troubled"}
    done = run_cli("run", str(spec), "--db", db, "--set", "optim.lr=[1e-2, 2]", env=env, timeout=300)
    assert done.returncode == 1, (done.stdout, done.stderr)
    stderr = done.stderr
    assert re.search(
        r"failed: 2 of 4 trials failed: DataNotFoundError: ListOps split not found: expected \S+"
        r"basic_train\.tsv\. .* — run `ssmbench data generate listops --data-dir data`",
        stderr,
    ), stderr
    assert "failed: 1 of 4 trials diverged: the loss became NaN or infinite — lower optim.lr" in stderr
    assert re.search(r"^troubled: \d/4 done", stderr, re.M), stderr  # plain progress lines
    assert re.search(r"^troubled: 4/4 done", stderr, re.M), stderr  # and the last state
    assert f"results: sweep 1 in {db}" in stderr
    assert f"ssmbench leaderboard --sweep 1 --db '{db}'" in stderr
    # stdout: the leaderboard, with no published baselines (no LRA task ran)
    assert "Leaderboard" in done.stdout and "(published)" not in done.stdout
    assert "LRA average" not in done.stdout and "failed" not in done.stdout

    # the commands it names show the same board again, without a server
    board = cli("leaderboard", "--sweep", "1", "--db", db)
    assert board.exit_code == 0 and board.stdout.strip() == done.stdout.strip()
    trials = cli("trials", "1", "--db", db)
    assert trials.exit_code == 0, trials.stderr
    assert trials.stdout.count("failed") == 2 and "diverged" in trials.stdout
    assert re.search(r"\d\d\.\d\d%", trials.stdout)  # the completed trial's test accuracy
    status = json.loads(cli("status", "1", "--db", db, "--json").stdout)
    assert status["trials_by_state"] == {"completed": 1, "failed": 2, "diverged": 1}


def test_run_and_submit_refuse_a_sweep_that_cannot_run_with_the_list_of_problems(tmp_path):
    spec = tmp_path / "lra.yaml"
    spec.write_text("name: lra\ntasks: [delay, {name: listops, max_len: 64}]\nmodel: {d_model: 4}\n")
    db = tmp_path / "never.db"
    data = tmp_path / "data"
    refused = cli(
        "run", str(spec), "--db", f"sqlite:///{db}", "--data-dir", str(data), "--set", "resources.gpus=64"
    )
    assert refused.exit_code == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[0] == "error: the sweep cannot run (2 problem(s)):"
    assert lines[1].startswith(f"  - listops: ListOps split not found: expected {data}")
    assert f"ssmbench data generate listops --data-dir {data}" in refused.stderr
    assert "resources: no node of the cluster can run a trial asking for 1 CPUs and 64 GPUs" in refused.stderr
    assert not db.exists()  # nothing ran, nothing was written

    submitted = cli("submit", str(spec), "--data-dir", str(data), "--url", "http://127.0.0.1:9")
    assert submitted.exit_code == 2 and "listops: ListOps split not found" in submitted.stderr


def test_submit_to_a_local_service_checks_the_default_data_directory_as_run_does(tmp_path):
    spec = tmp_path / "lra.yaml"
    spec.write_text("name: lra\ntasks: [delay, {name: listops, max_len: 64}]\nmodel: {d_model: 4}\n")
    data = tmp_path / "default-data"
    env = {"SSMBENCH_DATA_DIR": str(data)}
    for local in ("http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"):
        refused = cli("submit", str(spec), "--url", local, env=env)  # refused before any request
        assert refused.exit_code == 2, (local, refused.stderr)
        said = squeezed(refused.stderr)  # the terminal width wraps lines, inside a long path too
        assert squeezed(f"listops: ListOps split not found: expected {data}") in said
        assert said.startswith(
            squeezed(f"error: the sweep cannot run (task files checked in {data}, the data")
        )
        assert squeezed("pass --data-dir DIR if the service on this machine reads another") in said
    ran = cli("run", str(spec), "--db", f"sqlite:///{tmp_path / 'never.db'}", env=env)
    assert ran.exit_code == 2 and f"expected {data}" in ran.stderr  # the same directory as run's
    dry = cli("submit", str(spec), "--dry-run", env={**env, "SSMBENCH_API_URL": "http://127.0.0.1:9"})
    assert dry.exit_code == 2 and "listops: ListOps split not found" in dry.stdout + dry.stderr
    # a service elsewhere reads its cluster's data, which this client cannot see: no check here
    remote = cli("submit", str(spec), "--dry-run", "--url", "http://ssmbench.invalid:8000", env=env)
    assert remote.exit_code == 0, remote.stderr
    assert "ListOps" not in remote.stdout + remote.stderr


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.8.9.1", True),
        ("https://localhost/", True),
        ("http://[::1]:8000", True),
        ("127.0.0.1:8000", True),
        ("http://10.0.0.5:8000", False),
        ("https://ssmbench.example.org", False),
    ],
)
def test_which_service_urls_are_this_machine(url, local):
    from api.cli.planning import is_local_url

    assert is_local_url(url) is local


def test_dry_run_prints_the_plan_with_a_set_grid_axis_and_reused_results(sqlite_url, sessions_for, tmp_path):
    sessions = sessions_for(sqlite_url)
    make_tokens(sessions, "alice")
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID_YAML)
    token = make_tokens(sessions, "bob")["bob"]
    with ThreadedServer(service_settings(sqlite_url)) as served, Client(served.url, token) as client:
        sweep_id = client.submit(GRID_YAML).id
    finish_trials(sessions, sweep_id)  # 8 completed results: delay and listops × inv, lin × 2 seeds

    plan = cli(
        "run", str(spec), "--db", sqlite_url, "--set", "tasks=[delay]", "--set", "model.init=[inv, lin, legs]",
        "--dry-run",
    )  # fmt: skip
    assert plan.exit_code == 0, plan.stderr
    assert "trials:        6" in plan.stdout  # 1 task × 3 inits × 2 seeds
    assert "groups:        3 configuration(s)" in plan.stdout
    assert "grid axes:     model.init" in plan.stdout
    assert "per trial:     1 CPU(s), 0 GPU(s)" in plan.stdout
    assert "reused:        4 result(s) already in the database" in plan.stdout  # delay × inv, lin × 2 seeds
    assert "problems:      none" in plan.stdout
    with sessions() as s:  # nothing was stored: still the one sweep
        assert s.scalar(select(func.count()).select_from(Sweep)) == 1

    bad = cli("run", str(spec), "--set", "model.init=[inv, bogus]", "--dry-run")
    assert bad.exit_code == 2 and "model.init[1]" in bad.stderr
    submit_plan = cli("submit", str(spec), "--set", "seeds=[0, 1, 2]", "--dry-run")
    assert submit_plan.exit_code == 0 and "trials:        12" in submit_plan.stdout
    assert "unknown (the service decides)" in submit_plan.stdout


def test_submit_set_sends_the_merged_spec(sqlite_url, sessions_for, tmp_path):
    sessions = sessions_for(sqlite_url)
    token = make_tokens(sessions, "alice")["alice"]
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID_YAML)
    with ThreadedServer(service_settings(sqlite_url)) as served:
        created = cli(
            "submit",
            str(spec),
            "--set",
            "optim.lr=[1e-3, 3e-3]",
            "--url",
            served.url,
            "--token",
            token,
            "--json",
        )
        assert created.exit_code == 0, created.stderr
        assert json.loads(created.stdout)["n_trials"] == 16
        with Client(served.url, token) as client:
            stored = client.sweep(json.loads(created.stdout)["id"]).spec
    assert stored["optim"]["lr"] == [1e-3, 3e-3]  # floats, not the strings "1e-3"


def test_read_commands_print_the_same_from_the_database_as_through_the_service(sqlite_url, sessions_for):
    sessions = sessions_for(sqlite_url)
    token = make_tokens(sessions, "alice")["alice"]
    with ThreadedServer(service_settings(sqlite_url)) as served:
        with Client(served.url, token) as client:
            sweep_id = client.submit(GRID_YAML).id
        finish_trials(sessions, sweep_id, n=6)
        ident = str(sweep_id)
        commands = [
            ("leaderboard",),
            ("leaderboard", "--sweep", ident),
            ("leaderboard", "--task", "listops", "--init", "lin", "--no-baselines"),
            ("status",),
            ("status", ident),
            ("trials", ident),
            ("trials", ident, "--state", "completed"),
        ]
        for command in commands:
            for json_flag in ((), ("--json",)):
                served_out = cli(*command, *json_flag, "--url", served.url)
                direct = cli(*command, *json_flag, "--db", sqlite_url)
                assert served_out.exit_code == direct.exit_code == 0, (command, direct.stderr)
                assert direct.stdout == served_out.stdout, command
                if json_flag:  # no --db, no API URL: the local database (the settings' default)
                    default = cli(*command, *json_flag, env={"SSMBENCH_DATABASE_URL": sqlite_url})
                    assert default.stdout == served_out.stdout, command
        missing_url = cli("status", "42", "--url", served.url)
        missing_db = cli("status", "42", "--db", sqlite_url)
        assert missing_db.exit_code == missing_url.exit_code == 2
        assert missing_db.stderr == missing_url.stderr == "error: sweep_id: no sweep with id 42\n"
    trials = cli("trials", ident, "--db", sqlite_url)
    assert "65.00%" in trials.stdout and "test" in trials.stdout  # the metric, accuracy in percent
    with sessions() as s:
        wide = Console(file=io.StringIO(), width=200)
        wide.print(leaderboard_table(leaderboard(s, sweep_id=sweep_id)))
    board = wide.file.getvalue()
    assert "LRA average" in board and "S5-PTD (published)" in board
    assert board.count("published average only") == 1  # S5-PTD publishes only its average


def test_a_read_without_any_database_or_server_says_how_to_get_one(tmp_path):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    result = cli("leaderboard", env={"SSMBENCH_DATABASE_URL": missing})
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: no ssmbench database at {missing} (`ssmbench run SPEC` makes one)"
    )
    assert not (tmp_path / "none.db").exists()


def test_a_synthetic_only_board_has_no_lra_average_and_labels_round_floats(sqlite_url, sessions_for):
    from orchestrator import store
    from orchestrator.db import transaction

    sessions = sessions_for(sqlite_url)
    spec = parse_spec("name: lr\ntasks: [delay]\nmodel: {d_model: 4}\noptim: {lr: [1.3456e-3, 0.1]}\n")
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, spec).id
    finish_trials(sessions, sweep_id)
    with sessions() as s:
        board = leaderboard(s, sweep_id=sweep_id)
    labels = {row.label for row in board.rows}
    assert labels == {"s4d · legs · exp · trained · lr=1.35e-3", "s4d · legs · exp · trained · lr=0.1"}
    printed = cli("leaderboard", "--sweep", str(sweep_id), "--db", sqlite_url).stdout
    assert "LRA average" not in printed and "(published)" not in printed


def test_progress_off_a_terminal_is_plain_lines_at_most_one_per_interval():
    out = Console(file=io.StringIO(), width=200)
    now = [0.0]
    plain = PlainProgress("sweep", 5, out, interval=10.0, clock=lambda: now[0])
    for moment, done in ((0.0, 0), (1.0, 1), (2.0, 2), (11.0, 2), (12.0, 3), (25.0, 4), (26.0, 5)):
        now[0] = moment
        plain.update(done, status=f"completed {done}")
    plain.close()
    lines = out.file.getvalue().splitlines()
    assert lines == [
        "sweep: 0/5 done  completed 0  (0 s)",
        "sweep: 2/5 done  completed 2  (11 s)",  # 1 and 2 came within 10 s of the last line
        "sweep: 4/5 done  completed 4  (25 s)",
        "sweep: 5/5 done  completed 5  (26 s)",  # the last state, when closed
    ]

    quiet = Console(file=io.StringIO())
    Verbosity.quiet = True
    with progress_bar("x", 3, out=quiet) as update:
        update(3)
    assert quiet.file.getvalue() == ""


def test_yaml_numbers_like_1e_3_are_floats_in_specs_and_set():
    grid = parse_spec("name: g\ntasks: [delay]\noptim: {lr: [1e-3, 3E-2, 1.0e-4, 2], weight_decay: 1e-5}\n")
    assert grid.optim["lr"] == [1e-3, 3e-2, 1e-4, 2] and isinstance(grid.optim["lr"][0], float)
    assert grid.optim["weight_decay"] == 1e-5
    search = parse_spec(
        "name: s\ntasks: [delay]\nsearch: {n_trials: 2, space: {optim.lr: {low: 1e-4, high: 1e-2, log: true}}}\n"
    )
    assert search.search.space["optim.lr"].low == 1e-4
    from api.cli.common import parse_overrides

    assert parse_overrides(["optim.lr=1e-3", "model.init=[lin, inv]"]) == {
        "optim": {"lr": 1e-3},
        "model": {"init": ["lin", "inv"]},
    }


def test_conventions_version_h_examples_choices_completion():
    from ssm import __version__
    from ssm.config import InitName, LayerName, ReparamName

    version = cli("--version")
    assert version.exit_code == 0 and version.stdout == f"ssmbench {__version__}\n"
    top = cli("-h")
    assert top.exit_code == 0 and "--install-completion" in top.stdout and "--verbose" in top.stdout
    assert (get_args(LayerName), get_args(InitName), get_args(ReparamName)) == (LAYERS, INITS, REPARAMS)
    assert tuple(TrialState) == TRIAL_STATES and tuple(SweepState) == SWEEP_STATES
    commands = ["train", "run", "serve", "submit", "status", "cancel", "trials", "leaderboard"]
    for command in [*commands, "data generate listops", "data check"]:
        shown = cli(*command.split(), "-h")
        assert shown.exit_code == 0 and "Example" in shown.stdout, command
    board_help = cli("leaderboard", "-h").stdout
    assert "One of: legs, inv, lin, real, rand, ptd" in re.sub(r"[│\s]+", " ", board_help)
    bad = cli("leaderboard", "--layer", "s9", "--db", "sqlite://")
    assert bad.exit_code == 2 and bad.stderr == "error: --layer: 's9' is not one of s4, s4d, s5\n"
    assert "--data-dir" in cli("data", "generate", "listops", "-h").stdout


def test_old_option_names_still_work(tmp_path):
    out = tmp_path / "data"
    result = cli("data", "generate", "listops", "--out", str(out), "--n-train", "4", "--n-val", "2",
                 "--n-test", "2", "--min-len", "5", "--max-len", "40", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (out / "listops-1000" / "basic_train.tsv").is_file()


def test_accuracy_is_in_percent_in_train_as_on_the_leaderboard():
    from api.cli.train import result_table
    from ssm.config import TrialConfig
    from ssm.train import TrialResult

    config = TrialConfig.model_validate({"task": {"name": "delay"}})
    result = TrialResult(
        status="completed", config_hash="abc", metric="accuracy", best_epoch=1, val_metric=0.8731,
        test_metric=0.5, parameters={"trainable": 1, "frozen": 0},
    )  # fmt: skip
    shown = Console(file=io.StringIO(), width=120)
    shown.print(result_table(config, result))
    assert "87.31%" in shown.file.getvalue() and "50.00%" in shown.file.getvalue()


def test_failures_are_grouped_by_reason_with_the_fix_when_known():
    from types import SimpleNamespace

    from api.cli.outcome import failure_groups, failure_lines

    missing = (
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "ssm.data.base.DataNotFoundError: ListOps split not found: expected d/listops-1000/basic_train.tsv. "
        "Generate it with `ssmbench data generate listops --data-dir d`, or unpack the LRA release."
    )
    trials = [
        *(SimpleNamespace(state="failed", error=missing) for _ in range(3)),
        SimpleNamespace(state="failed", error="RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"),
        SimpleNamespace(state="failed", error="KeyError: 'x'"),
        SimpleNamespace(state="diverged", error=None),
        SimpleNamespace(state="completed", error=None),
        SimpleNamespace(state="pruned", error=None),
    ]
    lines = failure_lines(failure_groups(trials), total=len(trials))
    assert lines[0] == (
        "3 of 8 trials failed: DataNotFoundError: ListOps split not found: expected "
        "d/listops-1000/basic_train.tsv. Generate it with `ssmbench data generate listops --data-dir d`, "
        "or unpack the LRA release. — run `ssmbench data generate listops --data-dir d`"
    )
    assert sorted(lines[1:]) == [
        "1 of 8 trials diverged: the loss became NaN or infinite — lower optim.lr, or set optim.grad_clip "
        "(e.g. --set optim.grad_clip=1.0)",
        "1 of 8 trials failed: KeyError: 'x'",  # no fix known: none invented
        "1 of 8 trials failed: RuntimeError: CUDA out of memory. Tried to allocate 2 GiB — lower "
        "optim.batch_size, model.d_model or the task's max_len, or ask for a GPU (resources.gpus)",
    ]
