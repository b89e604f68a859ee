"""ssmbench on a real multi-process Ray cluster with PostgreSQL, the way a lab runs it (deploy/README.md).

A head (`ray start --head`) and a worker (`ray start --address`) are separate process trees with
their own raylets, as two hosts would be; `ssmbench serve` joins them through RAY_ADDRESS and runs a
fake trainer (SSMBENCH_FAKE_TRAINER) that checkpoints every epoch into a checkpoint directory both
nodes share, as an RWX volume would be. A sweep submitted over HTTP runs on both nodes; then the
worker node is killed (SIGKILL to its process tree) while it trains a trial, and the sweep must still
complete: every trial final, exactly one result each, the lost trial retried once on the surviving node
and resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from orchestrator.worker import trial_checkpoint_dir

from .e2e_trainers import EPOCHS
from .local_cluster import RAY, SSMBENCH, LocalCluster, free_port, wait_for

pytestmark = pytest.mark.timeout(420)

E2E_DIR = Path(__file__).resolve().parent
N_TRIALS = 8
SPEC = f"""\
name: e2e-cluster
tasks: [delay]
model: {{layer: s4d, d_model: 8, d_state: 4, n_layers: 1}}
optim: {{epochs: {EPOCHS}}}
seeds: {list(range(N_TRIALS))}
resources: {{cpus: 1}}
"""
FINAL = {"completed", "failed", "pruned", "diverged", "cancelled"}


def _run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, (
        f"{' '.join(args[:3])} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture
def cluster_env(tmp_path):
    if not RAY.exists() or not SSMBENCH.exists():
        pytest.skip(f"`ray` and `ssmbench` must be installed beside {RAY.parent}/python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SSMBENCH_"))}
    env.update(
        # Ray's token authentication, as on a real cluster: every node and the driver share the token.
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_USAGE_STATS_ENABLED="0",
        # A dead node is noticed within about 5 s rather than the default 15 s or more; the timeout
        # stays generous, as a loaded machine (2 cores, other tests beside this one) answers slowly.
        RAY_health_check_period_ms="1000",
        RAY_health_check_timeout_ms="5000",
        RAY_health_check_failure_threshold="5",
        # The fake trainer is importable by the service and by every Ray worker process.
        PYTHONPATH=os.pathsep.join(p for p in (str(E2E_DIR), env.get("PYTHONPATH", "")) if p),
    )
    return env


def test_a_sweep_survives_the_loss_of_a_worker_node(pg_url, cluster_env, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    cluster = LocalCluster(tmp_path, cluster_env)
    started = time.monotonic()
    try:
        _run(str(SSMBENCH), "db", "upgrade", "--db", pg_url, env=cluster_env)
        created = _run(
            str(SSMBENCH), "token", "create", "--name", "e2e", "--db", pg_url, "--json", env=cluster_env
        )
        token = json.loads(created.stdout)["token"]

        head = cluster.start_ready(lambda: cluster.start_head(num_cpus=1))
        worker = cluster.start_ready(lambda: cluster.start_worker("ray-worker", num_cpus=1))
        head_id, worker_id = head.node_id(), worker.node_id()
        nodes_up_s = time.monotonic() - started
        assert head_id != worker_id

        port = free_port(cluster.ports)
        serve = cluster.start_serve(
            pg_url,
            port,
            {
                "SSMBENCH_FAKE_TRAINER": "e2e_trainers:resumable",
                "SSMBENCH_CHECKPOINT_DIR": str(checkpoints),
                "SSMBENCH_DATA_DIR": str(tmp_path / "data"),
                "SSMBENCH_MAX_RETRIES": "2",
                "SSMBENCH_HEARTBEAT_SECONDS": "1",
                "SSMBENCH_STALE_AFTER_SECONDS": "30",
            },
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10)

        def service_healthy():
            if serve.proc.poll() is not None:
                raise RuntimeError(f"ssmbench serve exited with {serve.proc.returncode}:\n{serve.tail()}")
            try:
                return client.get("/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(service_healthy, 120, "ssmbench serve to answer /health with 200 (database and Ray)")
        serve_up_s = time.monotonic() - started

        headers = {"Content-Type": "application/yaml", "Authorization": f"Bearer {token}"}

        # Trials that fit on no node are refused at submission, not left pending: no GPU here, and
        # 2 CPUs in all but no single node with 2.
        for resources in ("{cpus: 1, gpus: 1}", "{cpus: 2}"):
            unfit = SPEC.replace("resources: {cpus: 1}", f"resources: {resources}")
            response = client.post("/sweeps", content=unfit, headers=headers)
            assert response.status_code == 422, (resources, response.text)
            assert response.json()["error"]["field"] == "resources", response.text

        response = client.post("/sweeps", content=SPEC, headers=headers)
        assert response.status_code == 201, response.text
        sweep_id = response.json()["id"]
        assert response.json()["n_trials"] == N_TRIALS

        seen_on: dict[int, set[str]] = {}  # trial id -> the nodes it was seen on (running or done)

        def trials() -> list[dict]:
            page = client.get(f"/sweeps/{sweep_id}/trials", params={"limit": 100}).json()
            details = []
            for item in page["items"]:
                detail = client.get(f"/trials/{item['id']}").json()
                if detail["node_id"]:
                    seen_on.setdefault(detail["id"], set()).add(detail["node_id"])
                details.append(detail)
            return details

        # Trials run on both nodes; pick a moment when the worker node trains a trial that has
        # checkpointed at least one epoch, after it already completed one.
        def doomed_trial():
            current = trials()
            done_on_worker = any(t["state"] == "completed" and t["node_id"] == worker_id for t in current)
            for t in current:
                checkpoint = trial_checkpoint_dir(str(checkpoints), pg_url, t["id"]) / "state.json"
                if (
                    done_on_worker
                    and t["state"] == "running"
                    and t["node_id"] == worker_id
                    and checkpoint.exists()
                ):
                    return t
            if all(t["state"] in FINAL for t in current):
                raise AssertionError(
                    f"the sweep ended before a second trial ran on the worker node: {current}"
                )
            return None

        doomed = wait_for(doomed_trial, 120, "a second trial running on the worker node", interval=0.3)
        nodes_before = {node for nodes in seen_on.values() for node in nodes}
        assert nodes_before == {head_id, worker_id}, "trials ran on both nodes before the worker was lost"

        worker.kill()
        killed_at = time.monotonic()

        def finished():
            sweep = client.get(f"/sweeps/{sweep_id}").json()
            return sweep if sweep["state"] in ("completed", "cancelled") else None

        sweep = wait_for(
            finished, 150, f"sweep {sweep_id} to finish after the worker node died", interval=0.5
        )
        recovery_s = time.monotonic() - killed_at

        # Every trial final and completed, none lost, none counted twice.
        assert sweep["state"] == "completed", sweep
        assert sweep["trials_by_state"] == {"completed": N_TRIALS}, sweep
        final = trials()
        assert len(final) == N_TRIALS
        assert sorted(t["seed"] for t in final) == list(range(N_TRIALS))
        for t in final:
            assert t["state"] == "completed" and t["result"] is not None, t
            assert t["node_id"] in (head_id, worker_id), t
            assert t["attempt"] in (1, 2), t
            if t["attempt"] == 2:  # lost with the worker node: it finished on the head
                assert t["node_id"] == head_id, t

        # The trial that was training on the lost node: a second attempt, on the head, resumed from
        # the checkpoint its first attempt left in the shared directory.
        retried = next(t for t in final if t["id"] == doomed["id"])
        assert retried["attempt"] == 2 and retried["node_id"] == head_id, retried
        assert seen_on[retried["id"]] == {head_id, worker_id}
        epochs = client.get(f"/trials/{retried['id']}/metrics").json()["epochs"]
        first = [e["epoch"] for e in epochs if e["attempt"] == 1]
        second = [e for e in epochs if e["attempt"] == 2]
        assert first and second, epochs
        resumed_from = second[0]["resumed_from"]
        assert resumed_from >= 1 and resumed_from <= max(first) + 1, epochs
        assert [e["epoch"] for e in second] == list(range(resumed_from, EPOCHS)), epochs

        # Both nodes completed trials.
        assert {t["node_id"] for t in final} == {head_id, worker_id}

        # The database: one result row per trial, one epoch row per (trial, attempt, epoch).
        engine = create_engine(pg_url)
        try:
            with engine.connect() as connection:
                per_trial = dict(
                    connection.execute(text("SELECT trial_id, count(*) FROM results GROUP BY trial_id")).all()
                )
                duplicated_epochs = connection.execute(
                    text(
                        "SELECT count(*) FROM (SELECT trial_id, attempt, epoch FROM epoch_metrics "
                        "GROUP BY trial_id, attempt, epoch HAVING count(*) > 1) AS d"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
        assert per_trial == {t["id"]: 1 for t in final}
        assert duplicated_epochs == 0

        print(
            f"\ncluster e2e: {N_TRIALS} trials on 2 nodes; worker killed during trial {retried['id']} "
            f"(epoch {max(first)}), resumed on the head from epoch {resumed_from}; sweep completed "
            f"{recovery_s:.1f} s after the kill; {time.monotonic() - started:.1f} s in all (nodes up at "
            f"{nodes_up_s:.1f} s, service at {serve_up_s:.1f} s)"
        )
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()
