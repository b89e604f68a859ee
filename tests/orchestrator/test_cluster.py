"""Two Ray nodes (ray.cluster_utils.Cluster): removing the node that runs a trial costs one attempt;
the trial completes on the other node."""

from __future__ import annotations

import time

import fakes  # tests/orchestrator/fakes.py
import pytest
import ray
from ray import cloudpickle
from ray.cluster_utils import Cluster
from sqlalchemy import select
from test_scheduler import check_invariants, settings_for, submit

from orchestrator.models import Trial
from orchestrator.scheduler import Scheduler

cloudpickle.register_pickle_by_value(fakes)


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def test_removing_the_node_of_a_running_trial(cluster, db_url, sessions, tmp_path):
    cluster_, nodes = cluster
    sweep_id = submit(sessions, "name: nodes\ntasks: [delay]\nseeds: [0]\nresources: {cpus: 1}\n")
    scheduler = Scheduler(db_url, settings_for(db_url, tmp_path), train_fn=fakes.slow)
    deadline = time.monotonic() + 60
    node_id = None
    while node_id is None and time.monotonic() < deadline:
        scheduler.step()
        with sessions() as s:
            node_id = s.scalar(
                select(Trial.node_id).where(Trial.sweep_id == sweep_id, Trial.state == "running")
            )
        time.sleep(0.05)
    assert node_id is not None, "the trial never started"
    doomed = next(n for n in nodes if n.node_id == node_id)
    cluster_.remove_node(doomed)
    scheduler.run([sweep_id], timeout=120)
    scheduler.close()
    trial = check_invariants(sessions, sweep_id)[0]
    assert trial.state == "completed" and trial.attempt == 2
    assert trial.node_id != node_id
