"""`ssmbench report`: writes the report of a finished sweep; a bad sweep id, a sweep without completed
trials, an unwritable --out or a missing database is one line on stderr and exit 2."""

from __future__ import annotations

import json
import math
import os

import pytest
from conftest import GRID_YAML, ThreadedServer, finish_trials, one_line_error, service_settings
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from orchestrator import store
from orchestrator.db import transaction
from orchestrator.models import EpochMetric, Trial
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


# --- through the service's JSON API (--api URL) ------------------------------------------------------


def test_a_report_through_the_api_is_the_report_from_the_database(sweeps, tmp_path):
    url, finished, pending = sweeps
    sessions = _sessions(url)
    with transaction(sessions) as s:  # a diverged epoch: NaN must cross the API as NaN
        trials = s.scalars(select(Trial).where(Trial.sweep_id == finished).order_by(Trial.id)).all()
        nan_loss = {"train_loss": math.nan}
        s.add(EpochMetric(trial_id=trials[0].id, attempt=1, epoch=2, val_metric=None, metrics=nan_loss))
        for trial in trials:  # diagnostics: the arrays come through /trials/{id}/diagnostics
            store.record_diagnostics(s, trial.id, 1, _diagnosed(trial))
    direct, served = tmp_path / "direct", tmp_path / "served"
    assert cli("report", str(finished), "--db", url, "--out", str(direct)).exit_code == 0
    with ThreadedServer(service_settings(url)) as server:
        result = cli("report", str(finished), "--api", server.url, "--out", str(served))
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert "no sweep with id 4242" in one_line_error(
            cli("report", str(finished), "4242", "--api", server.url, "--out", str(tmp_path / "r"))
        )
        line = one_line_error(cli("report", str(pending), "--api", server.url, "--out", str(tmp_path / "r")))
        assert "has no completed trials yet (8 pending)" in line
    assert json.loads((served / "summary.json").read_text()) == json.loads(
        (direct / "summary.json").read_text()
    )
    assert sorted(p.name for p in (served / "figures").iterdir()) == sorted(
        p.name for p in (direct / "figures").iterdir()
    )
    assert (served / "index.html").read_text() == (direct / "index.html").read_text()
    assert {"eigenvalues-delay", "memory-function-delay", "fourier-noise-delay"} <= {
        p.stem for p in (served / "figures").iterdir()
    }
    for figure in (direct / "figures").glob("*.svg"):  # the same numbers drawn
        assert (served / "figures" / figure.name).read_text() == figure.read_text(), figure.name
    assert not (tmp_path / "r").exists()
    unreachable = cli("report", str(finished), "--api", "http://127.0.0.1:9", "--out", str(tmp_path / "r"))
    assert "cannot reach the ssmbench server" in one_line_error(unreachable, code=1)
    both = cli("report", "1", "--db", url, "--api", "http://127.0.0.1:9", "--out", str(tmp_path / "r"))
    assert "not both" in one_line_error(both)


def test_report_data_survives_its_json_document(sweeps):
    from orchestrator.report.data import load_report_data
    from orchestrator.report.transfer import report_data_from_json, report_data_to_json

    url, finished, _ = sweeps
    with _sessions(url)() as s:
        data = load_report_data(s, [finished])
    data.groups[0].trials[0].epochs[0]["train_loss"] = math.inf
    data.groups[0].trials[0].fourier = [{"frequency": 1.0, "accuracy": math.nan}]
    text = json.dumps(report_data_to_json(data), allow_nan=False)  # strict JSON
    back = report_data_from_json(json.loads(text))
    assert back.groups[0].trials[0].fourier[0]["accuracy"] != back.groups[0].trials[0].fourier[0]["accuracy"]
    back.groups[0].trials[0].fourier = data.groups[0].trials[0].fourier = None  # NaN ≠ NaN
    assert back == data
    with pytest.raises(ValueError, match="not a report data document"):
        report_data_from_json({"sweeps": []})


def _diagnosed(trial):
    from ssm.train import TrialResult

    shift = 0.1 * trial.seed + (0.05 if trial.init == "lin" else 0.0)
    layer = {
        "eigenvalues": [[-0.5 - shift, 1.0], [-0.5 - 2 * shift, 2.0]],
        "dt": [0.01],
        "Ab": [[0.9, 0.1], [0.8, 0.2]],
        "memory_function": [[(0.9 - shift / 10) ** k for k in range(1, 9)], [0.5**k for k in range(1, 9)]],
        "memory_capacity": [4.0 + shift, 1.0],
    }
    return TrialResult(
        status="completed",
        config_hash="x",
        metric="accuracy",
        diagnostics={
            "arrays": {"init": [layer], "end": [{**layer, "memory_capacity": [5.0, math.nan]}]},
            "fourier": [{"frequency": None, "accuracy": 0.6}, {"frequency": 0.2, "accuracy": 0.5 - shift}],
        },
    )


def _sessions(url):
    from orchestrator.db import make_engine, session_factory

    return session_factory(make_engine(url))
