"""What one database read costs the API before it reads a row (issue 18 §2): the layers of the
read path, timed one on top of the other in the same run, so their differences are the cost of each.

    python bench/read_floor.py [--db sqlite|postgresql|both] [--calls 2000]

Rows, each the mean of `--calls` calls after one warm-up call:
- `driver`: `select 1` on one open DBAPI connection (psycopg or sqlite3): the round trip itself;
- `connection`: the same statement through one open SQLAlchemy connection;
- `session, no ping`: a new read session per call as a route gets one (`api.app.use_database`:
  autocommit), its pool checkout without the pre-ping;
- `session`: the same with the pre-ping on every checkout, as served (PostgreSQL only: SQLite's
  engine does not ping);
- `thread-pool hop`: one `anyio.to_thread.run_sync` of a no-op from the event loop, what a sync route
  costs besides its work.
Absolute figures depend on the (shared) machine; the differences between rows are the claim.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
from sqlalchemy import text

from orchestrator.db import make_engine, postgres_unreachable, session_factory

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SELECT_1 = text("select 1")


def per_call_us(work: Callable[[], object], calls: int) -> float:
    work()
    start = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - start) / calls * 1e6


def hop_us(calls: int) -> float:
    async def hops() -> float:
        await anyio.to_thread.run_sync(lambda: None)
        start = time.perf_counter()
        for _ in range(calls):
            await anyio.to_thread.run_sync(lambda: None)
        return (time.perf_counter() - start) / calls * 1e6

    return asyncio.run(hops())


def measure(url: str, calls: int) -> list[tuple[str, float]]:
    engine = make_engine(url)
    reads = session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))

    def session_read() -> None:
        with reads() as session:
            session.execute(SELECT_1).scalar()

    rows = []
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            driver = connection.connection.driver_connection
            rows.append(("driver", per_call_us(lambda: driver.execute("select 1").fetchone(), calls)))
            rows.append(("connection", per_call_us(lambda: connection.execute(SELECT_1).scalar(), calls)))
        pinged = engine.pool._pre_ping  # what make_engine chose for this backend
        engine.pool._pre_ping = False
        rows.append(("session, no ping", per_call_us(session_read, calls)))
        if pinged:
            engine.pool._pre_ping = True
            rows.append(("session (as served)", per_call_us(session_read, calls)))
    finally:
        engine.dispose()
    rows.append(("thread-pool hop", hop_us(calls)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=PG)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'floor.db'}", "postgresql": args.pg_url}
        backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
        if "postgresql" in backends and (why := postgres_unreachable(args.pg_url)):
            if args.db == "postgresql":
                raise SystemExit(f"PostgreSQL {why}")
            print(f"PostgreSQL skipped: {why}\n")
            backends.remove("postgresql")
        print(f"{args.calls} calls each; µs per call (difference to the row above)\n")
        print("| backend | layer | µs | + µs |")
        print("|---|---|---:|---:|")
        for backend in backends:
            previous = None
            for layer, us in measure(urls[backend], args.calls):
                step = "" if previous is None or layer == "thread-pool hop" else f"{us - previous:+.0f}"
                print(f"| {backend} | {layer} | {us:.0f} | {step} |")
                previous = us


if __name__ == "__main__":
    main()
