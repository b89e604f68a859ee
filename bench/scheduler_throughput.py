"""Throughput of the whole orchestration path with a no-op trainer, against bare Ray tasks (and Ray
Tune when installed) in the same run: plan → database → Ray → worker writes → database.

    python bench/scheduler_throughput.py [--trials 200] [--cpus-per-trial 0.25] [--db sqlite|postgresql]

Prints trials/s for each path and the per-trial scheduling overhead over bare Ray. Ratios are the
claim; absolute figures depend on the (shared) machine.
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
from sqlalchemy import create_engine, text

from orchestrator import store
from orchestrator.db import make_engine, session_factory, transaction, upgrade
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


def through_ssmbench(n: int, cpus: float, url: str, workdir: Path) -> float:
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
    t0 = time.perf_counter()
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, spec).id
    scheduler.run([sweep_id], timeout=600)
    elapsed = time.perf_counter() - t0
    scheduler.close()
    with sessions() as s:
        counts = store.state_counts(s, sweep_id)
    assert counts == {"completed": n}, counts
    return n / elapsed


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
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.get([noop_task.remote(i) for i in range(50)])  # warm the worker pool
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.db == "sqlite":
            url, cleanup = f"sqlite:///{workdir / 'bench.db'}", None
        else:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG)
            with admin.begin() as c:
                c.execute(text(f"CREATE SCHEMA {schema}"))
            url, cleanup = f"{PG}?options=-csearch_path%3D{schema}", (admin, schema)
        try:
            ours = through_ssmbench(args.trials, args.cpus_per_trial, url, workdir)
        finally:
            if cleanup:
                admin, schema = cleanup
                with admin.begin() as c:
                    c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    bare = bare_ray(args.trials, args.cpus_per_trial)
    tune_rate = ray_tune(min(args.trials, 50), args.cpus_per_trial)
    ray.shutdown()

    print(
        f"no-op trials, {args.trials} of them, {args.cpus_per_trial} CPU each, {os.cpu_count()} CPUs, {args.db}"
    )
    print(f"{'path':<44} {'trials/s':>10} {'vs ssmbench':>12}")
    print(f"{'ssmbench (plan → DB → Ray → worker → DB)':<44} {ours:>10.1f} {1.0:>12.2f}")
    print(f"{'bare Ray tasks':<44} {bare:>10.1f} {bare / ours:>12.2f}")
    if tune_rate is None:
        print(f"{'Ray Tune':<44} {'not installed':>10}  (pip install 'ray[tune]' to compare)")
    else:
        print(f"{'Ray Tune (no-op trainable)':<44} {tune_rate:>10.1f} {tune_rate / ours:>12.2f}")
    print(f"scheduling overhead per trial over bare Ray: {1000 * (1 / ours - 1 / bare):.1f} ms")
    print(
        f"target ≥ 20 no-op trials/s through the whole path: {'met' if ours >= 20 else 'NOT met'} ({ours:.1f}/s)"
    )


if __name__ == "__main__":
    sys.exit(main())
