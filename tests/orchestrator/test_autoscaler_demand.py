"""The scheduler asks the Ray autoscaler for what its pending trials need (issue 18 §4).

`demand_bundles` is checked against bundles written out by hand; the request itself is read back from
a real local Ray's GCS, where the autoscaler reads it. That the autoscaler acts on it (adds nodes for
the pending trials, removes them once the queue drained) is test_fake_autoscaler.py.
"""

from __future__ import annotations

import json

import ray
from ray.autoscaler.sdk import request_resources

from orchestrator import store
from orchestrator.autoscaler import demand_bundles
from orchestrator.db import make_engine, session_factory, transaction, upgrade
from orchestrator.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.spec import load_spec, trial_bundle

CPU1 = {"CPU": 1.0}
GPU1 = {"CPU": 1.0, "GPU": 1.0}


def test_nothing_pending_releases_the_request():
    assert demand_bundles([(1, CPU1)], [], 100) == []
    assert demand_bundles([(1, CPU1)], [(1, None, 0, CPU1)], 100) == []


def test_running_trials_count_and_pending_ones_are_capped_by_max_concurrent():
    # sweep 1 runs 2 of max 3: one more of its 5 pending; sweep 2 (no cap): all 3 pending
    bundles = demand_bundles([(1, CPU1), (1, CPU1)], [(1, 3, 5, CPU1), (2, None, 3, GPU1)], 100)
    assert bundles == [CPU1, CPU1, CPU1, GPU1, GPU1, GPU1]


def test_a_sweep_at_its_limit_asks_for_nothing_more_and_the_total_is_bounded():
    assert demand_bundles([(1, {"CPU": 2.0})], [(1, 1, 4, {"CPU": 2.0})], 100) == [{"CPU": 2.0}]
    assert demand_bundles([], [(1, None, 50, CPU1), (2, None, 50, GPU1)], 10) == [CPU1] * 10


def test_custom_resources_are_asked_for_with_the_cpus_and_gpus():
    spec = load_spec("name: c\ntasks: [delay]\nresources: {cpus: 2, custom: {trial_worker: 1, tpu: 0.5}}\n")
    bundle = spec.resources.ray_bundle()
    assert bundle == {"CPU": 2.0, "trial_worker": 1.0, "tpu": 0.5}
    assert demand_bundles([], [(1, 2, 5, bundle)], 100) == [bundle, bundle]
    assert trial_bundle({"cpus": 1, "gpus": 0.5}) == {"CPU": 1.0, "GPU": 0.5}  # stored before `custom`


def requested_bundles() -> list[dict[str, float]]:
    """The bundles the autoscaler reads: the GCS's key-value entry (autoscaler v1) or the cluster
    constraint (v2), as `ray.autoscaler.sdk.request_resources` wrote them."""
    from ray.autoscaler.v2.utils import is_autoscaler_v2

    if is_autoscaler_v2():
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address)
        return [
            dict(bundle.bundle)
            for demand in status.resource_demands.cluster_constraint_demand
            for bundle in demand.bundles_by_count
            for _ in range(bundle.count)
        ]
    from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    stored = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    return json.loads(stored) if stored else []


def test_pending_trials_that_fit_nowhere_are_asked_for_and_released_when_the_queue_drains(
    local_ray, tmp_path
):
    sessions, sweep_id, scheduler = gpu_sweep(tmp_path)
    request_resources(bundles=[])
    try:
        scheduler.step()
        assert scheduler.in_flight == {}  # nothing fits now
        assert requested_bundles() == [GPU1, GPU1]  # two of five: the sweep's max_concurrent

        with transaction(sessions) as s:
            store.cancel_sweep(s, sweep_id)
        scheduler._last_bookkeeping = 0.0  # the next pass does its bookkeeping now, not in 0.5 s
        scheduler.step()
        assert requested_bundles() == []
    finally:
        scheduler.close()
        request_resources(bundles=[])


def gpu_sweep(tmp_path) -> tuple:
    """A sweep of five GPU trials, two at a time, on a CPU-only local Ray (they fit nowhere until the
    autoscaler adds a GPU node), and a scheduler that asks the autoscaler: (sessions, sweep, scheduler)."""
    url = f"sqlite:///{tmp_path / 'demand.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    spec = "name: gpu\ntasks: [delay]\nseeds: [0, 1, 2, 3, 4]\nmax_concurrent: 2\nresources: {cpus: 1, gpus: 1}\n"
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, load_spec(spec)).id
    settings = Settings(database_url=url, checkpoint_dir=tmp_path / "ck", autoscaler_demand=True)
    return sessions, sweep_id, Scheduler(url, settings)


def test_a_scheduler_that_stops_withdraws_its_request(local_ray, tmp_path):
    _, _, scheduler = gpu_sweep(tmp_path)
    request_resources(bundles=[])
    try:
        scheduler.step()
        assert requested_bundles() == [GPU1, GPU1]
    finally:
        scheduler.close()  # its trials still pending: nobody will submit them
    assert requested_bundles() == []
    assert scheduler.demand.requested == []
    request_resources(bundles=[])


def test_the_demand_is_asked_only_on_clusters_unless_set(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not Settings(database_url="sqlite://").asks_autoscaler()
    assert Settings(database_url="sqlite://", autoscaler_demand=True).asks_autoscaler()
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6380")
    assert Settings(database_url="sqlite://").asks_autoscaler()
    assert not Settings(database_url="sqlite://", autoscaler_demand=False).asks_autoscaler()
