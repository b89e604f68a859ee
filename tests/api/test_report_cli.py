"""`ssmbench report`: writes the report of a finished sweep; a bad sweep id, a sweep without completed
trials, an unwritable --out or a missing database is one line on stderr and exit 2."""

from __future__ import annotations

import json
import os

import pytest
from conftest import GRID_YAML, finish_trials, one_line_error
from typer.testing import CliRunner

from api.cli import app
from orchestrator import store
from orchestrator.db import transaction
from orchestrator.spec import load_spec

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args), env={"SSMBENCH_DATABASE_URL": None})


@pytest.fixture
def sweeps(sqlite_url, sessions_for):
    """A finished sweep and one whose trials are all pending."""
    sessions = sessions_for(sqlite_url)
    with transaction(sessions) as s:
        finished = store.create_sweep(s, load_spec(GRID_YAML)).id
        pending = store.create_sweep(s, load_spec(GRID_YAML.replace("d_model: 8", "d_model: 16"))).id
    finish_trials(sessions, finished)
    return sqlite_url, finished, pending


def test_report_writes_the_page_the_figures_and_the_summary(sweeps, tmp_path):
    url, finished, _ = sweeps
    out = tmp_path / "nested" / "report"
    result = cli("report", str(finished), "--db", url, "--out", str(out))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert f"report written to {out / 'index.html'}" in result.stdout.replace("\n", "")
    assert "validation-delay" in result.stderr and "index.html" in result.stderr  # progress lines
    summary = json.loads((out / "summary.json").read_text())
    assert {(g["task"], g["init"], g["n_seeds"]) for g in summary["groups"]} == {
        (task, init, 2) for task in ("delay", "listops") for init in ("inv", "lin")
    }
    # finish_trials: accuracy 0.6 + 0.01·seed (+0.05 for lin), seeds 0 and 1
    lin = next(g for g in summary["groups"] if g["task"] == "delay" and g["init"] == "lin")
    assert lin["metrics"]["test_metric"]["mean"] == pytest.approx(0.655)
    assert lin["metrics"]["test_metric"]["std"] == pytest.approx(0.01 / 2**0.5)
    for name in ("validation-delay", "test-delay", "validation-listops", "test-listops"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
        assert (out / "figures" / f"{name}.svg").stat().st_size > 0
    assert "figures/test-listops.svg" in (out / "index.html").read_text()


def test_an_unknown_sweep_is_one_line_and_exit_2(sweeps, tmp_path):
    url, finished, _ = sweeps
    line = one_line_error(cli("report", str(finished), "4242", "--db", url, "--out", str(tmp_path / "r")))
    assert "no sweep with id 4242" in line
    assert not (tmp_path / "r").exists()


def test_a_sweep_without_completed_trials_is_one_line_and_exit_2(sweeps, tmp_path):
    url, _, pending = sweeps
    line = one_line_error(cli("report", str(pending), "--db", url, "--out", str(tmp_path / "r")))
    assert f"sweep {pending} (grid) has no completed trials yet (8 pending)" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_unwritable_out_is_one_line_and_exit_2(sweeps, tmp_path):
    url, finished, _ = sweeps
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = one_line_error(cli("report", str(finished), "--db", url, "--out", str(locked / "r")))
    finally:
        locked.chmod(0o700)
    assert "--out" in line and "locked" in line


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_out_where_nothing_can_be_created_is_one_line_and_exit_2(sweeps):
    url, finished, _ = sweeps  # /proc takes no new entries, not even from root
    line = one_line_error(cli("report", str(finished), "--db", url, "--out", "/proc/ssmbench-report"))
    assert line.startswith("error: --out /proc/ssmbench-report: cannot write in /proc")


def test_an_out_that_is_a_file_is_one_line_and_exit_2(sweeps, tmp_path):
    url, finished, _ = sweeps
    target = tmp_path / "a-file"
    target.write_text("not a directory")
    line = one_line_error(cli("report", str(finished), "--db", url, "--out", str(target)))
    assert "is not a directory" in line
    line = one_line_error(cli("report", str(finished), "--db", url, "--out", str(target / "below")))
    assert "is not a directory" in line


def test_a_missing_database_is_one_line_and_exit_2(tmp_path):
    line = one_line_error(
        cli("report", "1", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(tmp_path / "r"))
    )
    assert "no database at" in line
    assert not (tmp_path / "none.db").exists()
