"""Server time of the web pages over a 10⁴-trial sweep (issue 16: the sweep page under 300 ms).

    python bench/pages.py                     # SQLite in a temporary directory
    python bench/pages.py --trials 2000       # a smaller sweep, a smoke run
    python bench/pages.py --skip-sqlite --pg-url URL   # PostgreSQL only
    python bench/pages.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test   # also PostgreSQL

The database is new and migrated; one sweep is planned and stored the way the service stores one
(`orchestrator.store.create_sweep`): 2 tasks × 5 inits × 4 reparameterizations × trained/frozen ×
`--trials`/80 seeds. Then, as workers would have left it: 85% of the trials completed with a result
and three epoch rows each, 5% failed with a traceback, 3% pruned, 2% running, the rest pending; the
leaderboard's running sums are recounted (`rebuild_leaderboard_aggregates`).

Each page is requested in-process through FastAPI's TestClient (no network, no scheduler): the time
is the app's — routing, queries, template rendering, gzip off — plus the in-process transport
(about a millisecond). `--repeats` calls after one warm-up; the median and the fastest are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert, select, text, update

from api.app import create_app
from api.deps import ServiceSettings
from orchestrator import store
from orchestrator.db import make_engine, session_factory, transaction, upgrade
from orchestrator.leaderboard import rebuild_leaderboard_aggregates
from orchestrator.models import EpochMetric, Result, Sweep, Trial
from orchestrator.spec import load_spec

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/ssm/train.py", line 120, in train\n'
    "    loss.backward()\n"
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
)
PAGES = (
    ("sweep page 1", "/sweeps/{sweep}"),
    ("sweep page 100", "/sweeps/{sweep}?page=100"),
    ("sweep by metric ↓", "/sweeps/{sweep}?sort=metric&order=desc"),
    ("sweep by duration ↓", "/sweeps/{sweep}?sort=duration&order=desc&page=50"),
    ("sweep failed only", "/sweeps/{sweep}?state=failed"),
    ("sweep board page 2", "/sweeps/{sweep}?board_page=2"),
    ("progress.json", "/sweeps/{sweep}/progress.json"),
    ("sweeps list", "/"),
    ("trial", "/trials/{trial}"),
    ("leaderboard", "/leaderboard"),
    ("leaderboard listops", "/leaderboard?task=listops&mode=frozen"),
    ("studies", "/studies"),
)


def spec_text(n_trials: int) -> str:
    seeds = max(1, n_trials // 80)
    return (
        "name: bench-pages\n"
        "tasks: [delay, listops]\n"
        "model: {layer: s4d, init: [legs, inv, lin, real, rand], reparam: [none, exp, softplus, best],\n"
        "        train_eigenvalues: [true, false], d_model: 32, d_state: 16}\n"
        "optim: {epochs: 3}\n"
        f"seeds: {list(range(seeds))}\n"
    )


def fill(url: str, n_trials: int, seed: int = 0) -> tuple[int, int, dict[str, float]]:
    """Store the sweep and its outcomes; returns (sweep id, a completed trial's id, seconds per step)."""
    rng = random.Random(seed)
    timings = {}
    engine = make_engine(url)
    sessions = session_factory(engine)
    try:
        started = time.perf_counter()
        spec = load_spec(spec_text(n_trials), max_trials=None)
        with transaction(sessions) as session:
            sweep_id = store.create_sweep(session, spec, owner="bench").id
        timings["create_sweep"] = time.perf_counter() - started

        started = time.perf_counter()
        with transaction(sessions) as session:
            ids = session.scalars(select(Trial.id).where(Trial.sweep_id == sweep_id).order_by(Trial.id)).all()
            t0 = datetime.now(UTC) - timedelta(hours=3)
            updates, results, epochs = [], [], []
            for trial_id in ids:
                draw = rng.random()
                begin = t0 + timedelta(seconds=rng.uniform(0, 9000))
                end = begin + timedelta(seconds=rng.uniform(5, 600))
                if draw < 0.85:
                    accuracy = rng.uniform(0.5, 0.95)
                    updates.append(
                        {
                            "id": trial_id,
                            "state": "completed",
                            "started": begin,
                            "finished": end,
                            "error": None,
                        }
                    )
                    results.append(
                        {
                            "trial_id": trial_id,
                            "attempt": 1,
                            "status": "completed",
                            "metric": "accuracy",
                            "best_epoch": 2,
                            "val_metric": accuracy,
                            "test_metric": accuracy,
                            "payload": {"status": "completed", "wall_time_s": (end - begin).total_seconds()},
                        }
                    )
                    for epoch in range(3):
                        metrics = {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_metric": accuracy}
                        epochs.append(
                            {
                                "trial_id": trial_id,
                                "attempt": 1,
                                "epoch": epoch,
                                "train_loss": 1.0 / (epoch + 1),
                                "val_loss": 1.0,
                                "val_metric": accuracy,
                                "metrics": metrics,
                            }
                        )
                elif draw < 0.90:
                    updates.append(
                        {
                            "id": trial_id,
                            "state": "failed",
                            "started": begin,
                            "finished": end,
                            "error": TRACEBACK,
                        }
                    )
                elif draw < 0.93:
                    updates.append(
                        {"id": trial_id, "state": "pruned", "started": begin, "finished": end, "error": None}
                    )
                elif draw < 0.95:
                    updates.append(
                        {
                            "id": trial_id,
                            "state": "running",
                            "started": begin,
                            "finished": None,
                            "error": None,
                        }
                    )
            for batch_start in range(0, len(updates), 2000):
                session.execute(
                    update(Trial),
                    [
                        {
                            "id": u["id"],
                            "state": u["state"],
                            "attempt": 1,
                            "started_at": u["started"],
                            "finished_at": u["finished"],
                            "error": u["error"],
                        }
                        for u in updates[batch_start : batch_start + 2000]
                    ],
                )
            session.execute(insert(Result), results)
            session.execute(insert(EpochMetric), epochs)
            session.execute(update(Sweep).where(Sweep.id == sweep_id).values(state="running"))
            rebuild_leaderboard_aggregates(session)
            completed = results[0]["trial_id"]
        timings["outcomes"] = time.perf_counter() - started
        return sweep_id, completed, timings
    finally:
        engine.dispose()


def time_pages(url: str, sweep_id: int, trial_id: int, repeats: int) -> list[tuple[str, float, float, int]]:
    settings = ServiceSettings(database_url=url, scheduler=False)
    rows = []
    with TestClient(create_app(settings)) as client:
        for name, template in PAGES:
            path = template.format(sweep=sweep_id, trial=trial_id)
            response = client.get(path)  # warm-up
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200
            rows.append((name, 1000 * statistics.median(times), 1000 * min(times), len(response.content)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000, help="trials of the sweep (a multiple of 80)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--pg-url", default=None, help="also time on this PostgreSQL database (a schema of its own)"
    )
    parser.add_argument("--skip-sqlite", action="store_true", help="only PostgreSQL (with --pg-url)")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )
    backends = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'pages.db'}"
        upgrade(sqlite_url)
        if not args.skip_sqlite:
            backends.append(("sqlite", sqlite_url, None))
        if args.pg_url:
            schema = f"bench_pages_{uuid.uuid4().hex[:8]}"
            admin = make_engine(args.pg_url)
            with admin.begin() as connection:
                connection.execute(text(f"CREATE SCHEMA {schema}"))
            separator = "&" if "?" in args.pg_url else "?"
            pg_url = f"{args.pg_url}{separator}options=-csearch_path%3D{schema}"
            upgrade(pg_url)
            backends.append(("postgresql", pg_url, (admin, schema)))
        try:
            for backend, url, _ in backends:
                sweep_id, trial_id, fill_times = fill(url, args.trials)
                steps = ", ".join(f"{k} {v:.1f} s" for k, v in fill_times.items())
                print(f"\n{backend}: one sweep of {args.trials} trials stored ({steps})")
                print(f"| {'page':22} | {'median ms':>9} | {'fastest ms':>10} | {'bytes':>8} |")
                print(f"|{'-' * 24}|{'-' * 10}:|{'-' * 11}:|{'-' * 9}:|")
                rows = time_pages(url, sweep_id, trial_id, args.repeats)
                for name, median, fastest, size in rows:
                    print(f"| {name:22} | {median:9.1f} | {fastest:10.1f} | {size:8,d} |")
                worst = max(median for name, median, _, _ in rows if name.startswith("sweep "))
                verdict = "yes" if worst < 300 else "NO"
                print(f"every sweep page under 300 ms (median): {verdict} (slowest {worst:.1f} ms)")
        finally:
            for _, _, cleanup in backends:
                if cleanup is not None:
                    admin, schema = cleanup
                    with admin.begin() as connection:
                        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                    admin.dispose()


if __name__ == "__main__":
    main()
