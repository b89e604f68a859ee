"""A real multi-process Ray cluster on this machine, started the way hosts join one.

`ray start --head` and `ray start --address` run as separate process trees (each its own raylet,
object store, agents and temp dir), plus `ssmbench serve` as the driver. Every process is started in
a session of its own and stopped by process id — its whole tree, found through /proc — never with
`ray stop`, which would stop every Ray instance on the machine (other tests run beside this one).

Ray rewrites a loopback node address to the machine's own address, so the nodes talk over this
machine's interface; nothing leaves the machine. Every port is picked free (never Redis's 6379), and
the Ray temp dirs are short paths under /tmp: Unix socket paths are limited to 107 bytes, which
pytest's tmp_path plus Ray's session directory would exceed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
RAY = BIN / "ray"
SSMBENCH = BIN / "ssmbench"
REDIS_PORT = 6379


def free_port(taken: set[int]) -> int:
    """A TCP port nobody listens on now, not in `taken`, never 6379."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != REDIS_PORT and port not in taken:
            taken.add(port)
            return port


# --- processes by id ----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            children[info[0]].append(int(entry))
    return children


def process_tree(pid: int) -> dict[int, int]:
    """{pid: start time} of `pid` and all its descendants that are alive now."""
    children, tree, todo = _children(), {}, [pid]
    while todo:
        current = todo.pop()
        info = _stat(current)
        if info is None or current in tree:
            continue
        tree[current] = info[1]
        todo.extend(children.get(current, []))
    return tree


def signal_processes(processes: dict[int, int], sig: int) -> None:
    """Signal each process that is still the one recorded (same pid and start time)."""
    for pid, started in processes.items():
        info = _stat(pid)
        if info is not None and info[1] == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def alive(processes: dict[int, int]) -> dict[int, int]:
    return {pid: t for pid, t in processes.items() if (info := _stat(pid)) is not None and info[1] == t}


def stop_tree(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the root, wait up to `grace`, then SIGKILL whatever of its tree is left — including
    descendants that were reparented when their parent exited (they were recorded beforehand)."""
    if proc.poll() is None:
        known = process_tree(proc.pid)
        signal_processes({proc.pid: known[proc.pid]} if proc.pid in known else {}, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    else:
        known = {}
    for _ in range(3):  # anything started meanwhile hangs below a process we know
        for pid in list(alive(known)):
            known.update(process_tree(pid))
    signal_processes(alive(known), signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def ray_processes(temp_dir: Path) -> dict[int, int]:
    """{pid: start time} of the live processes of the Ray node started with `--temp-dir=temp_dir`:
    those with the (unique) temp dir on their command line — raylet, GCS, agents — and their
    descendants (Ray's workers rename themselves)."""
    marker = str(temp_dir).encode()
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.update(process_tree(int(entry)))
    return found


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:g} s")
        time.sleep(interval)


# --- the cluster --------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class RayNode(Process):
    temp_dir: Path = Path()
    agent_port: int = 0

    def healthy(self) -> bool:
        """The node's dashboard agent answers /api/healthz: its raylet (and GCS on the head) is up."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name}: `ray start` exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.agent_port}/api/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def node_id(self) -> str:
        """The Ray node id, read from the command line of this node's raylet."""
        for pid in process_tree(self.proc.pid):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"/raylet"):
                for arg in args:
                    if arg.startswith(b"--node_id="):
                        return arg.split(b"=", 1)[1].decode()
        raise RuntimeError(f"{self.name}: no raylet process found")

    def leftovers(self) -> dict[int, int]:
        """Processes of this node still alive (`ray_processes` of its temp dir)."""
        return ray_processes(self.temp_dir)

    def ray_logs(self, lines: int = 15) -> str:
        """The tails of this node's own Ray logs (raylet, GCS on the head), for a failing test."""
        parts = []
        for name in ("gcs_server.out", "raylet.out", "raylet.err", "dashboard_agent.log"):
            path = self.temp_dir / "session_latest" / "logs" / name
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"[{name}]\n" + "\n".join(text))
        return "\n".join(parts)

    def kill(self) -> None:
        """The node dies at once, as a host that loses power: SIGKILL to its whole process tree."""
        tree = process_tree(self.proc.pid)
        signal_processes(tree, signal.SIGKILL)
        self.proc.wait(10)
        wait_for(lambda: not alive(tree), 10, f"{self.name}: processes still alive after SIGKILL")


@dataclass
class LocalCluster:
    """Ray nodes and `ssmbench serve` processes started for one test; `close()` stops them all."""

    log_dir: Path
    env: dict[str, str]
    ports: set[int] = field(default_factory=set)
    processes: list[Process] = field(default_factory=list)
    gcs_port: int = 0

    def __post_init__(self) -> None:
        self.temp_root = Path(tempfile.mkdtemp(prefix="ssmb-", dir="/tmp"))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        return proc, log

    def _node_args(self, name: str, num_cpus: int) -> tuple[list[str], Path, int]:
        temp_dir = self.temp_root / name
        agent_port = free_port(self.ports)
        args = [
            "--num-cpus", str(num_cpus), "--num-gpus", "0",
            "--temp-dir", str(temp_dir),
            "--node-manager-port", str(free_port(self.ports)),
            "--object-manager-port", str(free_port(self.ports)),
            "--metrics-export-port", str(free_port(self.ports)),
            "--dashboard-agent-listen-port", str(agent_port),
            "--dashboard-agent-grpc-port", str(free_port(self.ports)),
            "--runtime-env-agent-port", str(free_port(self.ports)),
            "--min-worker-port", "0", "--max-worker-port", "0",
            "--object-store-memory", str(100 * 1024 * 1024),
            "--disable-usage-stats", "--block",
        ]  # fmt: skip
        return args, temp_dir, agent_port

    def start_head(self, num_cpus: int = 1) -> RayNode:
        self.gcs_port = free_port(self.ports)
        args, temp_dir, agent_port = self._node_args("head", num_cpus)
        head_args = [
            "--head", "--port", str(self.gcs_port), "--node-ip-address", "127.0.0.1",
            "--include-dashboard", "false", "--dashboard-port", str(free_port(self.ports)),
            "--ray-client-server-port", str(free_port(self.ports)),
        ]  # fmt: skip
        proc, log = self._spawn("ray-head", [str(RAY), "start", *head_args, *args], self.env)
        node = RayNode("ray-head", proc, log, temp_dir=temp_dir, agent_port=agent_port)
        self.processes.append(node)
        return node

    def start_worker(self, name: str, num_cpus: int = 1) -> RayNode:
        args, temp_dir, agent_port = self._node_args(name, num_cpus)
        joined = ["--address", self.address, "--node-ip-address", "127.0.0.1"]
        proc, log = self._spawn(name, [str(RAY), "start", *joined, *args], self.env)
        node = RayNode(name, proc, log, temp_dir=temp_dir, agent_port=agent_port)
        self.processes.append(node)
        return node

    def start_ready(self, start: Callable[[], RayNode], timeout: float = 90, attempts: int = 2) -> RayNode:
        """Start a node and wait until it is healthy; on a machine too loaded for Ray's startup
        deadlines (`ray start` gives up), stop what it left and start it once more."""
        for attempt in range(1, attempts + 1):
            node = start()
            try:
                wait_for(node.healthy, timeout, f"{node.name} to come up")
                return node
            except (RuntimeError, TimeoutError) as err:
                if attempt == attempts:
                    raise
                print(f"{node.name} did not start ({str(err).splitlines()[0]}); starting it again")
                stop_tree(node.proc, grace=5)
                signal_processes(node.leftovers(), signal.SIGKILL)
                self.processes.remove(node)
        raise AssertionError("unreachable")

    def start_serve(self, database_url: str, port: int, env: dict[str, str]) -> Process:
        args = [str(SSMBENCH), "serve", "--host", "127.0.0.1", "--port", str(port), "--db", database_url]
        proc, log = self._spawn("ssmbench-serve", args, {**self.env, "RAY_ADDRESS": self.address, **env})
        process = Process("ssmbench-serve", proc, log)
        self.processes.append(process)
        return process

    def close(self) -> None:
        # The driver first (it releases its lease and its Ray tasks), then the workers, the head last.
        for process in reversed(self.processes):
            stop_tree(process.proc, grace=20 if process.name == "ssmbench-serve" else 10)
        for process in self.processes:
            if isinstance(process, RayNode):
                signal_processes(process.leftovers(), signal.SIGKILL)
        shutil.rmtree(self.temp_root, ignore_errors=True)

    def logs(self) -> str:
        parts = []
        for p in self.processes:
            parts.append(f"--- {p.name} ({p.log}) ---\n{p.tail()}")
            if isinstance(p, RayNode):
                parts.append(p.ray_logs())
        return "\n\n".join(parts)
