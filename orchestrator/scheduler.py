"""The scheduler: claims pending trials and runs them as Ray tasks, restartable at any moment.

One pass, `step()`: hold the lease (only one scheduler acts on a database), collect finished Ray
tasks, requeue trials whose worker or node died, cancel what was cancelled or failed, give up on
running trials nobody heartbeats, then start pending trials while the cluster has room. Everything
it knows is in the database, so a new scheduler continues where a dead one stopped.

One loop, `run()` (`orchestrator.loop`): until the given sweeps are done (`ssmbench run`) or until
told to stop (the service's thread, `orchestrator.service`). Sweeps are kept apart: an error that
is one sweep's own (its stored spec does not read, its search cannot ask or tell, a trial's stored
resources are not numbers) fails that sweep with the reason (`Sweep.error`); the others go on.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ray
from ray import exceptions as ray_errors
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from . import lease, store
from .autoscaler import AutoscalerDemand, pending_by_sweep
from .db import make_engine, require_migrated, session_factory, transaction
from .loop import LoopHealth, run_passes
from .models import FINAL_SWEEP_STATES, OPEN_SWEEP_STATES, Sweep, SweepState, Trial, TrialState, utcnow
from .search import SearchCoordinator
from .settings import Settings
from .spec import SweepSpec, trial_bundle
from .worker import Trainer, TrialJob, run_trial, task_database_url

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"


@dataclass
class InFlight:
    ref: Any
    trial_id: int
    sweep_id: int
    attempt: int
    bundle: dict[str, float]  # its Ray resources: {"CPU": 1.0, "GPU": 1.0, custom ones}


class Scheduler:
    def __init__(
        self,
        database_url: str,
        settings: Settings | None = None,
        *,
        identity: str | None = None,
        train_fn: Trainer | None = None,
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
        self.health = LoopHealth()  # how the passes of `run` go
        self._renew_lease_at = 0.0
        self._last_reconcile = 0.0
        self._last_bookkeeping = 0.0
        self._totals: tuple[float, dict[str, float]] = (0.0, {})
        self._specs: dict[int, SweepSpec] = {}  # open sweeps whose stored spec has been read
        self.demand = AutoscalerDemand()  # what we last asked the autoscaler for
        self._remote = ray.remote(max_retries=0)(run_trial)
        self.search = SearchCoordinator(database_url, self.sessions)  # Optuna, for sweeps with a search block

    # --- the lease ------------------------------------------------------------------------------
    def acquire_lease(self) -> bool:
        """Take or renew the lease; True while this scheduler is the one that acts.

        A held lease is renewed once a third of its time has passed, not on every pass."""
        if self.holds_lease and time.monotonic() < self._renew_lease_at:
            return True
        with transaction(self.sessions) as s:
            self.holds_lease = lease.take(s, LEASE_NAME, self.identity, self.settings.lease_seconds)
        self._renew_lease_at = time.monotonic() + self.settings.lease_seconds / 3
        return self.holds_lease

    def release_lease(self) -> None:
        with transaction(self.sessions) as s:
            lease.release(s, LEASE_NAME, self.identity)
        self.holds_lease = False

    # --- one pass -------------------------------------------------------------------------------
    def step(self) -> bool:
        """One scheduling pass. Returns True when a trial finished or started (loop again at once),
        False when nothing changed or another scheduler holds the lease (`holds_lease` says which).

        An error that is one sweep's own fails that sweep and the pass goes on. The database or Ray
        not answering raises at once; an error of the search that names no sweep raises after the
        rest of the pass has run, so grid sweeps keep starting trials meanwhile."""
        if not self.acquire_lease():
            return False
        finished = self._collect()
        now = time.monotonic()
        if now - self._last_reconcile > min(5.0, self.settings.stale_after_seconds / 2):
            self._reconcile()
            self._last_reconcile = now
        # Sweep bookkeeping (cancelling stopped sweeps' tasks, reading new specs, search asks, closing,
        # wall budgets) runs when something finished (at most every 0.1 s), and at least every half
        # second for what changes without us (submissions, cancels). Each is a round trip to the
        # database, most of a pass's cost on PostgreSQL (bench/RESULTS.md), so not every pass.
        since = now - self._last_bookkeeping
        bookkeeping = since > 0.5 or (finished and since > 0.1)
        search_error = None
        if bookkeeping:
            self._cancel_stopped()
            self._read_specs()
            if self.search is not None:  # top up search sweeps with trials from Optuna
                search_error = self._for_sweep(
                    None, "asking the search for trials", lambda s: self.search.ask(s, self._cluster_totals())
                )
        # Pending trials are looked for when room may have appeared: a trial of ours finished, or a
        # bookkeeping pass (new sweeps, nodes joining); not on the idle passes between.
        started = self._start_pending() if finished or bookkeeping else 0
        if bookkeeping:
            self._each_sweep("closing it", list(self._specs), self._close_or_cancel)
            if self.settings.asks_autoscaler():
                self._request_demand()
            self._last_bookkeeping = now
        if search_error is not None:
            raise search_error
        return bool(finished or started)

    # --- sweeps kept apart ----------------------------------------------------------------------
    def _fail_sweep(self, sweep_id: int, reason: str, err: BaseException | None = None) -> None:
        """Mark the sweep failed with `reason` (its running trials are cancelled next pass)."""
        detail = "".join(traceback.format_exception(err)) if err is not None else ""
        log.error("sweep %s failed, the others go on: %s\n%s", sweep_id, reason, detail)
        with transaction(self.sessions) as s:
            store.fail_sweep(s, sweep_id, reason)
        self._specs.pop(sweep_id, None)

    def _for_sweep(self, sweep_id: int | None, during: str, work: Callable[[Any], Any]) -> Exception | None:
        """`work(session)` in a transaction. An error that is not the database's or Ray's fails a
        sweep: the one a `store.SweepFailure` names, else `sweep_id`, with `during` (what was being
        done) as the start of its reason. An error that names no sweep is returned."""
        try:
            with transaction(self.sessions) as s:
                work(s)
        except (OperationalError, DBAPIError, ray_errors.RayError):
            raise
        except store.SweepFailure as failure:
            self._fail_sweep(failure.sweep_id, failure.reason, failure.__cause__ or failure)
        except Exception as err:
            if sweep_id is None:
                return err
            self._fail_sweep(sweep_id, store.failure_reason(during, err), err)
        return None

    def _each_sweep(self, during: str, sweep_ids: list[int], work: Callable[[Any, int], Any]) -> None:
        """`work(session, sweep_id)` for every sweep in one transaction; when that raises (not the
        database's or Ray's error), again with one transaction per sweep, so the error fails only
        the sweep it belongs to."""
        if not sweep_ids:
            return
        try:
            with transaction(self.sessions) as s:
                for sweep_id in sweep_ids:
                    work(s, sweep_id)
            return
        except (OperationalError, DBAPIError, ray_errors.RayError):
            raise
        except Exception:  # whose error it was is found out below
            pass
        for sweep_id in sweep_ids:
            self._for_sweep(sweep_id, during, lambda s, sweep_id=sweep_id: work(s, sweep_id))

    def _read_specs(self) -> None:
        """Read the stored spec of every open sweep not read yet: one that no longer validates (written
        by an older version, or edited in the database) fails its sweep instead of every pass."""
        with self.sessions() as s:
            open_ids = set(s.scalars(select(Sweep.id).where(Sweep.state.in_(OPEN_SWEEP_STATES))))
        for closed in self._specs.keys() - open_ids:
            del self._specs[closed]
        for sweep_id in sorted(open_ids - self._specs.keys()):

            def read(s, sweep_id=sweep_id):
                self._specs[sweep_id] = SweepSpec.model_validate(
                    s.scalar(select(Sweep.spec).where(Sweep.id == sweep_id))
                )

            self._for_sweep(sweep_id, "its stored spec does not read", read)

    def _close_or_cancel(self, s, sweep_id: int) -> None:
        """Complete the sweep if all its trials are final; else cancel it once past its wall budget."""
        sweep = s.get(Sweep, sweep_id)
        if sweep is None or sweep.state not in OPEN_SWEEP_STATES or store.close_if_finished(s, sweep):
            return
        limit = self._specs[sweep_id].budget.max_wall_seconds
        if limit is not None and (utcnow() - sweep.created_at).total_seconds() > limit:
            store.cancel_sweep(s, sweep_id)

    # --- trials ---------------------------------------------------------------------------------
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
                    store.finish(s, flight.trial_id, flight.attempt, None, TrialState.CANCELLED)
            except ray_errors.RayTaskError as err:  # raised outside the training guard (e.g. import)
                with transaction(self.sessions) as s:
                    store.finish(s, flight.trial_id, flight.attempt, None, TrialState.FAILED, error=str(err))
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
            spec = self._specs.get(flight.sweep_id)
            if self.search is not None and (spec is None or spec.search is not None):  # grid: nothing to tell
                self._for_sweep(
                    flight.sweep_id,
                    "telling the search how a trial ended",
                    lambda s, trial_id=flight.trial_id: self.search.tell(s, trial_id),
                )
        return len(ready)

    def _cancel_stopped(self) -> None:
        """Cancel the Ray tasks of trials whose sweep was cancelled or failed."""
        if not self.in_flight:
            return
        with self.sessions() as s:
            stopped = set(
                s.scalars(
                    select(Sweep.id).where(
                        Sweep.state.in_((SweepState.CANCELLED, SweepState.FAILED)),
                        Sweep.id.in_({f.sweep_id for f in self.in_flight.values()}),
                    )
                )
            )
        for flight in list(self.in_flight.values()):
            if flight.sweep_id in stopped:
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

    def _capacity(self) -> dict[str, float]:
        """Free resources (CPU, GPU, custom): the cluster's totals minus what our in-flight trials asked for."""
        free = dict(self._cluster_totals())
        for flight in self.in_flight.values():
            for name, amount in flight.bundle.items():
                free[name] = free.get(name, 0.0) - amount
        return free

    def _start_pending(self) -> int:
        """Claim pending trials that fit (priority, then age) in one transaction and submit them."""
        free = self._capacity()
        if free.get("CPU", 0.0) <= 1e-9 and free.get("GPU", 0.0) <= 1e-9:
            return 0
        per_sweep: dict[int, int] = {}
        for flight in self.in_flight.values():
            per_sweep[flight.sweep_id] = per_sweep.get(flight.sweep_id, 0) + 1
        with self.sessions() as s:
            candidates = s.execute(
                select(Trial.id, Trial.sweep_id, Trial.resources, Sweep.max_concurrent)
                .join(Sweep, Sweep.id == Trial.sweep_id)
                .where(Trial.state == TrialState.PENDING, Sweep.state.in_(OPEN_SWEEP_STATES))
                .order_by(Sweep.priority.desc(), Trial.id)
                .limit(max(1, math.ceil(free.get("CPU", 0.0))) * 4 + 16)
            ).all()
        chosen, broken = [], {}
        for trial_id, sweep_id, resources, max_concurrent in candidates:
            if sweep_id in broken:
                continue
            try:
                bundle = trial_bundle(resources)
            except Exception as err:  # not a mapping of numbers: stored by hand, or by a bug
                broken[sweep_id] = (
                    store.failure_reason(f"trial {trial_id}'s resources do not read", err),
                    err,
                )
                continue
            if any(amount > free.get(name, 0.0) + 1e-9 for name, amount in bundle.items()):
                continue
            if max_concurrent is not None and per_sweep.get(sweep_id, 0) >= max_concurrent:
                continue
            chosen.append((trial_id, sweep_id, bundle))
            per_sweep[sweep_id] = per_sweep.get(sweep_id, 0) + 1
            free.update({name: free.get(name, 0.0) - amount for name, amount in bundle.items()})
        for sweep_id, (reason, err) in broken.items():
            self._fail_sweep(sweep_id, reason, err)
        chosen = [c for c in chosen if c[1] not in broken]
        if not chosen:
            return 0
        with transaction(self.sessions) as s:
            attempts = store.claim_many(s, [trial_id for trial_id, *_ in chosen])
        for trial_id, sweep_id, bundle in chosen:
            attempt = attempts.get(trial_id)
            if attempt is None:  # claimed meanwhile by someone else
                continue
            job = TrialJob(
                trial_id=trial_id,
                attempt=attempt,
                database_url=self.task_database_url,
                checkpoint_root=str(self.settings.resolved_checkpoint_dir()),
                heartbeat_seconds=self.settings.heartbeat_seconds,
                data_dir=str(self.settings.data_dir) if self.settings.data_dir else None,
                train_fn=self.train_fn,
                epoch_hook=self.search.epoch_hook(sweep_id) if self.search is not None else None,
            )
            custom = {name: amount for name, amount in bundle.items() if name not in ("CPU", "GPU")}
            options = {"num_cpus": bundle["CPU"], "num_gpus": bundle.get("GPU", 0.0), "resources": custom}
            ref = self._remote.options(**options).remote(job)
            self.in_flight[trial_id] = InFlight(ref, trial_id, sweep_id, attempt, bundle)
        return len(chosen)

    # --- autoscaling demand ------------------------------------------------------------------------
    def _request_demand(self) -> None:
        """Tell the autoscaler what our running and pending trials need (`orchestrator.autoscaler`)."""
        with self.sessions() as s:
            pending = pending_by_sweep(s, self._specs)
        in_flight = [(f.sweep_id, f.bundle) for f in self.in_flight.values()]
        self.demand.request(in_flight, pending, self.settings.max_demand_bundles)

    # --- driving it -----------------------------------------------------------------------------
    def run(
        self,
        sweep_ids: list[int] | None = None,
        *,
        until_done: bool = True,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, int]], None] | None = None,
        stop: threading.Event | None = None,
        keep_going: bool = False,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        """Loop `step()` until the given sweeps (default: all) are closed and have no unfinished trial
        (`until_done`), until `stop` is set, or until `timeout` seconds passed (TimeoutError).

        The loop is `orchestrator.loop.run_passes`: a pass that lost the database is retried; any
        other error is raised, unless `keep_going` (the service: logged, retried, counted in
        `health`). `after_pass()` runs after every pass, good or bad; `on_progress(trial counts by
        state)` after every good one."""
        counts: dict[str, int] = {}
        progress_at = [0.0]

        def finished() -> bool:
            nonlocal counts
            if not until_done and on_progress is None:
                return False
            watched = set(sweep_ids) if sweep_ids else None
            running = any(watched is None or f.sweep_id in watched for f in self.in_flight.values())
            # While a trial of ours runs the sweeps are not done: ask the database only for progress,
            # and that at most every 0.25 s (two queries a pass were most of a pass on PostgreSQL).
            if running and (on_progress is None or time.monotonic() - progress_at[0] < 0.25):
                return False
            progress_at[0] = time.monotonic()
            counts = self._counts(sweep_ids)
            if on_progress is not None:
                on_progress(counts)
            unfinished = counts.get(TrialState.RUNNING) or counts.get(TrialState.PENDING)
            return until_done and not unfinished and self._done(sweep_ids)

        try:
            run_passes(
                self.step,
                finished,
                health=self.health,
                poll_seconds=self.poll_seconds,
                timeout=timeout,
                stop=stop,
                keep_going=keep_going,
                after_pass=after_pass,
            )
        except TimeoutError as err:
            raise TimeoutError(f"sweeps {sweep_ids or 'all'}: {err}: {counts}") from None

    def _counts(self, sweep_ids) -> dict[str, int]:
        query = select(Trial.state, func.count()).group_by(Trial.state)
        with self.sessions() as s:
            return dict(s.execute(query.where(Trial.sweep_id.in_(sweep_ids)) if sweep_ids else query).all())

    def _done(self, sweep_ids) -> bool:
        with self.sessions() as s:
            query = select(Sweep.state)
            if sweep_ids:
                query = query.where(Sweep.id.in_(sweep_ids))
            return all(state in FINAL_SWEEP_STATES for state in s.scalars(query))

    def close(self) -> None:
        if self.search is not None:
            self.search.close(self.sessions)  # tell Optuna about trials that finished since the last step
        if self.holds_lease:
            self.release_lease()
        self.demand.release()  # no node is kept for trials no scheduler will submit
        self.engine.dispose()
