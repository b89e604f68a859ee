"""The scheduler: claims pending trials and runs them as Ray tasks, restartable at any moment.

One loop, `step()`: hold the lease (only one scheduler acts on a database), collect finished Ray
tasks, requeue trials whose worker or node died, cancel what was cancelled, give up on running
trials nobody heartbeats, then start pending trials while the cluster has room. Everything it knows
is in the database, so a new scheduler continues where a dead one stopped.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ray
from ray import exceptions as ray_errors
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from . import store
from .db import as_utc, insert_ignoring_conflicts, make_engine, require_migrated, session_factory, transaction
from .models import SchedulerLease, Sweep, Trial, utcnow
from .search import SearchCoordinator
from .settings import Settings
from .worker import run_trial, task_database_url

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"


@dataclass
class InFlight:
    ref: Any
    trial_id: int
    sweep_id: int
    attempt: int
    cpus: float
    gpus: float


def connect_ray(num_cpus: int | None = None) -> None:
    """Join the cluster at RAY_ADDRESS, else start a local Ray with this machine's CPUs and GPUs.

    A local Ray picks free ports for itself (never Redis's 6379)."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)


class Scheduler:
    def __init__(
        self,
        database_url: str,
        settings: Settings | None = None,
        *,
        identity: str | None = None,
        train_fn: Callable[..., Any] | None = None,
        poll_seconds: float = 0.05,
    ):
        self.settings = settings or Settings(database_url=database_url)
        self.database_url = database_url
        self.task_database_url = task_database_url(database_url)  # no password in a cluster's tasks
        self.engine = make_engine(database_url)
        require_migrated(self.engine)
        self.sessions = session_factory(self.engine)
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.train_fn = train_fn
        self.poll_seconds = poll_seconds
        self.in_flight: dict[int, InFlight] = {}
        self.holds_lease = False
        self._renew_lease_at = 0.0
        self._last_reconcile = 0.0
        self._last_bookkeeping = 0.0
        self._totals: tuple[float, dict[str, float]] = (0.0, {})
        self._remote = ray.remote(max_retries=0)(run_trial)
        self.search = SearchCoordinator(database_url, self.sessions)  # Optuna, for sweeps with a search block

    # --- the lease ------------------------------------------------------------------------------
    def acquire_lease(self) -> bool:
        """Take or renew the lease; True while this scheduler is the one that acts.

        A held lease is renewed once a third of its time has passed, not on every pass."""
        if self.holds_lease and time.monotonic() < self._renew_lease_at:
            return True
        now = utcnow()
        with transaction(self.sessions) as s:
            s.execute(
                insert_ignoring_conflicts(s, SchedulerLease)
                .values(name=LEASE_NAME, holder=None, expires_at=None)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            taken = s.execute(
                update(SchedulerLease)
                .where(
                    SchedulerLease.name == LEASE_NAME,
                    (SchedulerLease.holder == self.identity)
                    | SchedulerLease.holder.is_(None)
                    | (SchedulerLease.expires_at < now),
                )
                .values(holder=self.identity, expires_at=now + timedelta(seconds=self.settings.lease_seconds))
            ).rowcount
        self.holds_lease = taken == 1
        self._renew_lease_at = time.monotonic() + self.settings.lease_seconds / 3
        return self.holds_lease

    def release_lease(self) -> None:
        with transaction(self.sessions) as s:
            s.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == LEASE_NAME, SchedulerLease.holder == self.identity)
                .values(holder=None, expires_at=None)
            )
        self.holds_lease = False

    # --- one pass -------------------------------------------------------------------------------
    def step(self) -> bool:
        """One scheduling pass. Returns True when a trial finished or started (loop again at once),
        False when nothing changed or another scheduler holds the lease (`holds_lease` says which)."""
        if not self.acquire_lease():
            return False
        finished = self._collect()
        self._cancel_cancelled()
        now = time.monotonic()
        if now - self._last_reconcile > min(5.0, self.settings.stale_after_seconds / 2):
            self._reconcile()
            self._last_reconcile = now
        # Sweep bookkeeping (search asks, closing, wall budgets) runs when something finished, and
        # at least every half second for what changes without us (submissions, cancellations).
        bookkeeping = finished or now - self._last_bookkeeping > 0.5
        if bookkeeping and self.search is not None:
            with transaction(self.sessions) as s:
                self.search.ask(s, self._cluster_totals())
        started = self._start_pending()
        if bookkeeping:
            with transaction(self.sessions) as s:
                store.close_finished_sweeps(s)
                self._enforce_wall_budget(s)
            self._last_bookkeeping = now
        return bool(finished or started)

    def _collect(self) -> int:
        """Record the Ray tasks that ended; returns how many."""
        if not self.in_flight:
            return 0
        refs = [f.ref for f in self.in_flight.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        by_ref = {f.ref: f for f in self.in_flight.values()}
        for ref in ready:
            flight = by_ref[ref]
            del self.in_flight[flight.trial_id]
            try:
                ray.get(ref)
            except ray_errors.TaskCancelledError:
                with transaction(self.sessions) as s:
                    store.finish(s, flight.trial_id, flight.attempt, None, "cancelled")
            except ray_errors.RayTaskError as err:  # raised outside the training guard (e.g. import)
                with transaction(self.sessions) as s:
                    store.finish(s, flight.trial_id, flight.attempt, None, "failed", error=str(err))
            except ray_errors.RayError as err:  # the worker process or its node died
                with transaction(self.sessions) as s:
                    state = store.requeue(
                        s, flight.trial_id, flight.attempt, self.settings.max_retries, type(err).__name__
                    )
                log.warning(
                    "trial %s attempt %s lost (%s): now %s",
                    flight.trial_id,
                    flight.attempt,
                    type(err).__name__,
                    state,
                )
            if self.search is not None:
                with transaction(self.sessions) as s:
                    self.search.tell(s, flight.trial_id)
        return len(ready)

    def _cancel_cancelled(self) -> None:
        if not self.in_flight:
            return
        with self.sessions() as s:
            cancelled = set(
                s.scalars(
                    select(Sweep.id).where(
                        Sweep.state == "cancelled",
                        Sweep.id.in_({f.sweep_id for f in self.in_flight.values()}),
                    )
                )
            )
        for flight in list(self.in_flight.values()):
            if flight.sweep_id in cancelled:
                ray.cancel(flight.ref, force=True)

    def _reconcile(self) -> None:
        """Running trials that no live task of ours runs and that nobody heartbeats: requeue them."""
        with transaction(self.sessions) as s:
            stale = store.stale_running(
                s, timedelta(seconds=self.settings.stale_after_seconds), exclude=self.in_flight
            )
            for trial in stale:
                state = store.requeue(
                    s, trial.id, trial.attempt, self.settings.max_retries, "heartbeat stale"
                )
                log.warning(
                    "trial %s attempt %s had a stale heartbeat: now %s", trial.id, trial.attempt, state
                )

    def _cluster_totals(self) -> dict[str, float]:
        """The cluster's resources (`ray.cluster_resources()`), re-read every 2 s: nodes join and leave."""
        read_at, totals = self._totals
        if time.monotonic() - read_at > 2.0:
            totals = ray.cluster_resources()
            self._totals = (time.monotonic(), totals)
        return totals

    def _capacity(self) -> tuple[float, float]:
        """Free CPUs and GPUs: the cluster's totals minus what our in-flight trials asked for."""
        totals = self._cluster_totals()
        used_cpus = sum(f.cpus for f in self.in_flight.values())
        used_gpus = sum(f.gpus for f in self.in_flight.values())
        return totals.get("CPU", 0.0) - used_cpus, totals.get("GPU", 0.0) - used_gpus

    def _start_pending(self) -> int:
        """Claim pending trials that fit (priority, then age) in one transaction and submit them."""
        free_cpus, free_gpus = self._capacity()
        if free_cpus <= 1e-9 and free_gpus <= 1e-9:
            return 0
        per_sweep: dict[int, int] = {}
        for flight in self.in_flight.values():
            per_sweep[flight.sweep_id] = per_sweep.get(flight.sweep_id, 0) + 1
        with self.sessions() as s:
            candidates = s.execute(
                select(Trial.id, Trial.sweep_id, Trial.resources, Sweep.max_concurrent)
                .join(Sweep, Sweep.id == Trial.sweep_id)
                .where(Trial.state == "pending", Sweep.state.in_(("pending", "running")))
                .order_by(Sweep.priority.desc(), Trial.id)
                .limit(max(1, math.ceil(free_cpus)) * 4 + 16)
            ).all()
        chosen = []
        for trial_id, sweep_id, resources, max_concurrent in candidates:
            cpus, gpus = float(resources.get("cpus", 1.0)), float(resources.get("gpus", 0.0))
            if cpus > free_cpus + 1e-9 or gpus > free_gpus + 1e-9:
                continue
            if max_concurrent is not None and per_sweep.get(sweep_id, 0) >= max_concurrent:
                continue
            chosen.append((trial_id, sweep_id, cpus, gpus))
            per_sweep[sweep_id] = per_sweep.get(sweep_id, 0) + 1
            free_cpus -= cpus
            free_gpus -= gpus
        if not chosen:
            return 0
        with transaction(self.sessions) as s:
            attempts = {trial_id: store.claim(s, trial_id) for trial_id, *_ in chosen}
        for trial_id, sweep_id, cpus, gpus in chosen:
            attempt = attempts[trial_id]
            if attempt is None:  # claimed meanwhile by someone else
                continue
            hook = self.search.epoch_hook(sweep_id) if self.search is not None else None
            ref = self._remote.options(num_cpus=cpus, num_gpus=gpus).remote(
                trial_id,
                attempt,
                self.task_database_url,
                str(self.settings.resolved_checkpoint_dir()),
                self.settings.heartbeat_seconds,
                str(self.settings.data_dir) if self.settings.data_dir else None,
                self.train_fn,
                hook,
            )
            self.in_flight[trial_id] = InFlight(ref, trial_id, sweep_id, attempt, cpus, gpus)
        return len(chosen)

    def _enforce_wall_budget(self, s) -> None:
        """Cancel sweeps that ran past their budget.max_wall_seconds."""
        now = utcnow()
        for sweep in s.scalars(select(Sweep).where(Sweep.state.in_(("pending", "running")))):
            limit = (sweep.spec.get("budget") or {}).get("max_wall_seconds")
            if limit is None:
                continue
            if (now - as_utc(sweep.created_at)).total_seconds() > limit:
                store.cancel_sweep(s, sweep.id)

    # --- driving it -----------------------------------------------------------------------------
    def run(
        self,
        sweep_ids: list[int] | None = None,
        *,
        until_done: bool = True,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        """Loop `step()` until the given sweeps (default: all) have no unfinished trial, or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                busy = self.step()
                counts = self._counts(sweep_ids)
            except (OperationalError, DBAPIError) as err:
                # A lost connection (a restarted or terminated database backend): every write is
                # idempotent and every decision is re-read from the database, so the next pass resumes.
                log.warning("database error in the scheduling loop, retrying: %s", str(err).splitlines()[0])
                time.sleep(0.5)
                continue
            if on_progress is not None:
                on_progress(counts)
            if (
                until_done
                and self._done(sweep_ids)
                and not counts.get("running")
                and not counts.get("pending")
            ):
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweeps {sweep_ids or 'all'} not finished after {timeout} s: {counts}")
            if not busy:
                time.sleep(self.poll_seconds)

    def _counts(self, sweep_ids) -> dict[str, int]:
        with self.sessions() as s:
            if not sweep_ids:
                return store.state_counts(s)
            total: dict[str, int] = {}
            for sweep_id in sweep_ids:
                for state, n in store.state_counts(s, sweep_id).items():
                    total[state] = total.get(state, 0) + n
            return total

    def _done(self, sweep_ids) -> bool:
        with self.sessions() as s:
            query = select(Sweep.state)
            if sweep_ids:
                query = query.where(Sweep.id.in_(sweep_ids))
            return all(state in ("completed", "cancelled") for state in s.scalars(query))

    def close(self) -> None:
        if self.search is not None:
            self.search.close(self.sessions)  # tell Optuna about trials that finished since the last step
        if self.holds_lease:
            self.release_lease()
        self.engine.dispose()
