"""Leaderboard query latency at 10⁴, 10⁵ and 10⁶ result rows on SQLite and PostgreSQL (issue 6 §8).

    python bench/leaderboard.py                      # both databases, up to 10⁶ results (minutes)
    python bench/leaderboard.py --max-rows 100000    # stop at 10⁵
    python bench/leaderboard.py --quick              # 10⁴ only, a smoke run
    python bench/leaderboard.py --backends postgresql --pg-url postgresql+psycopg://u@host/db

Each database is new: a SQLite file in a temporary directory, and a PostgreSQL schema of its own
(dropped at the end). It is filled in steps to each size with sweeps shaped like real studies: the
six LRA tasks and two synthetic ones (delay: accuracy; memory-poly: r²), 300 configuration groups
(layer × init × reparameterization × training mode × state size × learning rate), each sweep 2–8
tasks × 30–120 groups × 3–5 seeds, about 8% of trials pruned, failed, diverged or cancelled. Rows go
in by COPY (PostgreSQL) or executemany (SQLite); the leaderboard's running sums are then recounted
with `rebuild_leaderboard_aggregates` — the state that recording each result would have left.

Timed: `--repeats` calls after one warm-up, each in a new session, reported as the median and as
the fastest call (on a shared machine the fastest is the steadier measure of the work itself):
- `all`: `leaderboard(session)`, the whole board (8 tasks × 300 groups, averages, baselines);
- `json`: `leaderboard(session).model_dump_json()`, the bytes the API sends;
- `task`: `leaderboard(session, task="listops")`;
- `sweep`: `leaderboard(session, sweep_id=1)`, one sweep (the same one at every size);
- `plain`: the GROUP BY over results ⋈ trials that the board would run without `leaderboard_cells`
  (`aggregates_from_results()`, SQL only), for comparison;
- `record`: `record_result_aggregate` for one new result — what the result writer pays per result.
The issue's target is `all` under 100 ms at 10⁶ results on PostgreSQL. The machine is shared, so the
ratio to the 10⁴ case says more than the milliseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text

from orchestrator.db import make_engine, postgres_unreachable, session_factory, upgrade
from orchestrator.leaderboard import (
    aggregates_from_results,
    leaderboard,
    rebuild_leaderboard_aggregates,
    record_result_aggregate,
)
from orchestrator.models import Result, Trial
from orchestrator.spec import group_key
from ssm.config import ModelConfig, OptimConfig, TrialConfig

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx", "delay", "memory-poly")
SIZES = (10_000, 100_000, 1_000_000)
N_GROUPS = 300
DEFAULT_PG = os.environ.get("SSMBENCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TRIAL_COLUMNS = (
    "id, sweep_id, number, state, attempt, config, config_hash, group_key, task, layer, init, reparam, "
    "train_eigenvalues, seed, resources, created_at"
)
RESULT_COLUMNS = "trial_id, attempt, status, metric, best_epoch, val_metric, test_metric, payload, created_at"
SWEEP_COLUMNS = "id, name, state, spec, priority, created_at, finished_at"


# --- the data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    key: str
    model: dict
    model_json: str
    optim_json: str
    quality: float


def make_groups(rng: random.Random) -> list[Group]:
    cells = []
    for layer in ("s4d", "s5", "s4"):
        for init in ("legs", "inv", "lin", "real", "rand", "ptd"):
            if layer == "s4" and init != "legs":
                continue
            for reparam in ("none", "exp", "softplus", "best"):
                for train in (True, False):
                    for d_state in (16, 64):
                        for lr in (1e-3, 3e-3):
                            cells.append((layer, init, reparam, train, d_state, lr))
    groups = []
    for layer, init, reparam, train, d_state, lr in rng.sample(cells, N_GROUPS):
        model = ModelConfig(
            layer=layer, init=init, reparam=reparam, train_eigenvalues=train, d_state=d_state, d_model=64
        )
        optim = OptimConfig(lr=lr, epochs=20, batch_size=50)
        config = TrialConfig(task="delay", model=model, optim=optim)
        dump = config.model_dump(mode="json")
        groups.append(
            Group(
                key=group_key(config),
                model=dump["model"],
                model_json=_canonical(dump["model"]),
                optim_json=_canonical(dump["optim"]),
                quality=rng.uniform(0.5, 0.95),
            )
        )
    return groups


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


DIAGNOSTICS = _canonical({"every": 0, "fourier": None, "memory_max_lag": 256})


@dataclass
class Batch:
    sweeps: list[tuple]
    trials: list[tuple]
    results: list[tuple]


class Study:
    """Sweeps of a long-running study, generated on demand; ids are assigned here."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.groups = make_groups(self.rng)
        self.task_quality = {
            (g.key, t): g.quality + self.rng.uniform(-0.1, 0.05) for g in self.groups for t in TASKS
        }
        self.sweep_id = self.trial_id = self.n_results = 0
        self.now = datetime.now(UTC)

    def batches(self, until: int, batch_results: int = 50_000) -> Iterator[Batch]:
        """Rows until `until` results exist in all, in batches of about `batch_results`."""
        while self.n_results < until:
            batch = Batch([], [], [])
            while self.n_results < until and len(batch.results) < batch_results:
                self._sweep(batch, until)
            yield batch

    def _sweep(self, batch: Batch, until: int) -> None:
        rng = self.rng
        self.sweep_id += 1
        sweep_id = self.sweep_id
        batch.sweeps.append((sweep_id, f"study-{sweep_id}", "completed", "{}", 0, self.now, self.now))
        tasks = rng.sample(TASKS, rng.randint(2, len(TASKS)))
        groups = rng.sample(self.groups, rng.randint(30, 120))
        seeds = range(sweep_id * 10, sweep_id * 10 + rng.randint(3, 5))
        number = 0
        for task in tasks:
            metric = "r2" if task == "memory-poly" else "accuracy"
            for g in groups:
                for seed in seeds:
                    if self.n_results >= until:
                        return
                    self.trial_id += 1
                    number += 1
                    draw = rng.random()
                    state = (
                        "completed"
                        if draw < 0.92
                        else "pruned"
                        if draw < 0.96
                        else "failed"
                        if draw < 0.98
                        else "diverged"
                        if draw < 0.99
                        else "cancelled"
                    )
                    config = (
                        f'{{"diagnostics":{DIAGNOSTICS},"model":{g.model_json},"optim":{g.optim_json},'
                        f'"seed":{seed},"task":{{"name":"{task}","options":{{}}}}}}'
                    )
                    m = g.model
                    batch.trials.append(
                        (
                            self.trial_id,
                            sweep_id,
                            number,
                            state,
                            1,
                            config,
                            hashlib.sha256(config.encode()).hexdigest(),
                            g.key,
                            task,
                            m["layer"],
                            m["init"],
                            m["reparam"],
                            m["train_eigenvalues"],
                            seed,
                            "{}",
                            self.now,
                        )
                    )
                    if state in ("completed", "pruned"):
                        x = min(1.0, max(0.0, rng.gauss(self.task_quality[g.key, task], 0.015)))
                        best_epoch = rng.randint(5, 19) if state == "completed" else 2
                        payload = '{"epochs_run": 20}'
                        batch.results.append(
                            (self.trial_id, 1, state, metric, best_epoch, x + 0.01, x, payload, self.now)
                        )
                        self.n_results += 1


# --- databases -----------------------------------------------------------------------------------------


class Database:
    name: str
    url: str
    engine: Engine

    def load(self, batch: Batch) -> None:
        raise NotImplementedError

    def analyze(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(text("ANALYZE"))

    def close(self) -> None:
        self.engine.dispose()


class SQLiteDatabase(Database):
    name = "sqlite"

    def __init__(self, directory: Path):
        self.url = f"sqlite:///{directory / 'leaderboard-bench.db'}"
        upgrade(self.url)
        self.engine = make_engine(self.url)

    def load(self, batch: Batch) -> None:
        def stamp(rows):  # datetimes as SQLAlchemy's SQLite DateTime text
            text = lambda v: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v  # noqa: E731
            return [tuple(map(text, row)) for row in rows]

        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for table, columns, rows in (
                ("sweeps", SWEEP_COLUMNS, batch.sweeps),
                ("trials", TRIAL_COLUMNS, batch.trials),
                ("results", RESULT_COLUMNS, batch.results),
            ):
                marks = ", ".join("?" * len(columns.split(",")))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", stamp(rows))
            raw.commit()
        finally:
            raw.close()


class PostgresDatabase(Database):
    name = "postgresql"

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.schema = f"bench_leaderboard_{uuid.uuid4().hex[:10]}"
        admin = create_engine(base_url)
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {self.schema}"))
        admin.dispose()
        self.url = f"{base_url}?options=-csearch_path%3D{self.schema}"
        upgrade(self.url)
        self.engine = make_engine(self.url)

    def load(self, batch: Batch) -> None:
        raw = self.engine.raw_connection()
        try:
            connection = raw.driver_connection
            with connection.cursor() as cursor:
                for table, columns, rows in (
                    ("sweeps", SWEEP_COLUMNS, batch.sweeps),
                    ("trials", TRIAL_COLUMNS, batch.trials),
                    ("results", RESULT_COLUMNS, batch.results),
                ):
                    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                for table in ("sweeps", "trials"):
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                    )
            connection.commit()
        finally:
            raw.close()

    def close(self) -> None:
        super().close()
        admin = create_engine(self.base_url)
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
        admin.dispose()


# --- timing ------------------------------------------------------------------------------------------


def times_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return times


def time_record(sessions, study: Study, repeats: int) -> list[float]:
    """Milliseconds of `record_result_aggregate` for a new result of an existing group, in its own
    committed transaction as the result writer would call it."""
    times = []
    with sessions() as s, s.begin():
        template = s.scalars(
            select(Trial).where(Trial.state == "completed").order_by(Trial.id).limit(1)
        ).one()
        sweep_id = template.sweep_id
    for i in range(repeats + 1):
        with sessions() as s, s.begin():
            trial = Trial(
                sweep_id=sweep_id,
                number=10**6 + i,
                state="completed",
                attempt=1,
                config=template.config,
                config_hash=uuid.uuid4().hex,
                group_key=template.group_key,
                task=template.task,
                layer=template.layer,
                init=template.init,
                reparam=template.reparam,
                train_eigenvalues=template.train_eigenvalues,
                seed=10**6 + i,
                resources={},
            )
            s.add(trial)
            s.flush()
            s.add(
                Result(
                    trial_id=trial.id,
                    attempt=1,
                    status="completed",
                    metric="accuracy",
                    test_metric=0.8,
                    payload={},
                )
            )
            s.flush()
            start = time.perf_counter()
            record_result_aggregate(s, trial.id)
            if i:  # the first is a warm-up
                times.append(1000 * (time.perf_counter() - start))
        study.n_results += 1
    with sessions() as s:
        study.trial_id = s.scalar(select(func.max(Trial.id)))  # the next batch's ids follow these
    return times


def measure(
    db: Database, study: Study, size: int, repeats: int, plain_repeats: int
) -> dict[str, list[float]]:
    start = time.perf_counter()
    for batch in study.batches(size):
        db.load(batch)
    sessions = session_factory(db.engine)
    with sessions() as s, s.begin():
        rebuild_leaderboard_aggregates(s)
    db.analyze()
    loaded = time.perf_counter() - start

    def board(**filters):
        def run():
            with sessions() as s:
                return leaderboard(s, **filters)

        return run

    def plain():
        with sessions() as s:
            return s.execute(aggregates_from_results()).all()

    def as_json():
        with sessions() as s:
            return leaderboard(s).model_dump_json()

    timings = {
        "all": times_ms(board(), repeats),
        "json": times_ms(as_json, repeats),
        "task": times_ms(board(task="listops"), repeats),
        "sweep": times_ms(board(sweep_id=1), repeats),
        "plain": times_ms(plain, plain_repeats),
        "record": time_record(sessions, study, repeats),
    }
    with sessions() as s:
        n_results = s.scalar(select(func.count()).select_from(Result))
        rows = len(leaderboard(s, include_baselines=False).rows)
    print(
        f"  {db.name}: {n_results:,} results, {study.sweep_id:,} sweeps, {rows:,} board rows "
        f"(loaded and recounted in {loaded:.0f} s)",
        flush=True,
    )
    return {"results": [n_results], **timings}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-rows", type=int, default=SIZES[-1], help="largest size to fill (default 10⁶)")
    parser.add_argument("--quick", action="store_true", help="10⁴ results only, 3 repeats")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per case (plain: 3)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    sizes = [n for n in SIZES if n <= (SIZES[0] if args.quick else args.max_rows)]
    repeats = 3 if args.quick else args.repeats
    plain_repeats = 1 if args.quick else min(3, repeats)

    print(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}; {repeats} timed calls after a warm-up (plain: {plain_repeats})",
        flush=True,
    )
    table = []
    for backend in args.backends.split(","):
        if backend == "postgresql" and (reason := postgres_unreachable(args.pg_url)):
            print(f"postgresql skipped: {reason}", flush=True)
            continue
        with tempfile.TemporaryDirectory() as directory:
            db = SQLiteDatabase(Path(directory)) if backend == "sqlite" else PostgresDatabase(args.pg_url)
            try:
                with db.engine.connect() as connection:
                    version = connection.exec_driver_sql(
                        "select sqlite_version()" if backend == "sqlite" else "show server_version"
                    ).scalar()
                print(f"{backend} {version}", flush=True)
                study = Study()
                first = None
                for size in sizes:
                    timings = measure(db, study, size, repeats, plain_repeats)
                    first = first or timings
                    table.append((backend, timings, first))
            finally:
                db.close()

    cases = ("all", "json", "task", "sweep", "plain", "record")
    for name, statistic in (("median", statistics.median), ("fastest", min)):
        print()
        print(f"{name} ms (× the 10⁴ case)")
        print(f"| {'database':<10} | {'results':>9} | " + " | ".join(f"{c:>15}" for c in cases) + " |")
        print(f"|{'-' * 12}|{'-' * 11}|" + "|".join("-" * 17 for _ in cases) + "|")
        for backend, timings, first in table:
            cells = []
            for case in cases:
                value = statistic(timings[case])
                cells.append(f"{value:7.1f} ({value / statistic(first[case]):4.1f}×)")
            print(f"| {backend:<10} | {timings['results'][0]:>9,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
