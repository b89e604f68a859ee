"""The Optuna search (orchestrator.search) on a real local Ray with a fake trainer, on SQLite and
PostgreSQL: budgets hold, pruning happens, the optimum is found, a restart loses and duplicates
nothing, the grid is covered, and a bad search space is refused before anything is stored."""

from __future__ import annotations

import math
import sys
import time

import optuna
import pytest
import yaml
from pydantic import ValidationError
from ray import cloudpickle
from sqlalchemy import create_engine, func, select, text

from orchestrator import store
from orchestrator.db import transaction
from orchestrator.errors import key_path
from orchestrator.models import FINAL_TRIAL_STATES, Sweep, Trial
from orchestrator.scheduler import Scheduler
from orchestrator.search import (
    TRIAL_ID_ATTR,
    SearchCoordinator,
    build_plan,
    open_storage,
    optuna_schema,
    optuna_storage_url,
    validate_search,
)
from orchestrator.settings import Settings
from orchestrator.spec import SpecError, SweepSpec, load_spec
from ssm.train import TrialResult

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/


# --- a fake trainer whose accuracy is a known function of the sampled hyperparameters ------------


def quality(lr: float, a: float) -> float:
    """1 at lr = 10^-2.5, a = 10^0.5; falls off quadratically in log space."""
    x, y = math.log10(lr) + 2.5, math.log10(a) - 0.5
    return 1.0 - (x * x + y * y) / 4.0


def shaped(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """Accuracy rises linearly to quality(lr, reparam_a) over the epochs; 1000·a trainable parameters."""
    q = quality(config.optim.lr, config.model.reparam_a)
    history, status = [], "completed"
    for epoch in range(config.optim.epochs):
        accuracy = q * (epoch + 1) / config.optim.epochs
        metrics = {
            "epoch": epoch,
            "train_loss": 1.0 - accuracy,
            "val_loss": 1.0 - accuracy,
            "val_metric": accuracy,
            "val_accuracy": accuracy,
        }
        history.append(metrics)
        if on_epoch is not None and on_epoch(dict(metrics)) is False:
            status = "pruned"
            break
    best = max(range(len(history)), key=lambda i: history[i]["val_metric"])
    parameters = round(1000 * config.model.reparam_a)
    return TrialResult(
        status=status,
        config_hash=config.hash(),
        metric="accuracy",
        best_epoch=best,
        val_metric=history[best]["val_metric"],
        test_metric=history[best]["val_metric"],
        epochs=history,
        parameters={"total": parameters, "trainable": parameters, "frozen": 0},
    )


# --- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def url(db_url):
    """db_url, and Optuna's PostgreSQL schema dropped afterwards (the SQLite file is in tmp_path)."""
    yield db_url
    if db_url.startswith("postgresql"):
        admin = create_engine(db_url.split("?", 1)[0])
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{optuna_schema(db_url)}" CASCADE'))
        admin.dispose()


def settings_for(url, tmp_path, **overrides):
    values = {"database_url": url, "checkpoint_dir": tmp_path / "checkpoints", "heartbeat_seconds": 0.5}
    return Settings(**{**values, **overrides})


def submit(sessions, spec_text):
    spec = load_spec(spec_text)
    validate_search(spec)
    with transaction(sessions) as s:
        return store.create_sweep(s, spec).id


SEARCH = """
name: search
tasks: [delay]
model: {{layer: s4d, reparam: best, d_model: 8, d_state: 4, n_layers: 1}}
optim: {{epochs: {epochs}}}
seeds: [3]
resources: {{cpus: 1}}
search:
  sampler: {sampler}
  pruner: {pruner}
  n_trials: {n_trials}
  objective: {{metric: val_accuracy, direction: maximize}}
  space:
    optim.lr: {{low: 1.0e-4, high: 1.0e-1, log: true}}
    model.reparam_a: {{low: 0.1, high: 10, log: true}}
"""

OPTUNA_STATE = {"completed": "COMPLETE", "pruned": "PRUNED"}


def run_search(url, sessions, tmp_path, sweep_id):
    """Run the sweep to its end (the `shaped` trainer, 90 s at most), then `check_search` it."""
    scheduler = Scheduler(url, settings_for(url, tmp_path), train_fn=shaped, poll_seconds=0.02)
    try:
        scheduler.run([sweep_id], timeout=90)
    finally:
        scheduler.close()
    return check_search(sessions, url, sweep_id)


def check_search(sessions, url, sweep_id):
    """Every trial final and their number the budget; each Optuna trial finished, one of ours, in the
    matching state. Returns (our trials, {(study name, number): FrozenTrial})."""
    with sessions() as s:
        sweep = s.get(Sweep, sweep_id)
        trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.id)).all()
    plan = build_plan(load_spec_json(sweep.spec), sweep_id)
    assert sweep.state == "completed"
    assert len(trials) == plan.budget
    assert all(t.state in FINAL_TRIAL_STATES and t.optuna_trial is not None for t in trials)
    storage = open_storage(url, create=False)
    try:
        frozen = {}
        for ref in plan.studies:
            for ft in storage.get_all_trials(storage.get_study_id_from_name(ref.name)):
                frozen[(ref.name, ft.number)] = ft
    finally:
        storage.engine.dispose()
    ours = {}
    for t in trials:
        key = (plan.study_of(t.config).name, t.optuna_trial)
        assert key not in ours, f"two trials for Optuna trial {key}"
        ours[key] = t
    assert set(ours) == set(frozen), "each Optuna trial is exactly one of ours"
    for key, ft in frozen.items():
        trial = ours[key]
        assert ft.state.name == OPTUNA_STATE.get(trial.state, "FAIL"), (trial.id, trial.state, ft.state)
        assert ft.user_attrs[TRIAL_ID_ATTR] == trial.id
    return trials, frozen


def load_spec_json(spec_json):
    from orchestrator.spec import SweepSpec

    return SweepSpec.model_validate(spec_json)


# --- the search, end to end -------------------------------------------------------------------------


def test_a_tpe_search_prunes_finds_the_optimum_and_stops_at_its_budget(local_ray, url, sessions, tmp_path):
    sweep_id = submit(sessions, SEARCH.format(sampler="tpe", pruner="median", n_trials=24, epochs=3))
    trials, frozen = run_search(url, sessions, tmp_path, sweep_id)
    states = [t.state for t in trials]
    assert states.count("pruned") >= 1 and states.count("completed") >= 5, states
    completed = [ft for ft in frozen.values() if ft.state.name == "COMPLETE"]
    best = max(completed, key=lambda ft: ft.value)
    assert best.value > 0.9  # the optimum is 1 at lr ≈ 3.2e-3, a ≈ 3.2
    assert best.value == pytest.approx(quality(best.params["optim.lr"], best.params["model.reparam_a"]))
    # every epoch was reported (step = epochs done); a pruned trial stopped at the step it was pruned
    pruned = [ft for ft in frozen.values() if ft.state.name == "PRUNED"]
    assert all(sorted(ft.intermediate_values) == [1, 2, 3] for ft in completed)
    assert all(ft.value == ft.intermediate_values[max(ft.intermediate_values)] for ft in pruned)


def test_a_restarted_scheduler_continues_the_search_without_losing_or_duplicating(
    local_ray, url, sessions, tmp_path
):
    spec_text = SEARCH.format(sampler="random", pruner="median", n_trials=10, epochs=3)
    sweep_id = submit(sessions, spec_text)
    first = Scheduler(url, settings_for(url, tmp_path, lease_seconds=1.0), train_fn=shaped, poll_seconds=0.02)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        first.step()
        with sessions() as s:
            counts = store.state_counts(s, sweep_id)
        if sum(n for state, n in counts.items() if state in FINAL_TRIAL_STATES) >= 4:
            break
        time.sleep(0.05)
    # The first scheduler dies here: no close, the lease is left to expire, its running trials go
    # on in Ray, and it had just asked Optuna for a trial it never stored (an orphan).
    plan = build_plan(load_spec(spec_text), sweep_id)
    orphan_study = optuna.load_study(study_name=plan.studies[0].name, storage=optuna_storage_url(url))
    orphan = orphan_study.ask(plan.distributions)
    first.engine.dispose()
    first.search.studies.close()

    second = Scheduler(
        url, settings_for(url, tmp_path, lease_seconds=1.0), train_fn=shaped, poll_seconds=0.02
    )
    second.search.orphan_grace_seconds = 0.0
    try:
        second.run([sweep_id], timeout=90)
    finally:
        second.close()
    trials, frozen = check_search(sessions, url, sweep_id)
    assert len(frozen) == 10
    assert any(t.optuna_trial == orphan.number for t in trials)  # adopted, not lost
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep_id)) == 10


def test_the_grid_sampler_covers_its_grid_in_every_cell(local_ray, url, sessions, tmp_path):
    spec_text = """
name: grid-search
tasks: [delay]
model: {layer: s4d, init: [inv, lin], reparam: best, d_model: 8, d_state: 4, n_layers: 1}
optim: {epochs: 2}
resources: {cpus: 1}
search:
  sampler: grid
  pruner: none
  n_trials: 6
  space:
    optim.lr: {low: 0.001, high: 0.003, step: 0.001}
    model.reparam_a: {choices: [1, 4]}
"""
    sweep_id = submit(sessions, spec_text)
    trials, frozen = run_search(url, sessions, tmp_path, sweep_id)
    assert len(trials) == 12 and all(t.state == "completed" for t in trials)
    grid = sorted((lr, a) for lr in (0.001, 0.002, 0.003) for a in (1, 4))
    for init in ("inv", "lin"):
        points = [
            (t.config["optim"]["lr"], t.config["model"]["reparam_a"])
            for t in trials
            if t.config["model"]["init"] == init
        ]
        assert sorted(points) == grid
    for cell in ("cell0", "cell1"):  # and each cell's study saw every grid point once
        params = [
            (ft.params["optim.lr"], ft.params["model.reparam_a"])
            for (name, _), ft in frozen.items()
            if cell in name
        ]
        assert sorted(params) == grid


@pytest.mark.parametrize(("sampler", "pruner"), [("nsgaii", "median"), ("random", "hyperband")])
def test_other_samplers_and_pruners_complete_their_budget(
    local_ray, url, sessions, tmp_path, sampler, pruner
):
    sweep_id = submit(sessions, SEARCH.format(sampler=sampler, pruner=pruner, n_trials=6, epochs=3))
    trials, frozen = run_search(url, sessions, tmp_path, sweep_id)
    if sampler == "nsgaii":  # accuracy and trainable parameters
        assert all(t.state == "completed" for t in trials)
        for ft in frozen.values():
            assert len(ft.values) == 2
            assert ft.values[1] == round(1000 * ft.params["model.reparam_a"])


# --- ask and tell without Ray ---------------------------------------------------------------------


def test_invalid_sampled_configs_fail_at_once_and_tell_is_idempotent(url, sessions):
    spec_text = """
name: invalid-samples
tasks: [delay]
model: {dt_max: 0.1}
optim: {epochs: 2}
max_concurrent: 6
search:
  sampler: random
  pruner: none
  n_trials: 20
  objective: {metric: val_metric, direction: minimize}
  space: {model.dt_min: {low: 0.01, high: 1.0, log: true}}
"""
    sweep_id = submit(sessions, spec_text)
    coordinator = SearchCoordinator(url)
    try:
        for _ in range(5):  # each ask tops the window up; invalid samples do not take a place in it
            with transaction(sessions) as s:
                coordinator.ask(s)
        with sessions() as s:
            trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id)).all()
        failed = [t for t in trials if t.state == "failed"]
        pending = [t for t in trials if t.state == "pending"]
        window = coordinator._window(coordinator._plans[sweep_id], 6, None)  # max_concurrent or CPUs
        assert failed and len(pending) == window
        assert all("dt_min" in t.error and t.optuna_trial is not None for t in failed)
        assert all(t.config["model"]["dt_min"] <= 0.1 for t in pending)
        storage = coordinator.storage
        study_id = storage.get_study_id_from_name(f"ssmbench-sweep{sweep_id}-cell0-task0-delay")
        by_number = {ft.number: ft for ft in storage.get_all_trials(study_id)}
        assert all(by_number[t.optuna_trial].state.name == "FAIL" for t in failed)

        # Finish one pending trial by hand, as a worker would, then tell it twice.
        trial = pending[0]
        with transaction(sessions) as s:
            attempt = store.claim(s, trial.id)
            for epoch, loss in enumerate([0.7, 0.4]):
                store.record_epoch(s, trial.id, attempt, {"epoch": epoch, "val_metric": loss})
            store.finish(s, trial.id, attempt, None, "completed")
        for _ in range(2):
            with transaction(sessions) as s:
                coordinator.tell(s, trial.id)
        ft = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, trial.optuna_trial))
        assert ft.state.name == "COMPLETE" and ft.value == 0.4  # the best (minimum) over epochs
        assert len(storage.get_all_trials(study_id)) == len(trials)
    finally:
        coordinator.close(sessions)


def test_cancelling_a_search_sweep_fails_its_unfinished_optuna_trials(url, sessions):
    sweep_id = submit(sessions, SEARCH.format(sampler="random", pruner="none", n_trials=5, epochs=2))
    coordinator = SearchCoordinator(url)
    try:
        with transaction(sessions) as s:
            coordinator.ask(s)
        with transaction(sessions) as s:
            store.cancel_sweep(s, sweep_id)
        with transaction(sessions) as s:
            coordinator.ask(s)  # the sweep left the open ones: its trials are told at once
        storage = coordinator.storage
        frozen = storage.get_all_trials(
            storage.get_study_id_from_name(f"ssmbench-sweep{sweep_id}-cell0-task0-delay")
        )
        assert frozen and all(ft.state.name == "FAIL" for ft in frozen)
    finally:
        coordinator.close(sessions)


def test_the_epoch_hook_needs_no_ask_first_and_reports_each_epoch_once(url, sessions):
    sweep_id = submit(sessions, SEARCH.format(sampler="random", pruner="median", n_trials=4, epochs=3))
    grid_id = submit(sessions, "name: g\ntasks: [delay]\n")
    coordinator = SearchCoordinator(url)  # a scheduler just started: no ask has seen either sweep
    try:
        hook = coordinator.epoch_hook(sweep_id)
        assert hook is not None and coordinator.epoch_hook(grid_id) is None
        with transaction(sessions) as s:
            coordinator.ask(s)
        with sessions() as s:
            trial = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.id)).first()
        # no completed trial yet: the median pruner keeps everything going
        assert hook(trial.id, {"epoch": 0, "val_accuracy": 0.25}) is True
        assert hook(trial.id, {"epoch": 0, "val_accuracy": 0.75}) is True  # a retried epoch: reported once
        assert hook(trial.id, {"epoch": 1, "val_accuracy": 0.5}) is True
        assert hook(trial.id, {"epoch": 2}) is True  # no objective metric: nothing to report
        storage = coordinator.storage
        study_id = storage.get_study_id_from_name(f"ssmbench-sweep{sweep_id}-cell0-task0-delay")
        frozen = storage.get_trial(
            storage.get_trial_id_from_study_id_trial_number(study_id, trial.optuna_trial)
        )
        assert frozen.intermediate_values == {1: 0.25, 2: 0.5}  # step = epochs completed
    finally:
        coordinator.close(sessions)


def test_a_stored_search_sweep_that_cannot_run_is_cancelled_not_searched(url, sessions):
    # a grid sampler over continuous ranges, as an older version might have stored it
    sweep_id = submit(sessions, SEARCH.format(sampler="random", pruner="none", n_trials=4, epochs=2))
    with transaction(sessions) as s:
        sweep = s.get(Sweep, sweep_id)
        sweep.spec = {**sweep.spec, "search": {**sweep.spec["search"], "sampler": "grid"}}
    coordinator = SearchCoordinator(url)
    with transaction(sessions) as s:
        coordinator.ask(s)
    with sessions() as s:
        assert s.get(Sweep, sweep_id).state == "cancelled"
        assert store.state_counts(s, sweep_id) == {}
    assert not coordinator.studies.opened  # no study was made
    coordinator.close(sessions)


# --- validation at submit time ----------------------------------------------------------------------

BASE = "name: v\ntasks: [delay]\nmodel: {init: [inv, lin]}\nsearch:\n  sampler: SAMPLER\n  n_trials: 4\n  space: {SPACE}\n"


@pytest.mark.parametrize(
    ("sampler", "space", "path", "message"),
    [
        ("grid", "optim.lr: {low: 1.0e-4, high: 1.0e-2}", "search.space.optim.lr", "finite grid"),
        ("grid", "optim.lr: {choices: [0.1, 0.2]}", "search.n_trials", "exceeds the grid's 2 points"),
        ("tpe", "model.init: {choices: [inv, legs]}", "search.space.model.init", "grid axis"),
        ("tpe", "model.d_state: {low: 2.5, high: 8}", "search.space.model.d_state.low", "integer"),
        ("tpe", "model.layer: {low: 1, high: 2}", "search.space.model.layer", "not numeric"),
        ("tpe", "optim.lr: {low: 0, high: 0.1, log: true}", "search.space.optim.lr.low", "log scale"),
        (
            "tpe",
            "optim.lr: {low: 0.1, high: 1.0, log: true, step: 0.1}",
            "search.space.optim.lr",
            "log and step",
        ),
        ("tpe", "model.dropout: {low: 0.0, high: 1.0}", "search.space.model.dropout.high", "dropout"),
        ("tpe", "model.reparam: {choices: [exp, nope]}", "search.space.model.reparam.choices[1]", "reparam"),
    ],
)
def test_a_search_space_that_cannot_run_is_rejected_with_its_path(sampler, space, path, message):
    text_ = BASE.replace("SAMPLER", sampler).replace("SPACE", space)
    with pytest.raises(SpecError) as err:  # at submit time
        load_spec(text_)
    assert err.value.line is not None
    assert err.value.path == path and message in err.value.message, (err.value.path, err.value.message)
    with pytest.raises(ValidationError) as invalid:  # a stored spec re-validates by the same rules
        SweepSpec.model_validate(yaml.safe_load(text_))
    assert key_path(invalid.value.errors()[0]["loc"]) == path


def test_cmaes_is_accepted_only_with_its_package():
    text_ = BASE.replace("SAMPLER", "cmaes").replace("SPACE", "optim.lr: {low: 0.001, high: 0.1}")
    spec = SweepSpec.model_validate(yaml.safe_load(text_))
    try:
        import cmaes  # noqa: F401
    except ImportError:
        with pytest.raises(SpecError, match="pip install cmaes"):
            validate_search(spec)
    else:
        validate_search(spec)


def test_a_rejected_search_stores_nothing(url, sessions):
    text_ = BASE.replace("SAMPLER", "grid").replace("SPACE", "optim.lr: {low: 0.001, high: 0.1}")
    with pytest.raises(SpecError, match="finite grid"):
        submit(sessions, text_)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Sweep)) == 0


def test_the_optuna_storage_sits_beside_ours():
    assert optuna_storage_url("sqlite:////data/ssmbench.db") == "sqlite:////data/ssmbench-optuna.db"
    pg = "postgresql+psycopg://u@h:5432/db"
    assert optuna_storage_url(pg) == pg + "?options=-csearch_path%3Doptuna"
    assert (
        optuna_storage_url(pg + "?options=-csearch_path%3Dlab") == pg + "?options=-csearch_path%3Dlab_optuna"
    )
    with pytest.raises(Exception, match="in-memory"):
        optuna_storage_url("sqlite://")
