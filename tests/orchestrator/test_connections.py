"""The PostgreSQL connections of a running sweep stay within `orchestrator.db.connection_bound`:
3 per Ray worker process that ran a trial, 10 per scheduler or API engine (issue 18 §1).

Counted in `pg_stat_activity` by the test schema's `application_name` (tests/postgres.py), after every
scheduling pass while 8 trials run at once."""

from __future__ import annotations

import fakes  # tests/orchestrator/fakes.py
import pytest
from ray import cloudpickle
from sqlalchemy import create_engine, func, select, text

from orchestrator import store
from orchestrator.db import SERVICE_POOL, WORKER_POOL, connection_bound, transaction
from orchestrator.models import Trial
from orchestrator.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.spec import load_spec

cloudpickle.register_pickle_by_value(fakes)


def test_the_bound_is_the_pools_times_the_processes():
    worker = WORKER_POOL["pool_size"] + WORKER_POOL["max_overflow"]
    service = SERVICE_POOL["pool_size"] + SERVICE_POOL["max_overflow"]
    assert (worker, service) == (3, 10)
    assert connection_bound(8, 1) == 8 * 3 + 10
    assert connection_bound(64, 2, optuna_storages=1) == 64 * 3 + 2 * 10 + 15


def test_eight_trials_in_flight_hold_no_more_connections_than_the_bound(
    local_ray, db_url, sessions, tmp_path
):
    if not db_url.startswith("postgresql"):
        pytest.skip("connections are PostgreSQL's")
    application_name = db_url.rsplit("application_name=", 1)[1]  # this test's connections only
    spec = "name: c\ntasks: [delay]\nseeds: [0, 1, 2, 3, 4, 5, 6, 7]\nresources: {cpus: 0.25}\n"
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, load_spec(spec)).id
    settings = Settings(database_url=db_url, checkpoint_dir=tmp_path / "ck", heartbeat_seconds=0.2)
    scheduler = Scheduler(db_url, settings, train_fn=fakes.slow, poll_seconds=0.05)
    admin = create_engine(db_url.split("?")[0])
    counts: list[tuple[int, int]] = []  # (connections, trials running) after each pass

    def count_connections():
        with admin.connect() as connection:
            n = connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": application_name},
            ).scalar()
        counts.append((n, len(scheduler.in_flight)))

    try:
        scheduler.run([sweep_id], timeout=600, after_pass=count_connections)  # generous: a loaded 2-core box
    finally:
        scheduler.close()
        admin.dispose()
    with sessions() as s:
        workers = s.scalar(select(func.count(func.distinct(Trial.worker))).where(Trial.sweep_id == sweep_id))
        assert store.state_counts(s, sweep_id) == {"completed": 8}
    assert max(running for _, running in counts) == 8  # all eight ran at once
    bound = connection_bound(workers, service_engines=2)  # the scheduler's engine and this test's
    assert 0 < max(n for n, _ in counts) <= bound, (counts, workers, bound)
