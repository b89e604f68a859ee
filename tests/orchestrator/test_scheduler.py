"""The scheduler on a real local Ray, with fake trainers, on SQLite and PostgreSQL.

Every test ends by checking the database invariants: every trial in a final state, exactly one
result per completed trial, no duplicated epoch rows.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import fakes  # tests/orchestrator/fakes.py
import pytest
from ray import cloudpickle
from sqlalchemy import func, select, text

from orchestrator import store
from orchestrator.db import transaction
from orchestrator.leaderboard import leaderboard
from orchestrator.models import FINAL_TRIAL_STATES, EpochMetric, Result, Sweep, Trial
from orchestrator.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.worker import trial_checkpoint_dir

cloudpickle.register_pickle_by_value(fakes)  # Ray workers cannot import the tests directory


pytestmark = pytest.mark.usefixtures("local_ray")  # conftest.py


def settings_for(db_url, tmp_path, **overrides):
    values = {"database_url": db_url, "checkpoint_dir": tmp_path / "checkpoints", "heartbeat_seconds": 0.5}
    return Settings(**{**values, **overrides})


def submit(sessions, spec_text):
    with transaction(sessions) as s:
        return store.create_sweep(s, load_spec(spec_text)).id


def check_invariants(sessions, sweep_id):
    with sessions() as s:
        trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id)).all()
        assert trials and all(t.state in FINAL_TRIAL_STATES for t in trials), [
            (t.id, t.state) for t in trials
        ]
        completed = [t.id for t in trials if t.state == "completed"]
        n_results = dict(s.execute(select(Result.trial_id, func.count()).group_by(Result.trial_id)).all())
        assert all(n_results.get(t, 0) == 1 for t in completed)
        duplicated = s.execute(
            select(EpochMetric.trial_id, EpochMetric.attempt, EpochMetric.epoch, func.count())
            .group_by(EpochMetric.trial_id, EpochMetric.attempt, EpochMetric.epoch)
            .having(func.count() > 1)
        ).all()
        assert not duplicated
        assert s.get(Sweep, sweep_id).state in ("completed", "cancelled")
        return {t.seed: t for t in trials}


GRID = "name: grid\ntasks: [delay]\nmodel: {init: [inv, lin]}\nseeds: [0, 1, 7, 8]\nresources: {cpus: 0.5}\n"


def test_a_grid_sweep_runs_to_completion_and_failures_do_not_stop_it(db_url, sessions, tmp_path):
    sweep_id = submit(sessions, GRID)
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.quick)
    scheduler.run([sweep_id], timeout=120)
    scheduler.close()
    check_invariants(sessions, sweep_id)
    with sessions() as s:
        by_state = store.state_counts(s, sweep_id)
        assert by_state == {"completed": 4, "failed": 2, "diverged": 2}
        failed = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id, Trial.state == "failed")).all()
        assert all("boom: a bug in training" in t.error and "Traceback" in t.error for t in failed)
        assert s.scalar(select(func.count()).select_from(EpochMetric)) == 4 * 2 + 2 * 1
        assert all(
            t.node_id
            for t in s.scalars(select(Trial).where(Trial.sweep_id == sweep_id, Trial.state == "completed"))
        )
        # the results reached the leaderboard's running sums, and the sweep-filtered board agrees
        everything = leaderboard(s, include_baselines=False)
        this_sweep = leaderboard(s, sweep_id=sweep_id, include_baselines=False)
        assert [(r.label, r.n_seeds, r.mean) for r in everything.rows] == [
            (r.label, r.n_seeds, r.mean) for r in this_sweep.rows
        ]
        assert sorted(r.n_seeds for r in everything.rows) == [2, 2]  # seeds 0 and 1 completed per init


def test_completed_configs_are_reused_not_rerun(db_url, sessions, tmp_path):
    first = submit(sessions, GRID)
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.quick)
    scheduler.run([first], timeout=120)
    second = submit(sessions, GRID)
    with sessions() as s:
        reused = s.scalars(
            select(Trial).where(Trial.sweep_id == second, Trial.reused_from.is_not(None))
        ).all()
        assert len(reused) == 4 and all(t.state == "completed" and t.attempt == 0 for t in reused)
    scheduler.run([second], timeout=120)
    scheduler.close()
    by_seed = check_invariants(sessions, second)
    assert by_seed[7].attempt == 1  # the failed ones ran again


def test_cancel_stops_running_and_pending_trials(db_url, sessions, tmp_path):
    sweep_id = submit(sessions, "name: c\ntasks: [delay]\nseeds: [0, 1, 2, 3, 4, 5]\nresources: {cpus: 1}\n")
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.slow)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        scheduler.step()
        with sessions() as s:
            if store.state_counts(s, sweep_id).get("running", 0) == 2:
                break
    with transaction(sessions) as s:
        store.cancel_sweep(s, sweep_id)
    scheduler.run([sweep_id], timeout=60)
    scheduler.close()
    with sessions() as s:
        assert store.state_counts(s, sweep_id) == {"cancelled": 6}


def _wait_for(predicate, timeout=60.0, step=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


def test_a_killed_worker_is_retried_and_the_sweep_completes(db_url, sessions, tmp_path):
    sweep_id = submit(sessions, "name: k\ntasks: [delay]\nseeds: [0]\nresources: {cpus: 1}\n")
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.slow)
    with sessions() as s:
        trial_id = s.scalar(select(Trial.id).where(Trial.sweep_id == sweep_id))
    pid_file = trial_checkpoint_dir(str(tmp_path / "checkpoints"), db_url, trial_id) / "pid"
    _wait_for(lambda: pid_file.exists() and pid_file.read_text(), step=scheduler.step)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    scheduler.run([sweep_id], timeout=90)
    scheduler.close()
    trial = check_invariants(sessions, sweep_id)[0]
    assert trial.state == "completed" and trial.attempt == 2
    assert "lost" in (trial.error or "") or trial.error is None


def test_two_schedulers_on_one_database_train_each_trial_once(db_url, sessions, tmp_path):
    sweep_id = submit(
        sessions,
        "name: two\ntasks: [delay]\nmodel: {init: [inv, lin, legs]}\nseeds: [0, 1, 2]\nresources: {cpus: 0.5}\n",
    )
    first = Scheduler(db_url, settings_for(db_url, tmp_path), identity="first", train_fn=fakes.quick)
    second = Scheduler(db_url, settings_for(db_url, tmp_path), identity="second", train_fn=fakes.quick)
    errors = []

    def drive(scheduler):
        try:
            scheduler.run([sweep_id], timeout=120)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=drive, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not (first.holds_lease and second.holds_lease)
    first.close()
    second.close()
    trials = check_invariants(sessions, sweep_id)
    assert all(t.attempt == 1 and t.state == "completed" for t in trials.values())


def test_a_stale_running_trial_is_requeued_by_a_new_scheduler(db_url, sessions, tmp_path):
    """What a scheduler restart finds: a trial marked running whose worker is gone."""
    sweep_id = submit(sessions, "name: s\ntasks: [delay]\nseeds: [0]\n")
    with transaction(sessions) as s:
        trial_id = s.scalar(select(Trial.id).where(Trial.sweep_id == sweep_id))
        store.claim(s, trial_id)
        s.execute(
            text("UPDATE trials SET heartbeat_at = :t WHERE id = :id"),
            {"t": "2000-01-01 00:00:00", "id": trial_id},
        )
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path, stale_after_seconds=2), train_fn=fakes.quick)
    scheduler.run([sweep_id], timeout=60)
    scheduler.close()
    trial = check_invariants(sessions, sweep_id)[0]
    assert trial.state == "completed" and trial.attempt == 2


# --- one broken sweep does not stop the others (issue 13, finding 1) -------------------------------

SEARCH_SPEC = (
    "name: searched\ntasks: [delay]\nseeds: [0]\nresources: {cpus: 0.5}\n"
    "search:\n  sampler: random\n  pruner: none\n  n_trials: 4\n"
    "  objective: {metric: val_accuracy, direction: maximize}\n"
    "  space: {optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}\n"
)


def _corrupt(sessions, sweep_id, how):
    """Write a spec into the database that submission would never have stored."""
    with transaction(sessions) as s:
        if how == "not json":  # SQLite stores JSON as text; PostgreSQL's json type refuses this
            s.execute(text("UPDATE sweeps SET spec = '{\"name\": ' WHERE id = :id"), {"id": sweep_id})
            return
        sweep = s.get(Sweep, sweep_id)
        spec = dict(sweep.spec)
        if how == "unknown key":  # as a newer version might store it
            spec["colour"] = "red"
        else:  # the finding: `high: .inf` stored as null, which the space compares with `low`
            spec["search"] = {**spec["search"], "space": {"optim.lr": {"low": 1.0e-4, "high": None}}}
        sweep.spec = spec


EXPECTED_REASON = {
    "null bound": "ValidationError: search.space.optim.lr.high: Value error, high must be a number",
    "unknown key": "ValidationError: colour: Extra inputs are not permitted",
    "not json": "JSONDecodeError: Expecting value: line 1 column 10 (char 9)",
}


@pytest.mark.parametrize("how", list(EXPECTED_REASON))
def test_a_sweep_whose_stored_spec_is_corrupted_fails_alone(how, db_url, sessions, tmp_path):
    if how == "not json" and not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's json column refuses text that is not JSON")
    broken = submit(sessions, SEARCH_SPEC)
    _corrupt(sessions, broken, how)
    healthy = submit(sessions, "name: ok\ntasks: [delay]\nseeds: [0, 1, 2]\nresources: {cpus: 0.5}\n")
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.quick)
    scheduler.run([healthy, broken], timeout=120)  # raises if a pass failed (keep_going is off)
    scheduler.close()
    assert scheduler.health.failing_passes == 0
    by_seed = check_invariants(sessions, healthy)
    assert {t.state for t in by_seed.values()} == {"completed"}
    with sessions() as s:
        row = s.execute(select(Sweep.state, Sweep.error, Sweep.finished_at).where(Sweep.id == broken)).one()
        assert row.state == "failed" and row.finished_at is not None
        assert row.error == f"its stored spec does not read: {EXPECTED_REASON[how]}"
        assert store.state_counts(s, broken) == {}  # no trial was ever asked for


def test_a_search_that_raises_for_one_sweep_fails_that_sweep_and_its_trials_stop(
    db_url, sessions, tmp_path, monkeypatch
):
    """An error inside the search's ask for one sweep (here: Optuna raising) fails that sweep; its
    pending trials are cancelled, and a grid sweep beside it completes."""
    searched = submit(sessions, SEARCH_SPEC)
    grid = submit(sessions, "name: grid\ntasks: [delay]\nseeds: [0, 1]\nresources: {cpus: 0.5}\n")
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.slow)
    original = scheduler.search._ask_sweep
    calls = []

    def ask_sweep(session, plan, *args):
        calls.append(plan.sweep_id)
        if len(calls) > 1:  # the first ask stores trials; a later one breaks
            raise ValueError("the sampler fell over")
        return original(session, plan, *args)

    monkeypatch.setattr(scheduler.search, "_ask_sweep", ask_sweep)
    scheduler.run([searched, grid], timeout=120)
    scheduler.close()
    assert scheduler.health.failing_passes == 0
    assert {t.state for t in check_invariants(sessions, grid).values()} == {"completed"}
    with sessions() as s:
        sweep = s.get(Sweep, searched)
        assert sweep.state == "failed"
        assert sweep.error == "asking Optuna for trials: ValueError: the sampler fell over"
        counts = store.state_counts(s, searched)
        assert counts and set(counts) <= {"cancelled", "completed", "pruned"}, counts
