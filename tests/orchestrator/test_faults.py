"""Faults: the scheduler process killed mid-sweep, and PostgreSQL dropping every connection.

Each test checks the database at the end: every trial final, one result per completed trial, no
duplicated epoch rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import fakes  # tests/orchestrator/fakes.py
import pytest
import ray
from ray import cloudpickle
from sqlalchemy import create_engine, select, text
from test_scheduler import check_invariants, settings_for, submit

from orchestrator import store
from orchestrator.models import Trial
from orchestrator.scheduler import Scheduler

cloudpickle.register_pickle_by_value(fakes)
HERE = Path(__file__).resolve().parent


pytestmark = pytest.mark.usefixtures("local_ray")  # conftest.py


SCHEDULER_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    import fakes
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(fakes)
    from orchestrator.cluster import connect_ray
    from orchestrator.scheduler import Scheduler
    from orchestrator.settings import Settings
    connect_ray()
    settings = Settings(database_url={url!r}, checkpoint_dir={ckpt!r}, heartbeat_seconds=0.5)
    Scheduler({url!r}, settings, identity="doomed", train_fn=fakes.slow).run(timeout=300)
    """
)


def test_a_killed_scheduler_is_replaced_and_the_sweep_completes(db_url, sessions, tmp_path):
    sweep_id = submit(sessions, "name: k\ntasks: [delay]\nseeds: [0, 1, 2, 3]\nresources: {cpus: 1}\n")
    script = SCHEDULER_SCRIPT.format(here=str(HERE), url=db_url, ckpt=str(tmp_path / "checkpoints"))
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    doomed = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with sessions() as s:
                if store.state_counts(s, sweep_id).get("running", 0) >= 1:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the first scheduler never started a trial")
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(30)
    # Its lease expires; the new scheduler takes over and requeues what nobody heartbeats any more.
    settings = settings_for(db_url, tmp_path, stale_after_seconds=3, lease_seconds=2)
    successor = Scheduler(db_url, settings, identity="successor", train_fn=fakes.slow)
    successor.run([sweep_id], timeout=180)
    successor.close()
    trials = check_invariants(sessions, sweep_id)
    assert all(t.state == "completed" for t in trials.values())


def test_postgres_dropping_every_connection_mid_sweep_is_survived(db_url, sessions, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend is a PostgreSQL fault")
    sweep_id = submit(sessions, "name: pg\ntasks: [delay]\nseeds: [0, 1, 2, 3]\nresources: {cpus: 1}\n")
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.slow)
    errors = []

    def drive():
        try:
            scheduler.run([sweep_id], timeout=180)
        except Exception as err:
            errors.append(err)

    thread = threading.Thread(target=drive)
    thread.start()
    with sessions() as s:
        deadline = time.monotonic() + 60
        while store.state_counts(s, sweep_id).get("running", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            s.rollback()
    application_name = db_url.rsplit("application_name=", 1)[1]  # this test's connections only
    admin = create_engine(db_url.split("?")[0])
    with admin.begin() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"
            ),
            {"name": application_name},
        ).scalar()
    admin.dispose()
    assert killed >= 1
    thread.join()
    scheduler.close()
    assert not errors, errors
    trials = check_invariants(sessions, sweep_id)
    assert all(t.state == "completed" for t in trials.values())
    with sessions() as s:
        assert s.scalar(select(Trial.id).where(Trial.sweep_id == sweep_id, Trial.attempt > 1)) is None
