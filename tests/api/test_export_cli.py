"""`ssmbench export`: each format read back with pandas holds the database's numbers, with the
configuration as flat columns; bad input is one line and exit 2; the file is replaced atomically."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from conftest import GRID_YAML, finish_trials, one_line_error
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from orchestrator import store
from orchestrator.db import transaction
from orchestrator.models import EpochMetric, Result, Trial
from orchestrator.spec import load_spec
from ssm.config import TrialConfig
from ssm.train import TrialResult

pd = pytest.importorskip("pandas", reason="reading the exports back needs pandas (the dev extra)")

runner = CliRunner()
SPEC = GRID_YAML.replace("d_model: 8", "d_model: 8\n  reparam: [exp, best]\noptim: {lr: 2.0e-3}")
N_LAYERS = 2


def cli(*args: str):
    return runner.invoke(app, list(args), env={"SSMBENCH_DATABASE_URL": None})


def layer(trial_id: int, index: int, moved: float) -> dict:
    """Stored diagnostic arrays of one layer (`ssm.diagnostics.layer_arrays`' shapes): 2 channels,
    2 eigenvalues each as [re, im]; `moved` shifts Re λ and dt away from the init snapshot."""
    base = -0.5 - 0.1 * index - 0.01 * trial_id
    return {
        "eigenvalues": [[[base - moved, 1.0], [2 * base, 2.0 + moved]], [[base, 0.5], [3 * base, 0.0]]],
        "dt": [0.01 * (1 + moved), 0.02],
        "Ab": [[[0.9, 0.1], [0.8, 0.2]], [[0.7, 0.0], [0.6, 0.1]]],
        "memory_function": [[0.9, 0.81], [0.5, None]],
        "memory_capacity": [3.0 + trial_id, None if index else 5.0],
    }


def finish_with_diagnostics(sessions, sweep_id: int) -> None:
    """Complete every trial as a worker would: two epochs (a list-valued metric among them) and a
    result with diagnostic arrays at init, best and end."""
    with transaction(sessions) as s:
        for trial in s.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.id)).all():
            attempt = store.claim(s, trial.id)
            config = TrialConfig.model_validate(trial.config)
            for epoch in range(2):
                store.record_epoch(
                    s,
                    trial.id,
                    attempt,
                    {
                        "epoch": epoch,
                        "train_loss": 1.0 / (epoch + 1) + trial.id,
                        "val_metric": 0.5 + 0.01 * trial.id + 0.1 * epoch,
                        "memory_capacity": [float(trial.id), float(epoch)],
                    },
                )
            arrays = {
                snapshot: [layer(trial.id, i, moved) for i in range(N_LAYERS)]
                for snapshot, moved in (("init", 0.0), ("best", 0.1), ("end", 0.3))
            }
            result = TrialResult(
                status="completed",
                config_hash=config.hash(),
                metric="accuracy",
                best_epoch=1,
                val_metric=0.6 + 0.01 * trial.id,
                test_metric=0.55 + 0.01 * trial.id,
                diagnostics={"arrays": arrays},
            )
            store.finish(s, trial.id, attempt, result, "completed")
        store.close_finished_sweeps(s)


@pytest.fixture
def sweep(sqlite_url, sessions_for):
    sessions = sessions_for(sqlite_url)
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, load_spec(SPEC)).id
    finish_with_diagnostics(sessions, sweep_id)
    return sqlite_url, sessions, sweep_id


def export(url: str, sweep_id: int, what: str, fmt: str, out) -> pd.DataFrame:
    result = cli("export", str(sweep_id), "--what", what, "--format", fmt, "--out", str(out), "--db", url)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert f"written to {out}" in result.stdout.replace("\n", "")
    if fmt == "csv":
        return pd.read_csv(out)
    if fmt == "jsonl":
        return pd.read_json(out, lines=True)
    return pd.read_parquet(out)


NO_PYARROW = importlib.util.find_spec("pyarrow") is None
FORMATS = [
    "csv",
    "jsonl",
    pytest.param("parquet", marks=pytest.mark.skipif(NO_PYARROW, reason="needs pyarrow")),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_results_are_a_row_per_trial_with_flat_config_columns(sweep, tmp_path, fmt):
    url, sessions, sweep_id = sweep
    table = export(url, sweep_id, "results", fmt, tmp_path / f"results.{fmt}")
    with sessions() as s:
        stored = dict(s.execute(select(Result.trial_id, Result.test_metric)).all())
        trials = {t.id: t for t in s.scalars(select(Trial).where(Trial.sweep_id == sweep_id))}
    assert len(table) == len(trials) == 16  # 2 tasks × 2 inits × 2 reparams × 2 seeds
    assert sorted(table["trial_id"]) == sorted(trials)
    for _, row in table.iterrows():
        trial = trials[row["trial_id"]]
        assert row["test_metric"] == pytest.approx(stored[trial.id])
        assert row["model.init"] == trial.init and row["model.reparam"] == trial.reparam
        assert row["task.name"] == trial.task and row["seed"] == trial.seed
        assert row["optim.lr"] == pytest.approx(2e-3) and row["model.d_model"] == 8
        assert row["sweep_id"] == sweep_id and row["metric"] == "accuracy"
    assert table["optim.lr"].dtype == np.float64 and table["seed"].dtype == np.int64  # typed, not text


@pytest.mark.parametrize("fmt", FORMATS)
def test_epochs_are_a_row_per_epoch_and_lists_stay_lists(sweep, tmp_path, fmt):
    url, sessions, sweep_id = sweep
    table = export(url, sweep_id, "epochs", fmt, tmp_path / f"epochs.{fmt}")
    with sessions() as s:
        stored = {(t, e): (v, m) for t, e, v, m in s.execute(
            select(EpochMetric.trial_id, EpochMetric.epoch, EpochMetric.val_metric, EpochMetric.metrics))}  # fmt: skip
    assert len(table) == len(stored) == 32
    for _, row in table.iterrows():
        val_metric, metrics = stored[(row["trial_id"], row["epoch"])]
        assert row["val_metric"] == pytest.approx(val_metric)
        assert row["train_loss"] == pytest.approx(metrics["train_loss"])
        capacity = json.loads(row["memory_capacity"]) if fmt == "csv" else list(row["memory_capacity"])
        assert capacity == metrics["memory_capacity"]
        assert row["model.init"] in ("inv", "lin")


@pytest.mark.parametrize("fmt", FORMATS)
def test_diagnostics_are_a_row_per_trial_snapshot_and_layer(sweep, tmp_path, fmt):
    url, _, sweep_id = sweep
    table = export(url, sweep_id, "diagnostics", fmt, tmp_path / f"diagnostics.{fmt}")
    assert len(table) == 16 * 3 * N_LAYERS
    assert set(table["snapshot"]) == {"init", "best", "end"}
    for _, row in table.iterrows():
        trial_id, index = int(row["trial_id"]), int(row["layer"])
        moved = {"init": 0.0, "best": 0.1, "end": 0.3}[row["snapshot"]]
        before, after = layer(trial_id, index, 0.0), layer(trial_id, index, moved)
        # mean over channels, the unstable (None) channel left out
        capacity = [c for c in after["memory_capacity"] if c is not None]
        assert row["memory_capacity_mean"] == pytest.approx(np.mean(capacity))
        # relative drift mean|q − q₀| / mean|q₀|, in float64 numpy
        re0, re1 = (np.array(x["eigenvalues"], dtype=np.float64)[..., 0] for x in (before, after))
        assert row["drift_re_lambda"] == pytest.approx(np.abs(re1 - re0).mean() / np.abs(re0).mean())
        dt0, dt1 = np.array(before["dt"]), np.array(after["dt"])
        assert row["drift_dt"] == pytest.approx(np.abs(dt1 - dt0).mean() / np.abs(dt0).mean())
        lam0, lam1 = (
            np.array(x["eigenvalues"])[..., 0] + 1j * np.array(x["eigenvalues"])[..., 1]
            for x in (before, after)
        )
        assert row["eigenvalue_drift_mean"] == pytest.approx(np.abs(lam1 - lam0).mean())
        eigenvalues = json.loads(row["eigenvalues"]) if fmt == "csv" else _plain(row["eigenvalues"])
        # (pandas' JSON reader parses floats to within an ulp or so: not exact equality)
        np.testing.assert_allclose(np.array(eigenvalues, dtype=np.float64), after["eigenvalues"], rtol=1e-12)


def _plain(value):
    """pandas hands back parquet lists as numpy arrays (of arrays): nested Python lists again."""
    if isinstance(value, np.ndarray | list):
        return [_plain(v) for v in value]
    return value


def test_several_sweeps_export_into_one_table(sweep, tmp_path, sessions_for):
    url, sessions, first = sweep
    with transaction(sessions) as s:
        second = store.create_sweep(s, load_spec(SPEC.replace("d_model: 8", "d_model: 16"))).id
    finish_with_diagnostics(sessions, second)
    out = tmp_path / "both.csv"
    assert cli("export", str(first), str(second), "--out", str(out), "--db", url).exit_code == 0
    table = pd.read_csv(out)
    assert table.groupby("sweep_id")["model.d_model"].unique().to_dict() == {first: [8], second: [16]}


def test_bad_input_is_one_line_and_exit_2(sweep, tmp_path):
    url, _, sweep_id = sweep
    out = str(tmp_path / "out.csv")
    assert "no sweep with id 4242" in one_line_error(cli("export", "4242", "--out", out, "--db", url))
    line = one_line_error(cli("export", str(sweep_id), "--what", "trials", "--out", out, "--db", url))
    assert "unknown --what 'trials': expected one of results, epochs, diagnostics" in line
    line = one_line_error(cli("export", str(sweep_id), "--format", "xlsx", "--out", out, "--db", url))
    assert "unknown --format 'xlsx': expected one of csv, parquet, jsonl" in line
    line = one_line_error(cli("export", str(sweep_id), "--out", str(tmp_path / "no" / "x.csv"), "--db", url))
    assert "is not a directory" in line
    assert "is a directory" in one_line_error(
        cli("export", str(sweep_id), "--out", str(tmp_path), "--db", url)
    )
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert "no database at" in one_line_error(cli("export", "1", "--out", out, "--db", missing))
    written = {p.name for p in tmp_path.iterdir() if not p.name.startswith("ssmbench.db")}
    assert written == set()  # nothing written, no temporary left


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(sweep, tmp_path, monkeypatch):
    url, _, sweep_id = sweep
    out = tmp_path / "results.csv"
    out.write_text("previous\n")

    def broken(rows, columns, path):
        with open(path, "w") as f:
            f.write("half")
        raise OSError(28, "No space left on device")

    import orchestrator.export as export_module

    monkeypatch.setattr(export_module, "_write_csv", broken)
    line = one_line_error(cli("export", str(sweep_id), "--out", str(out), "--db", url))
    assert line == f"error: cannot write {out}: No space left on device"
    assert out.read_text() == "previous\n"
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith("ssmbench.db")} == {"results.csv"}


def test_parquet_without_pyarrow_names_the_extra(sweep, tmp_path, monkeypatch):
    url, _, sweep_id = sweep
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ModuleNotFoundError
    out = tmp_path / "r.parquet"
    line = one_line_error(cli("export", str(sweep_id), "--format", "parquet", "--out", str(out), "--db", url))
    assert line == "error: --format parquet needs pyarrow: pip install 'ssmbench[export]'"
    assert not out.exists()


def test_diagnostics_of_a_sweep_that_stored_none_say_how_to_record_them(sqlite_url, sessions_for, tmp_path):

    sessions = sessions_for(sqlite_url)
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, load_spec(GRID_YAML)).id
    finish_trials(sessions, sweep_id)
    out = tmp_path / "d.csv"
    line = one_line_error(
        cli("export", str(sweep_id), "--what", "diagnostics", "--out", str(out), "--db", sqlite_url)
    )
    assert f"no diagnostic arrays stored for sweep {sweep_id}" in line and "diagnostics.every" in line
    assert not out.exists()
