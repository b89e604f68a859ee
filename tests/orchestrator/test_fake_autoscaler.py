"""An autoscaling Ray cluster grows for the scheduler's pending trials and shrinks when the queue
drains (issue 18 §4), on Ray's fake autoscaler: a head with 1 CPU, a node type `trial_worker` (1 CPU
and the custom resource `trial_worker`, 0 to 2 nodes) that Ray's `FakeMultiNodeProvider` launches as
real Ray nodes on this machine, and a sweep whose trials ask for `trial_worker`. The scheduler submits
only what fits, so no Ray task waits for the autoscaler to see: it grows for the scheduler's request
(`orchestrator.autoscaler`) alone.

Ray's own `ray.cluster_utils.AutoscalingCluster` is not used, for three reasons (ray 2.60):
its config starts from `fake_multi_node/example.yaml`, which the wheel does not ship
(FileNotFoundError; the `fake_multinode` provider type reads the same file for its defaults); its
head takes Ray's default port 6379, Redis's here, and the provider's nodes join 6379 unless the
provider config names `gcs_address`; and its `start()`/`shutdown()` run `ray stop --force`, which
kills every Ray process of the machine's user, the other pytest worker's too. `FakeAutoscalingCluster`
starts the same head (`ray start --head --block --autoscaling-config`, RAY_FAKE_CLUSTER=1) on a free
port, in a temp dir and a process session of its own, with the provider as an `external` one, and
stops exactly the processes it started: the session's, every descendant of the head (the provider's
nodes are children of the head's autoscaler process), and any process naming its temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fakes  # tests/orchestrator/fakes.py
import pytest
import ray
from ray import cloudpickle
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID as HEAD_NODE_ID
from sqlalchemy import select
from test_autoscaler_demand import requested_bundles

from orchestrator import store
from orchestrator.db import make_engine, session_factory, transaction, upgrade
from orchestrator.models import Trial
from orchestrator.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.spec import load_spec

cloudpickle.register_pickle_by_value(fakes)

PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
STORE_BYTES = 100 * 1024 * 1024  # each node's object store: small, the machine's memory is shared


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


class FakeAutoscalingCluster:
    """A head with `head_cpus` CPUs and Ray's autoscaler over `worker_types` (`available_node_types`)."""

    def __init__(self, head_cpus: int, worker_types: dict, idle_timeout_minutes: float):
        from ray._private.services import get_node_ip_address

        self.dir = Path(tempfile.mkdtemp(prefix="rayas-", dir="/tmp"))  # short: Ray's socket paths
        self.port = free_port()
        self.address = f"{get_node_ip_address()}:{self.port}"
        self.config = {
            "cluster_name": "fake",
            "max_workers": sum(t["max_workers"] for t in worker_types.values()),
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": idle_timeout_minutes,
            "provider": {
                "type": "external",
                "module": PROVIDER,
                "gcs_address": self.address,  # else its nodes join port 6379
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
            },
            "auth": {},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
                **worker_types,
            },
            "head_node_type": "ray.head.default",
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }
        self.head_cpus = head_cpus
        self.head: subprocess.Popen | None = None
        self.session = -1  # the head's session id (its pid: a session of its own)

    def start(self, timeout: float = 60.0) -> None:
        config = self.dir / "autoscaling.json"
        config.write_text(json.dumps(self.config))
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # RAY_AUTH_MODE: `ray start` turns token auth on whenever ~/.ray/auth_token exists (any local
        # `ray.init` writes one), while a driver joining an explicit address does not: say it here.
        env.update(
            {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "disabled"}
        )
        command = [
            sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--head",
            "--block", f"--port={self.port}", f"--temp-dir={self.dir}", f"--autoscaling-config={config}",
            f"--num-cpus={self.head_cpus}", f"--object-store-memory={STORE_BYTES}", "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}", "--dashboard-agent-listen-port=0",
            "--disable-usage-stats",
        ]  # fmt: skip
        with open(self.dir / "head.log", "wb") as log:  # the head writes to its own copy of the file
            self.head = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.session = self.head.pid
        deadline = time.monotonic() + timeout
        while not (self.dir / "ray_current_cluster").exists():  # written once the head is up
            if self.head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fake cluster's head did not start:\n{self.head_log()}")
            time.sleep(0.2)

    def head_log(self) -> str:
        return (self.dir / "head.log").read_text(errors="replace")[-4000:]

    def processes(self) -> list[int]:
        """Every live process of this cluster: those of the head's session, the head's descendants (the
        provider's nodes are children of the head's autoscaler), and any that names the temp dir (the
        session dir, sockets and logs are there; the agents rename themselves `ray::…`)."""
        table = process_table()
        mine = {
            pid
            for pid, (_, session, cmdline) in table.items()
            if str(self.dir) in cmdline or session == self.session
        }
        if self.head is not None and self.head.returncode is None:  # not reaped: its pid is still its
            parents = {pid: ppid for pid, (ppid, _, _) in table.items()}
            frontier = {self.head.pid}
            while frontier:
                mine |= frontier
                frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        return sorted(pid for pid in mine if pid in table and pid != os.getpid())

    def shutdown(self, grace: float = 3.0) -> None:
        """SIGTERM to this cluster's processes, SIGKILL to what is left after `grace` seconds (some
        take 10 s to go), twice: a process may start while the others stop (a node's agent). Never
        `ray stop`: that stops every Ray of the machine's user."""
        for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
            pids = self.processes()
            if not pids:
                break
            signal_all(pids, signum)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and set(pids) & process_table().keys():
                time.sleep(0.2)
        if self.head is not None:
            if self.head.poll() is None:
                self.head.kill()
            self.head.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


def process_table() -> dict[int, tuple[int, int, str]]:
    """Live (not zombie) processes: pid → (parent pid, session id, command line), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        state, ppid, _, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if state != "Z":
            table[int(entry.name)] = (int(ppid), int(session), cmdline)
    return table


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def alive_nodes() -> dict[str, dict]:
    return {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}


@pytest.fixture
def autoscaling_cluster():
    if ray.is_initialized():  # a Ray another test module of this process left running
        ray.shutdown()
    cluster = FakeAutoscalingCluster(
        1,
        {
            "trial_worker": {
                "resources": {"CPU": 1, "trial_worker": 1, "object_store_memory": STORE_BYTES},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 2,
            }
        },
        idle_timeout_minutes=0.05,
    )
    try:
        cluster.start()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert not cluster.processes()


def test_pending_trials_grow_the_cluster_and_it_shrinks_when_they_are_done(autoscaling_cluster, tmp_path):
    assert set(alive_nodes()) == {HEAD_NODE_ID} and "trial_worker" not in ray.cluster_resources()
    url = f"sqlite:///{tmp_path / 'autoscale.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    spec = (
        "name: grow\ntasks: [delay]\nseeds: [0, 1, 2, 3]\nmax_concurrent: 2\n"
        "resources: {cpus: 1, custom: {trial_worker: 1}}\n"  # the head has a CPU, no trial_worker
    )
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, load_spec(spec)).id
    settings = Settings(
        database_url=url, checkpoint_dir=tmp_path / "ck", heartbeat_seconds=0.5, autoscaler_demand=True
    )
    scheduler = Scheduler(url, settings, train_fn=fakes.noop)
    seen: dict[str, dict[str, float]] = {}  # every node alive during the sweep: its resources
    looked_at = [0.0]

    def look() -> None:
        if time.monotonic() - looked_at[0] > 0.5:
            seen.update({node_id: n["Resources"] for node_id, n in alive_nodes().items()})
            looked_at[0] = time.monotonic()

    try:
        scheduler.run([sweep_id], timeout=120, after_pass=look)
        left_asked = requested_bundles()  # what the autoscaler reads once the sweep is done
        looked_at[0] = 0.0
        look()  # a node that joined in the last half second (idle ones stay 3 s)
    finally:
        scheduler.close()

    with sessions() as s:
        trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id)).all()
    engine.dispose()
    assert [t.state for t in trials] == ["completed"] * 4
    workers = {node_id: resources for node_id, resources in seen.items() if node_id != HEAD_NODE_ID}
    assert 1 <= len(workers) <= 2  # the autoscaler launched nodes, no more than max_workers
    assert all(r["CPU"] == 1 and r["trial_worker"] == 1 for r in workers.values())
    assert {t.node_id for t in trials} <= set(workers)  # every trial ran on a launched node
    assert left_asked == []  # released by the scheduler's last pass, before it closed

    deadline = time.monotonic() + 60
    while set(alive_nodes()) != {HEAD_NODE_ID} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(alive_nodes()) == {HEAD_NODE_ID}, f"idle nodes not removed: {sorted(alive_nodes())}"
