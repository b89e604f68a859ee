"""HTTP load on the service: `GET /api/v1/leaderboard` at 10⁵ results and `GET /api/v1/health`
(issue 7 §4), from this process against `ssmbench serve --no-scheduler` in a second one, on loopback.

    python bench/api_load.py                          # PostgreSQL (else SQLite), 10⁵ results, 32 clients
    python bench/api_load.py --backend sqlite
    python bench/api_load.py --results 10000 --requests 1000    # a quick run

The database is new (a PostgreSQL schema of its own, dropped at the end; or a SQLite file in a
temporary directory), filled directly with the study of bench/leaderboard.py — sweeps shaped like real
studies, 300 configuration groups over the six LRA tasks and two synthetic ones — and its leaderboard
running sums recounted (`rebuild_leaderboard_aggregates`), the state a served study would be in.

Load: `--clients` concurrent httpx.AsyncClient loops (one connection each, keep-alive), each request
timed from send to the last byte. The two endpoints alternate in `--rounds` rounds (health, then
leaderboard), so that both see the same machine; each round stops after `--requests`/`--rounds`
requests per endpoint or `--seconds`/`--rounds` seconds, whichever comes first. Reported: p50, p99,
mean, requests per second, and the ratio of the leaderboard's p99 to health's. Target (issue 7):
leaderboard p99 under 50 ms at 32 clients with 10⁵ results on PostgreSQL, at most 3× health's p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from orchestrator.db import session_factory
from orchestrator.leaderboard import rebuild_leaderboard_aggregates

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leaderboard import (  # bench/leaderboard.py: the same study data
    DEFAULT_PG,
    PostgresDatabase,
    SQLiteDatabase,
    Study,
    postgres_unreachable,
)

ENDPOINTS = {"health": "/api/v1/health", "leaderboard": "/api/v1/leaderboard"}


def fill(db, n_results: int) -> float:
    start = time.perf_counter()
    study = Study()
    for batch in study.batches(n_results):
        db.load(batch)
    with session_factory(db.engine)() as s, s.begin():
        rebuild_leaderboard_aggregates(s)
    db.analyze()
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(url: str, log_path: Path):
    """`ssmbench serve --no-scheduler` in its own process group; ended by its pid, whatever happens."""
    port = free_port()
    command = [sys.executable, "-c", "from api.cli import app; app()", "serve", "--no-scheduler"]
    command += ["--db", url, "--port", str(port), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSMBENCH_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"ssmbench serve exited: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(base + ENDPOINTS["health"], timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("ssmbench serve did not answer in 120 s")
                time.sleep(0.3)
            yield base, process.pid
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


async def load(
    base: str, path: str, clients: int, requests: int, seconds: float
) -> tuple[list[float], float, dict]:
    """`clients` loops until `requests` answers or `seconds`; latencies (s), wall time, status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    remaining = requests

    async def client_loop() -> None:
        nonlocal remaining
        async with httpx.AsyncClient(
            base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)
        ) as client:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                start = time.perf_counter()
                response = await client.get(path)
                await response.aread()
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return latencies, time.perf_counter() - start, statuses


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "postgresql", "sqlite"),
        default="auto",
        help="auto: PostgreSQL where one answers at --pg-url, else SQLite",
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument(
        "--results", type=int, default=100_000, help="result rows in the database (default 10⁵)"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4000, help="requests per endpoint, over all rounds")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="time limit per endpoint, over all rounds"
    )
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    reason = postgres_unreachable(args.pg_url) if args.backend != "sqlite" else None
    if reason and args.backend == "postgresql":
        sys.exit(f"postgresql {reason}; try --backend sqlite")
    if args.backend == "auto":
        args.backend = "sqlite" if reason else "postgresql"
        if reason:
            print(f"postgresql {reason}: measuring on SQLite", flush=True)
    print(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}; {args.clients} clients (httpx async, one process), "
        f"server: ssmbench serve --no-scheduler (one uvicorn process), loopback",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as directory:
        db = SQLiteDatabase(Path(directory)) if args.backend == "sqlite" else PostgresDatabase(args.pg_url)
        try:
            seconds = fill(db, args.results)
            print(
                f"{args.backend}: {args.results:,} results loaded and recounted in {seconds:.0f} s",
                flush=True,
            )
            with serve(db.url, Path(directory) / "serve.log") as (base, pid):
                print(f"server pid {pid} at {base}", flush=True)
                samples: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
                walls = dict.fromkeys(ENDPOINTS, 0.0)
                statuses: dict[str, dict[int, int]] = {name: {} for name in ENDPOINTS}
                for path in ENDPOINTS.values():  # warm-up: connections, the leaderboard's cache
                    asyncio.run(load(base, path, args.clients, args.clients * 2, 30))
                for _ in range(args.rounds):
                    for name, path in ENDPOINTS.items():
                        latencies, wall, codes = asyncio.run(
                            load(
                                base,
                                path,
                                args.clients,
                                args.requests // args.rounds,
                                args.seconds / args.rounds,
                            )
                        )
                        samples[name] += latencies
                        walls[name] += wall
                        for code, n in codes.items():
                            statuses[name][code] = statuses[name].get(code, 0) + n
                size = len(httpx.get(base + ENDPOINTS["leaderboard"], timeout=30).content)
        finally:
            db.close()

    print(f"\nleaderboard body: {size:,} bytes; load average after the run {os.getloadavg()[0]:.1f}\n")
    print("| endpoint | requests | non-200 | p50 ms | p99 ms | mean ms | requests/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    p99 = {}
    for name in ENDPOINTS:
        values = samples[name]
        p99[name] = 1000 * percentile(values, 0.99)
        bad = sum(n for code, n in statuses[name].items() if code != 200)
        print(
            f"| GET {ENDPOINTS[name]} | {len(values)} | {bad} | {1000 * percentile(values, 0.5):.1f} | "
            f"{p99[name]:.1f} | {1000 * statistics.fmean(values):.1f} | {len(values) / walls[name]:.0f} |"
        )
    ratio = p99["leaderboard"] / p99["health"]
    print(
        f"\nleaderboard p99 / health p99 = {ratio:.2f} (target ≤ 3); leaderboard p99 {p99['leaderboard']:.1f} ms (target < 50)"
    )


if __name__ == "__main__":
    main()
