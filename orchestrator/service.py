"""The scheduler as a long-running service: `SchedulerService` runs `Scheduler.run` on a background
thread until stopped, and says how it goes (for the API's /health).

    service = SchedulerService(settings, num_cpus=4)
    service.start()          # returns at once: Ray is joined (or started) on the thread
    service.status()         # a SchedulerStatus: state, lease, trials in flight, failing passes
    service.stop()           # ends the loop, releases the lease, shuts Ray down

The loop is `Scheduler.run` itself (`keep_going`: a failing pass is logged and retried), so the
service and `ssmbench run` schedule through the same code. Several services may share a database:
the lease lets one schedule at a time, the others stand by.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .settings import Settings
from .worker import Trainer

log = logging.getLogger(__name__)

CLUSTER_REFRESH_SECONDS = 5.0
DEGRADED_AFTER_FAILING_PASSES = 3
"""consecutive failing passes after which the service reports itself degraded (one lost connection
that the next pass survives is not worth a 503)"""

ServiceState = Literal["starting", "active", "standby", "error", "stopped"]


@dataclass(frozen=True)
class SchedulerStatus:
    """What the service's scheduler is doing, as /health reports it."""

    state: ServiceState
    """active: holds the lease and schedules; standby: another scheduler holds it; error: could not
    start (Ray or the database); stopped: after `stop()`"""
    holds_lease: bool
    in_flight: int
    """trials this scheduler runs now"""
    last_step_at: datetime | None
    failing_passes: int
    """consecutive scheduling passes that raised, up to now"""
    last_error: str | None
    """a few words on what went wrong (the log has the exception)"""

    @property
    def degraded(self) -> bool:
        """The loop keeps failing, or the scheduler could not start."""
        return self.state == "error" or self.failing_passes >= DEGRADED_AFTER_FAILING_PASSES


@dataclass(frozen=True)
class RayStatus:
    ok: bool
    detail: str
    """'connecting', 'not reachable (…)', or the nodes, CPUs and GPUs the cluster offers"""


class SchedulerService:
    """`Scheduler.run` on a daemon thread, from `start()` to `stop()`.

    Ray is joined (RAY_ADDRESS) or a local Ray started with `num_cpus` on the thread, so whoever
    starts the service goes on while Ray starts; the local Ray is shut down again by `stop()`.
    """

    def __init__(
        self,
        settings: Settings,
        train_fn: Trainer | None = None,
        *,
        num_cpus: int | None = None,
        poll_seconds: float = 0.25,
    ):
        self.settings, self.train_fn = settings, train_fn
        self.num_cpus, self.poll_seconds = num_cpus, poll_seconds
        self.scheduler = None  # an orchestrator.scheduler.Scheduler once Ray answered
        self._state: ServiceState = "starting"
        self._start_error: str | None = None
        self._ray_ok: bool | None = None
        self._ray_error: str | None = None
        self._cluster: dict[str, Any] | None = None
        self._cluster_checked = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ssmbench-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """End the loop after the pass in progress, release the lease and shut Ray down."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        from .cluster import connect_ray  # Ray is imported only where a scheduler runs
        from .scheduler import Scheduler

        try:
            connect_ray(self.num_cpus)
            self._refresh_cluster()
            if self._stop.is_set():
                self._shutdown_ray()
                return
            self.scheduler = Scheduler(
                self.settings.database_url,
                self.settings,
                train_fn=self.train_fn,
                poll_seconds=self.poll_seconds,
            )
        except Exception as err:
            self._state, self._start_error = "error", f"could not start ({type(err).__name__})"
            log.exception("the scheduler could not start")
            self._shutdown_ray()
            return
        log.info("scheduler %s started", self.scheduler.identity)
        try:
            self.scheduler.run(
                until_done=False, stop=self._stop, keep_going=True, after_pass=self._after_pass
            )
        except Exception:  # run() with keep_going raises nothing but a bug of its own
            self._state = "error"
            log.exception("the scheduling loop ended")
        finally:
            try:
                self.scheduler.close()
            except Exception as err:  # the database went away; the lease expires by itself
                log.warning("closing the scheduler: %s", err)
            if self._state != "error":
                self._state = "stopped"
            self._shutdown_ray()

    def _after_pass(self) -> None:
        scheduler = self.scheduler
        if scheduler.health.failing_passes == 0:
            self._state = "active" if scheduler.holds_lease else "standby"
        # a failing pass may be Ray gone: look at once rather than at the next refresh
        due = time.monotonic() - self._cluster_checked > CLUSTER_REFRESH_SECONDS
        if due or scheduler.health.failing_passes == 1:
            self._refresh_cluster()

    @staticmethod
    def _shutdown_ray() -> None:
        """Stop the local Ray this service started (its agents outlive an exiting driver otherwise);
        a cluster joined through RAY_ADDRESS is only disconnected from."""
        import ray

        try:
            ray.shutdown()
        except Exception as err:
            log.warning("shutting Ray down: %s", err)

    def _refresh_cluster(self) -> None:
        """What Ray offers now (nodes, CPUs, GPUs): for /health and the submit-time resource check."""
        from .cluster import cluster_summary

        self._cluster_checked = time.monotonic()
        try:
            self._cluster, self._ray_ok = cluster_summary(), True
        except Exception as err:
            log.warning("Ray did not answer: %s", err)
            self._ray_ok, self._ray_error = False, type(err).__name__

    # --- what it reports --------------------------------------------------------------------------
    def status(self) -> SchedulerStatus:
        scheduler = self.scheduler
        health = scheduler.health if scheduler is not None else None
        return SchedulerStatus(
            state=self._state,
            holds_lease=bool(scheduler and scheduler.holds_lease),
            in_flight=len(scheduler.in_flight) if scheduler else 0,
            last_step_at=health.last_step_at if health else None,
            failing_passes=health.failing_passes if health else 0,
            last_error=self._start_error or (health.last_error if health else None),
        )

    def ray_status(self) -> RayStatus:
        if self._ray_ok is None:
            return RayStatus(ok=False, detail="connecting")
        if not self._ray_ok:
            return RayStatus(ok=False, detail=f"not reachable ({self._ray_error})")
        cluster = self._cluster or {}
        return RayStatus(
            ok=True,
            detail=f"{len(cluster.get('nodes', []))} node(s), {cluster.get('cpus_total', 0):g} CPU "
            f"({cluster.get('cpus_in_use', 0):g} in use), {cluster.get('gpus_total', 0):g} GPU",
        )

    def nodes(self) -> list[dict[str, Any]] | None:
        """The cluster's nodes as last seen (None until Ray answered): for the resource check."""
        return None if not self._ray_ok or self._cluster is None else self._cluster["nodes"]
