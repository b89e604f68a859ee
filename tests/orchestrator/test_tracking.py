"""Tracking from the epoch hook: a sweep whose spec asks for TensorBoard / MLflow gets a run per trial,
named after it, with the flat configuration as parameters and each epoch's metrics at step = epoch —
read back from the event files and the MLflow stores (SQLite and file). The spec block is validated like the rest."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator import store
from orchestrator.db import transaction
from orchestrator.models import Trial
from orchestrator.spec import SpecError, load_spec, parse_spec
from orchestrator.tracking import TRACKING_INSTALL, TrackingError, flat_config, tracking_for_local_run
from orchestrator.worker import TrialJob, run_trial
from ssm.train import TrialResult

EPOCHS = 3
SPEC = """\
name: tracked
tasks: [delay]
model: {layer: s4d, init: [inv, lin], d_model: 8}
optim: {lr: 2.0e-3, epochs: 3}
seeds: [0]
"""


def val_curve(trial_config) -> list[float]:
    bonus = 0.1 if trial_config.model.init == "lin" else 0.0
    return [0.5 + bonus + 0.05 * epoch for epoch in range(EPOCHS)]


def trainer(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    curve = val_curve(config)
    for epoch, value in enumerate(curve):
        metrics = {
            "epoch": epoch,
            "train_loss": 1.0 / (epoch + 1),
            "val_metric": value,
            "memory_capacity": [1.0],
        }
        if on_epoch is not None and on_epoch(metrics) is False:
            break
    return TrialResult(
        status="completed", config_hash=config.hash(), metric="accuracy", best_epoch=EPOCHS - 1,
        val_metric=curve[-1], test_metric=curve[-1],
    )  # fmt: skip


def run_sweep(db_url, sessions, tracking_yaml: str) -> tuple[int, dict[int, str]]:
    """Plan the sweep and run its trials through the worker in this process; returns the sweep id
    and each trial's init."""
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, load_spec(SPEC + tracking_yaml)).id
        trials = s.execute(select(Trial.id, Trial.init).where(Trial.sweep_id == sweep_id)).all()
    for trial_id, _ in trials:
        with transaction(sessions) as s:
            attempt = store.claim(s, trial_id)
        assert run_trial(TrialJob(trial_id, attempt, db_url, train_fn=trainer)) == "completed"
    return sweep_id, dict(trials)


def expected_curve(init: str) -> list[float]:
    return [0.5 + (0.1 if init == "lin" else 0.0) + 0.05 * epoch for epoch in range(EPOCHS)]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs ssmbench[tracking]")
def test_tensorboard_gets_a_run_per_trial_with_its_config_and_epochs(db_url, sessions, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep_id, inits = run_sweep(
        db_url, sessions, f"tracking: {{tensorboard: {{dir: '{tmp_path / 'tb'}'}}}}\n"
    )
    runs = sorted(p.relative_to(tmp_path / "tb").as_posix() for p in (tmp_path / "tb").glob("*/*"))
    assert runs == sorted(f"sweep-{sweep_id}/trial-{t}" for t in inits)
    for trial_id, init in inits.items():
        events = EventAccumulator(str(tmp_path / "tb" / f"sweep-{sweep_id}" / f"trial-{trial_id}"))
        events.Reload()
        assert set(events.Tags()["scalars"]) == {"train_loss", "val_metric"}  # lists are left out
        logged = [(e.step, e.value) for e in events.Scalars("val_metric")]
        assert [step for step, _ in logged] == list(range(EPOCHS))
        assert [value for _, value in logged] == pytest.approx(expected_curve(init), rel=1e-6)  # float32
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        params = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert params["model.init"].string_value == init
        assert params["optim.lr"].number_value == pytest.approx(2e-3)
        assert params["task.name"].string_value == "delay" and params["seed"].number_value == 0


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs ssmbench[tracking] (MLflow)")
@pytest.mark.parametrize("store_kind", ["sqlite", "file"])
def test_mlflow_gets_a_run_per_trial_with_its_config_and_epochs(
    db_url, sessions, tmp_path, store_kind, monkeypatch
):
    from mlflow.tracking import MlflowClient

    # unset, and unset again after the test (what the worker sets stays in it): asking for a file:
    # store in the spec is enough
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if store_kind == "sqlite" else f"file:{tmp_path / 'mlruns'}"
    sweep_id, inits = run_sweep(
        db_url, sessions, f"tracking: {{mlflow: {{uri: '{uri}', experiment: study}}}}\n"
    )
    with sessions() as s:
        configs = dict(s.execute(select(Trial.id, Trial.config).where(Trial.sweep_id == sweep_id)).all())
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("study")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {f"sweep-{sweep_id}/trial-{t}" for t in inits}
    for trial_id, init in inits.items():
        run = runs[f"sweep-{sweep_id}/trial-{trial_id}"]
        assert run.info.status == "FINISHED" and run.data.tags["ssmbench.attempt"] == "1"
        # the parameters are the whole flat configuration, as text (lists as JSON)
        flat = flat_config(configs[trial_id])
        assert run.data.params == {
            k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in flat.items()
        }
        assert run.data.params["model.init"] == init and float(run.data.params["optim.lr"]) == 2e-3
        assert set(run.data.metrics) == {"train_loss", "val_metric"}  # lists are left out
        history = client.get_metric_history(run.info.run_id, "val_metric")
        assert sorted((m.step, m.value) for m in history) == list(enumerate(expected_curve(init)))
        losses = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted((m.step, m.value) for m in losses) == [(e, 1.0 / (e + 1)) for e in range(EPOCHS)]


def test_a_sweep_without_tracking_writes_nothing(db_url, sessions, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_sweep(db_url, sessions, "")
    assert not (tmp_path / "mlruns").exists() and not list(tmp_path.glob("**/events.out.tfevents*"))


def test_the_tracking_block_is_validated_with_its_key_path():
    with pytest.raises(SpecError) as err:
        parse_spec(SPEC + "tracking: {mlflow: {url: file:/tmp/x}}\n")
    assert "tracking.mlflow" in str(err.value)
    spec = parse_spec(SPEC + "tracking: {tensorboard: {dir: /tmp/tb}}\n")
    assert spec.tracking.tensorboard.dir == "/tmp/tb" and spec.tracking.mlflow is None


def test_flags_lay_over_the_spec_and_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(SPEC + "tracking: {mlflow: {uri: 'file:./runs', experiment: e}}\n").tracking
    monkeypatch.setattr("orchestrator.tracking.require_packages", lambda spec: None)
    merged = tracking_for_local_run(spec, tensorboard_dir="tb")
    assert merged.mlflow.uri == f"file:{tmp_path / 'runs'}" and merged.mlflow.experiment == "e"
    relative_db = tracking_for_local_run(None, mlflow_uri="sqlite:///runs/mlflow.db")
    assert relative_db.mlflow.uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    absolute = tracking_for_local_run(None, mlflow_uri="sqlite:////srv/mlflow.db")
    assert absolute.mlflow.uri == "sqlite:////srv/mlflow.db"
    assert merged.tensorboard.dir == str(tmp_path / "tb")
    merged = tracking_for_local_run(spec, mlflow_uri="http://mlflow:5000")
    assert merged.mlflow.uri == "http://mlflow:5000" and merged.mlflow.experiment == "e"
    assert tracking_for_local_run(None) is None


@pytest.mark.parametrize("module", ["mlflow", "tensorboard"])
def test_a_missing_package_names_the_extra(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ModuleNotFoundError
    flag = {"mlflow": {"mlflow_uri": "file:/tmp/x"}, "tensorboard": {"tensorboard_dir": "/tmp/x"}}[module]
    with pytest.raises(TrackingError) as err:
        tracking_for_local_run(None, **flag)
    assert str(err.value) == f"tracking with {module} needs it installed: {TRACKING_INSTALL}"


def test_run_refuses_tracking_without_the_package_before_starting(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SPEC)
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        app, ["run", str(spec), "--db", f"sqlite:///{db}", "--tensorboard-dir", str(tmp_path / "tb")]
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.strip() == f"error: tracking with tensorboard needs it installed: {TRACKING_INSTALL}"
    assert not db.exists() and not Path(tmp_path / "tb").exists()


def test_a_worker_without_the_package_fails_the_trial_naming_the_extra(
    db_url, sessions, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # the worker's machine lacks it
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(
            s, load_spec(SPEC + f"tracking: {{tensorboard: {{dir: '{tmp_path}'}}}}\n")
        ).id
        trial_id = s.scalars(select(Trial.id).where(Trial.sweep_id == sweep_id)).first()
        attempt = store.claim(s, trial_id)
    assert run_trial(TrialJob(trial_id, attempt, db_url, train_fn=trainer)) == "failed"
    with sessions() as s:
        error = s.scalar(select(Trial.error).where(Trial.id == trial_id))
    assert f"TrackingError: tracking with tensorboard needs it installed: {TRACKING_INSTALL}" in error
