"""What runs on a Ray worker: one attempt of one trial, writing its own rows to the database.

The worker owns its trial for the attempt it was given: it heartbeats while training, writes each
epoch's metrics, and finishes the trial with its result — every write guarded by (trial, attempt),
so a worker that lost its trial (requeued after a stale heartbeat, or cancelled) stops at the next
epoch and writes nothing final.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from ssm.config import TrialConfig
from ssm.train import TrialResult

from . import store
from .db import in_transaction, process_sessions
from .models import Sweep, SweepState, Trial, TrialState
from .tracking import open_trial_tracker


class Trainer(Protocol):
    """What trains one trial: `ssm.train.train`'s signature. `on_epoch(metrics)` is called after
    every epoch and returns False to stop (pruned, cancelled, or the trial was lost); checkpoints go
    to `checkpoint_dir` (resumed from there when present); datasets are read from `data_dir`.
    Tests and benchmarks pass fakes; they must be importable (or pickled by value) on Ray workers."""

    def __call__(
        self,
        config: TrialConfig,
        on_epoch: Callable[[dict[str, Any]], bool] | None = None,
        checkpoint_dir: Path | None = None,
        *,
        data_dir: str | None = None,
    ) -> TrialResult: ...


EpochHook = Callable[[int, dict[str, Any]], bool]
"""`hook(trial_id, metrics) -> keep_going`, called after each epoch: a search reports to Optuna and
prunes through it."""


@dataclass(frozen=True)
class TrialJob:
    """One attempt of one trial, as the scheduler hands it to a Ray worker: everything the worker
    needs to train it and write its rows."""

    trial_id: int
    attempt: int
    """the attempt the worker owns: every write it makes is guarded by (trial, attempt)"""
    database_url: str | None
    """None on a cluster when the URL holds a password: the worker reads its own
    SSMBENCH_DATABASE_URL (`task_database_url`)"""
    checkpoint_root: str | None = None
    """the trial checkpoints below it (`trial_checkpoint_dir`; None: no checkpoints)"""
    heartbeat_seconds: float = 5.0
    data_dir: str | None = None
    train_fn: Trainer | None = None
    """replaces `ssm.train.train` (fakes in tests and benchmarks)"""
    epoch_hook: EpochHook | None = None


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        return None


class _Heartbeat(threading.Thread):
    """Refreshes the trial's heartbeat every `interval` seconds until stopped or the trial is lost."""

    def __init__(self, sessions, trial_id: int, attempt: int, interval: float):
        super().__init__(daemon=True, name=f"heartbeat-{trial_id}")
        self.sessions, self.trial_id, self.attempt, self.interval = sessions, trial_id, attempt, interval
        self.stop_event, self.lost = threading.Event(), False

    def run(self):
        while not self.stop_event.wait(self.interval):
            try:
                self.lost = not in_transaction(
                    self.sessions, lambda s: store.heartbeat(s, self.trial_id, self.attempt), attempts=2
                )
            except Exception:  # a database hiccup: try again next beat, the staleness window is wide
                continue
            if self.lost:
                return


def task_database_url(database_url: str) -> str | None:
    """What the scheduler passes its Ray tasks as the database URL: the URL itself, except on a
    cluster (RAY_ADDRESS) when it holds a password — Ray keeps task arguments in its dashboard and
    events — where it passes None and each worker reads SSMBENCH_DATABASE_URL from its own
    environment (deploy/ sets it). The embedded local Ray gets the URL as it is."""
    from sqlalchemy.engine import make_url

    if os.environ.get("RAY_ADDRESS") and make_url(database_url).password:
        return None
    return database_url


def trial_checkpoint_dir(root: str | None, database_url: str, trial_id: int) -> Path | None:
    """Where a trial checkpoints: `<root>/<database>/trial-<id>`, `<database>` a digest of the URL
    without its password. Trial ids restart in every database: keyed by the id alone, a trial of a
    new database would resume another database's checkpoint of the same id."""
    if not root:
        return None
    from sqlalchemy.engine import make_url

    database = hashlib.sha256(make_url(database_url).render_as_string(hide_password=True).encode())
    return Path(root) / database.hexdigest()[:12] / f"trial-{trial_id}"


def worker_database_url(passed: str | None) -> str:
    """The database URL a worker uses: the one passed with the task, else SSMBENCH_DATABASE_URL."""
    if passed is not None:
        return passed
    url = os.environ.get("SSMBENCH_DATABASE_URL")
    if not url:
        raise RuntimeError(
            "SSMBENCH_DATABASE_URL is not set on this Ray worker: on a cluster the workers read the "
            "database URL from their environment (deploy/README.md)"
        )
    return url


def run_trial(job: TrialJob) -> str:
    """Run one attempt of a trial; returns the state it was finished with ("lost" if not ours)."""
    trial_id, attempt, epoch_hook = job.trial_id, job.attempt, job.epoch_hook
    database_url = worker_database_url(job.database_url)
    sessions = process_sessions(database_url)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def start(s):
        if not store.heartbeat(s, trial_id, attempt, node_id=_node_id(), worker=worker):
            return None
        return s.scalar(select(Trial.config).where(Trial.id == trial_id))

    config_json = in_transaction(sessions, start)
    if config_json is None:
        return "lost"
    config = TrialConfig.model_validate(config_json)
    tracker = open_trial_tracker(sessions, trial_id, attempt, config_json)  # MLflow/TensorBoard, if asked

    beat = _Heartbeat(sessions, trial_id, attempt, job.heartbeat_seconds)
    beat.start()
    stop_reason: dict[str, str] = {}

    def on_epoch(metrics: dict[str, Any]) -> bool:
        def record(s):
            store.record_epoch(s, trial_id, attempt, metrics)
            row = s.execute(
                select(Trial.state, Sweep.state)
                .join(Sweep, Sweep.id == Trial.sweep_id)
                .where(Trial.id == trial_id, Trial.attempt == attempt)
            ).one_or_none()
            return tuple(row) if row else (None, None)

        trial_state, sweep_state = in_transaction(sessions, record)
        tracker.log_epoch(metrics)
        if sweep_state in (SweepState.CANCELLED, SweepState.FAILED):
            stop_reason["state"] = TrialState.CANCELLED
            return False
        if trial_state != TrialState.RUNNING or beat.lost:
            stop_reason["state"] = "lost"
            return False
        return epoch_hook is None or epoch_hook(trial_id, metrics) is not False

    train_fn = job.train_fn
    if train_fn is None:
        from ssm.train import train as train_fn
    checkpoint_dir = trial_checkpoint_dir(job.checkpoint_root, database_url, trial_id)
    try:
        result = train_fn(config, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir, data_dir=job.data_dir)
    except Exception:
        beat.stop_event.set()
        tracker.close(TrialState.FAILED)
        error = traceback.format_exc()
        owned = in_transaction(
            sessions, lambda s: store.finish(s, trial_id, attempt, None, TrialState.FAILED, error=error)
        )
        return TrialState.FAILED if owned else "lost"
    finally:
        beat.stop_event.set()
    state = stop_reason.get("state") or result.status
    tracker.close(state)
    if state == "lost":
        return "lost"
    owned = in_transaction(sessions, lambda s: store.finish(s, trial_id, attempt, result, state))
    if owned and checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the result is stored; nothing left to resume
    return state if owned else "lost"
