"""What the scheduler asks of an autoscaling Ray cluster.

The scheduler submits only the trials that fit the cluster now, so an autoscaler would never see the
pending ones and never add nodes for them. `AutoscalerDemand.request` tells it, with
`ray.autoscaler.sdk.request_resources`, the resources of every running trial and of the pending trials
up to each sweep's `max_concurrent`, and releases the request (an empty one) when nothing is pending
and when the scheduler closes (`release`).
The request is the whole demand, not an addition: the autoscaler sizes the cluster so that all the
bundles fit at once, counting what runs. Sent only when it changed (a request persists until
overridden). Used when `Settings.asks_autoscaler()` (on a RAY_ADDRESS cluster by default).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import OPEN_SWEEP_STATES, Sweep, Trial, TrialState
from .spec import SweepSpec

log = logging.getLogger(__name__)

Bundle = dict[str, float]
"""One trial's Ray resources: `{"CPU": 1.0}`, `{"CPU": 1.0, "GPU": 1.0, "trial_worker": 1.0}`"""
PendingSweep = tuple[int, int | None, int, Bundle]
"""(sweep, max_concurrent, pending trials, one trial's bundle)"""


def demand_bundles(
    in_flight: list[tuple[int, Bundle]], pending: list[PendingSweep], limit: int
) -> list[Bundle]:
    """The autoscaler request: the bundle of each in-flight trial `(sweep, bundle)`, then for each
    pending trial of each sweep `(sweep, max_concurrent, pending, bundle)` in the given (priority)
    order while the sweep has fewer than `max_concurrent` trials counted, at most `limit` bundles in
    all. Empty when nothing is pending (the request is released)."""
    if not any(n for _, _, n, _ in pending):
        return []
    bundles = [dict(bundle) for _, bundle in in_flight][:limit]
    counted: dict[int, int] = {}
    for sweep_id, _ in in_flight:
        counted[sweep_id] = counted.get(sweep_id, 0) + 1
    for sweep_id, max_concurrent, n, bundle in pending:
        room = n if max_concurrent is None else max(0, min(n, max_concurrent - counted.get(sweep_id, 0)))
        room = min(room, limit - len(bundles))
        bundles += [dict(bundle) for _ in range(room)]
        counted[sweep_id] = counted.get(sweep_id, 0) + room
    return bundles


def pending_by_sweep(session: Session, specs: Mapping[int, SweepSpec]) -> list[PendingSweep]:
    """Each open sweep with pending trials whose spec has been read (`specs`), by priority; a sweep's
    trials ask for its spec's resources."""
    rows = session.execute(
        select(Sweep.id, Sweep.max_concurrent, func.count(Trial.id))
        .join(Trial, Trial.sweep_id == Sweep.id)
        .where(Trial.state == TrialState.PENDING, Sweep.state.in_(OPEN_SWEEP_STATES))
        .group_by(Sweep.id, Sweep.max_concurrent, Sweep.priority)
        .order_by(Sweep.priority.desc(), Sweep.id)
    ).all()
    return [
        (sweep_id, max_concurrent, n, spec.resources.ray_bundle())
        for sweep_id, max_concurrent, n in rows
        if (spec := specs.get(sweep_id)) is not None
    ]


class AutoscalerDemand:
    """The bundles last asked of the autoscaler, and the asking."""

    def __init__(self) -> None:
        self.requested: list[Bundle] = []

    def request(self, in_flight: list[tuple[int, Bundle]], pending: list[PendingSweep], limit: int) -> None:
        """Ask for `demand_bundles(in_flight, pending, limit)` unless that is what was asked last."""
        bundles = demand_bundles(in_flight, pending, limit)
        if bundles == self.requested:
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)
        self.requested = bundles
        log.info("asked the autoscaler for %d trial bundles", len(bundles))

    def release(self) -> None:
        """Withdraw what was asked: a scheduler that stops (`Scheduler.close`) submits none of the
        pending trials, so no node should be kept or added for them. A request outlives its driver in
        the cluster's GCS; without this one from `ssmbench run` stopped early (timeout, Ctrl-C) would
        hold nodes until another scheduler overrides it."""
        if not self.requested:
            return
        import ray

        if not ray.is_initialized():
            log.warning("Ray is gone: the autoscaler still has a request for %d bundles", len(self.requested))
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[])
        self.requested = []
        log.info("withdrew the autoscaler request")
