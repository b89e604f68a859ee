"""Throughput of the whole orchestration path with a no-op trainer, against bare Ray tasks (and Ray
Tune when installed) in the same run: plan → database → Ray → worker writes → database.

    python bench/scheduler_throughput.py [--trials 200] [--cpus-per-trial 0.25] [--db sqlite|postgresql|both]

Prints trials/s for each path and the per-trial scheduling overhead over bare Ray; with `--db both`,
SQLite and PostgreSQL in the same run, and PostgreSQL's rate as a fraction of SQLite's. On
PostgreSQL it also samples `pg_stat_activity` after every scheduling pass and prints the most
connections seen beside `orchestrator.db.connection_bound`. Ratios are the claim; absolute figures
depend on the (shared) machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import ray
from sqlalchemy import create_engine, func, select, text

from orchestrator import store
from orchestrator.db import connection_bound, make_engine, session_factory, transaction, upgrade
from orchestrator.models import Trial
from orchestrator.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from ssm.train import TrialResult

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def noop_train(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    return TrialResult(
        status="completed",
        config_hash=config.hash(),
        metric="accuracy",
        best_epoch=0,
        val_metric=0.5,
        test_metric=0.5,
    )


@ray.remote
def noop_task(i: int) -> int:
    return i


def bare_ray(n: int, cpus: float) -> float:
    t0 = time.perf_counter()
    ray.get([noop_task.options(num_cpus=cpus).remote(i) for i in range(n)])
    return n / (time.perf_counter() - t0)


def through_ssmbench(n: int, cpus: float, url: str, workdir: Path) -> tuple[float, tuple[int, int] | None]:
    """Trials/s through the scheduler; on PostgreSQL also (most connections seen, their bound)."""
    upgrade(url)
    sessions = session_factory(make_engine(url))
    spec = load_spec(f"name: bench\ntasks: [delay]\nseeds: {list(range(n))}\nresources: {{cpus: {cpus}}}\n")
    settings = Settings(database_url=url, checkpoint_dir=workdir / "ck", heartbeat_seconds=30)
    scheduler = Scheduler(url, settings, train_fn=noop_train, poll_seconds=0.01)
    # Warm-up: Ray starts a worker process per concurrent slot, and each imports torch and ssm once
    # (seconds). Measured below is the steady state, as in any sweep longer than its first trials.
    warmup = load_spec(
        f"name: warmup\ntasks: [delay]\nseeds: {list(range(1000, 1032))}\nresources: {{cpus: {cpus}}}\n"
    )
    with transaction(sessions) as s:
        warmup_id = store.create_sweep(s, warmup).id
    scheduler.run([warmup_id], timeout=600)
    seen, passes = [0], [0]
    count_connections = None
    if url.startswith("postgresql"):
        admin = create_engine(PG)
        application_name = url.rsplit("application_name=", 1)[1]

        def count_connections():
            passes[0] += 1
            if passes[0] % 5 == 0:  # a sample every fifth pass: the count is a query too
                with admin.connect() as c:
                    n_connections = c.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                        {"name": application_name},
                    ).scalar()
                seen[0] = max(seen[0], n_connections)

    t0 = time.perf_counter()
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, spec).id
    scheduler.run([sweep_id], timeout=600, after_pass=count_connections)
    elapsed = time.perf_counter() - t0
    scheduler.close()
    with sessions() as s:
        counts = store.state_counts(s, sweep_id)
        workers = s.scalar(select(func.count(func.distinct(Trial.worker))))
    assert counts == {"completed": n}, counts
    # engines: the scheduler's and this script's (`sessions`)
    connections = (seen[0], connection_bound(workers, service_engines=2)) if count_connections else None
    return n / elapsed, connections


def ray_tune(n: int, cpus: float) -> float | None:
    try:
        from ray import tune
    except ImportError:
        return None

    def trainable(config):
        return {"score": 0.5}

    t0 = time.perf_counter()
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus}),
        param_space={"i": tune.grid_search(list(range(n)))},
        run_config=tune.RunConfig(verbose=0),
    ).fit()
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--cpus-per-trial", type=float, default=0.25)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = parser.parse_args()

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.get([noop_task.remote(i) for i in range(50)])  # warm the worker pool
    rates: dict[str, float] = {}
    connections = None
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            if db == "sqlite":
                url, cleanup = f"sqlite:///{workdir / 'bench.db'}", None
            else:
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                admin = create_engine(PG)
                with admin.begin() as c:
                    c.execute(text(f"CREATE SCHEMA {schema}"))
                url = f"{PG}?options=-csearch_path%3D{schema}&application_name={schema}"
                cleanup = (admin, schema)
            try:
                rates[db], seen = through_ssmbench(args.trials, args.cpus_per_trial, url, workdir)
                connections = seen or connections
            finally:
                if cleanup:
                    admin, schema = cleanup
                    with admin.begin() as c:
                        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    bare = bare_ray(args.trials, args.cpus_per_trial)
    tune_rate = ray_tune(min(args.trials, 50), args.cpus_per_trial)
    ray.shutdown()

    in_flight = int(os.cpu_count() / args.cpus_per_trial)
    print(
        f"no-op trials, {args.trials} of them, {args.cpus_per_trial} CPU each ({in_flight} in flight), "
        f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"{'path':<56} {'trials/s':>10}")
    for db, rate in rates.items():
        print(f"{f'ssmbench on {db} (plan → DB → Ray → worker → DB)':<56} {rate:>10.1f}")
    print(f"{'bare Ray tasks':<56} {bare:>10.1f}")
    if tune_rate is None:
        print(f"{'Ray Tune':<56} {'not installed':>10}  (pip install 'ray[tune]' to compare)")
    else:
        print(f"{'Ray Tune (no-op trainable)':<56} {tune_rate:>10.1f}")
    for db, rate in rates.items():
        print(f"{db}: scheduling overhead per trial over bare Ray: {1000 * (1 / rate - 1 / bare):.1f} ms")
    if len(rates) == 2:
        ratio = rates["postgresql"] / rates["sqlite"]
        print(f"PostgreSQL / SQLite: {ratio:.2f} (target ≥ 0.7: {'met' if ratio >= 0.7 else 'NOT met'})")
    if "postgresql" in rates:
        rate = rates["postgresql"]
        print(f"PostgreSQL: target ≥ 50 no-op trials/s: {'met' if rate >= 50 else 'NOT met'} ({rate:.1f}/s)")
    if connections:
        print(
            f"PostgreSQL connections: at most {connections[0]} seen, bound {connections[1]} (orchestrator.db)"
        )


if __name__ == "__main__":
    sys.exit(main())
