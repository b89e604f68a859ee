"""HTTP throughput of the service's read endpoints against a route that touches no database
(issue 18 §2), measured with Debian's `wrk` (a C load generator) so the load generator does not
compete with the server for the machine's two cores the way a Python client does.

    python bench/api_load.py                              # SQLite and PostgreSQL, 10⁵ results, 15 s each
    python bench/api_load.py --backend sqlite --duration 5 --results 10000     # a quick run

Needs `wrk` on PATH (`apt-get install -y wrk`). The database is new (a SQLite file in a temporary
directory, or a PostgreSQL schema of its own, dropped at the end), filled directly with the study of
bench/leaderboard.py — sweeps shaped like real studies, their trials and results — and its
leaderboard running sums recounted, the state a served study is in.

The server is the service as `ssmbench serve --no-scheduler` builds it (`create_app`, uvicorn with
`uvicorn_limits`, one process, logs at warning) in a process of its own, plus one bench-only route,
`GET /bench/no-db`: an `async def` answering a constant 2-key JSON object through the same middleware
stack (metrics, guards, gzip) — the ceiling of this server on this machine without a database.

Each read endpoint runs for `--duration` seconds with `wrk -t2 -c32` (keep-alive), right after the
no-database route runs for as long, so the two see the same machine; the ratio is endpoint req/s over
the no-database route's req/s of that pair. Requests carry `Accept-Encoding: gzip`, as real clients'. Target: every ratio ≥ 0.5 and, on PostgreSQL, the
leaderboard's p99 < 50 ms.

The requests are anonymous, so the service's read cache (api/read_cache.py: an anonymous read kept in
memory for at most `read_cache_seconds`) answers most of them as served. `--read-cache off` measures
every request through the database (`read_cache_seconds=0`); the default runs both, off first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from api.deps import ServiceSettings
from api.routes import read_paths
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

NO_DB = "/bench/no-db"


def fill(db, n_results: int) -> float:
    start = time.perf_counter()
    study = Study()
    for batch in study.batches(n_results):
        db.load(batch)
    with session_factory(db.engine)() as s, s.begin():
        rebuild_leaderboard_aggregates(s)
    db.analyze()
    return time.perf_counter() - start


# --- the server process -----------------------------------------------------------------------------


def run_server(database_url: str, port: int, read_cache_seconds: float) -> None:
    """`ssmbench serve --no-scheduler` with the bench's no-database route (in the child process)."""
    import uvicorn

    from api.app import create_app
    from api.deps import ServiceSettings
    from api.server import uvicorn_limits

    settings = ServiceSettings(
        database_url=database_url, scheduler=False, read_cache_seconds=read_cache_seconds
    )
    app = create_app(settings)

    @app.get(NO_DB, include_in_schema=False)
    async def no_database() -> dict[str, str]:
        return {"status": "ok", "database": "not used"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_limits(settings))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(url: str, log_path: Path, read_cache_seconds: float):
    """The server in its own process group; ended by its pid, whatever happens."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", url, str(port), str(read_cache_seconds)]
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
                    raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(base + NO_DB, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not answer in 120 s")
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


# --- wrk ---------------------------------------------------------------------------------------------

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * _UNIT_MS[unit]


def wrk(url: str, duration: float, threads: int, connections: int) -> dict[str, float]:
    """req/s, p50 and p99 (ms), requests and non-2xx/3xx answers of one `wrk --latency` run."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    command += ["-H", "Accept-Encoding: gzip", url]  # as httpx, requests and browsers send it
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Socket errors: (.*)$", output, re.M)
    if re.search(r"^\s+0 requests in", output, re.M):  # nothing answered within wrk's 2 s timeout
        nothing = float("nan")
        return {
            "rps": 0.0,
            "p50": nothing,
            "p99": nothing,
            "requests": 0,
            "bad": 0,
            "socket_errors": errors.group(1) if errors else "no answer",
        }
    percentiles = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+[a-z]+)\s*$", output, re.M))
    if len(percentiles) != 2:
        raise RuntimeError(f"cannot read wrk's latency distribution:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": _ms(percentiles["50"]),
        "p99": _ms(percentiles["99"]),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "bad": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def measure(db, args, read_cache_seconds: float) -> list[tuple[str, dict, dict]]:
    """(endpoint, its wrk figures, the no-database route's figures just before) per endpoint."""
    with db.engine.connect() as connection:
        sweep_id, trial_id = connection.exec_driver_sql(
            "SELECT sweep_id, max(id) FROM trials WHERE sweep_id = (SELECT max(sweep_id) FROM trials)"
            " GROUP BY sweep_id"
        ).one()
    rows = []
    with (
        tempfile.TemporaryDirectory() as directory,
        serve(db.url, Path(directory) / "serve.log", read_cache_seconds) as (base, pid),
    ):
        print(f"server pid {pid} at {base}, read_cache_seconds={read_cache_seconds:g}", flush=True)
        paths = read_paths(sweep_id, trial_id)
        for path in paths:  # warm-up, one request at a time: the leaderboard's cache, the pool
            response = httpx.get(base + path, timeout=300)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
        for path in paths:
            ceiling = wrk(base + NO_DB, args.duration, args.threads, args.connections)
            figures = wrk(base + path, args.duration, args.threads, args.connections)
            rows.append((path, figures, ceiling))
            print(
                f"  {path}: {figures['rps']:.0f} req/s vs {ceiling['rps']:.0f} "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    return rows


def report(backend: str, rows: list[tuple[str, dict, dict]]) -> None:
    print(f"\n{backend}:\n")
    print(
        "| endpoint | req/s | p50 ms | p99 ms | no-db req/s | no-db p50 ms | no-db p99 ms | ratio | non-2xx |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for path, f, c in rows:
        print(
            f"| {path} | {f['rps']:.0f} | {f['p50']:.1f} | {f['p99']:.1f} | {c['rps']:.0f} | "
            f"{c['p50']:.1f} | {c['p99']:.1f} | {f['rps'] / c['rps']:.2f} | {f['bad']} |"
        )
    errors = {path: f["socket_errors"] for path, f, _ in rows if f["socket_errors"]}
    if errors:
        print(f"\nsocket errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--results", type=int, default=100_000, help="result rows (default 10⁵)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of wrk per endpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--read-cache",
        choices=("both", "on", "off"),
        default="both",
        help="the service's read cache as served (on: read_cache_seconds 1), off (0: every request "
        "through the database), or one run of each (default)",
    )
    parser.add_argument("--serve", nargs=3, metavar=("URL", "PORT", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve[0], int(args.serve[1]), float(args.serve[2]))
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH: install it with `apt-get install -y wrk` (Debian/Ubuntu)")

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and (reason := postgres_unreachable(args.pg_url)):
        if args.backend == "postgresql":
            sys.exit(f"postgresql {reason}; try --backend sqlite")
        print(f"postgresql {reason}: measuring on SQLite only", flush=True)
        backends.remove("postgresql")
    print(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}; wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration:g}s per endpoint; server: create_app + uvicorn, one process, scheduler off",
        flush=True,
    )
    served = ServiceSettings.model_fields["read_cache_seconds"].default
    modes = {
        "on": [(f"read cache on ({served:g} s)", served)],
        "off": [("read cache off (the database path)", 0.0)],
    }
    modes["both"] = modes["off"] + modes["on"]
    modes = modes[args.read_cache]
    tables = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as directory:
            db = SQLiteDatabase(Path(directory)) if backend == "sqlite" else PostgresDatabase(args.pg_url)
            try:
                seconds = fill(db, args.results)
                print(f"{backend}: {args.results:,} results loaded in {seconds:.0f} s", flush=True)
                for label, seconds in modes:
                    tables.append((f"{backend}, {label}", measure(db, args, seconds)))
            finally:
                db.close()
    for backend, rows in tables:
        report(backend, rows)
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
