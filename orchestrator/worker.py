"""What runs on a Ray worker: one attempt of one trial, writing its own rows to the database.

The worker owns its trial for the attempt it was given: it heartbeats while training, writes each
epoch's metrics, and finishes the trial with its result — every write guarded by (trial, attempt),
so a worker that lost its trial (requeued after a stale heartbeat, or cancelled) stops at the next
epoch and writes nothing final.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ssm.config import TrialConfig

from . import store
from .db import in_transaction, process_sessions
from .models import Sweep, Trial


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


def run_trial(
    trial_id: int,
    attempt: int,
    database_url: str | None,
    checkpoint_root: str | None = None,
    heartbeat_seconds: float = 5.0,
    data_dir: str | None = None,
    train_fn: Callable[..., Any] | None = None,
    epoch_hook: Callable[[int, dict[str, Any]], bool] | None = None,
) -> str:
    """Run one attempt of a trial; returns the state it was finished with ("lost" if not ours).

    `database_url` None: this worker's SSMBENCH_DATABASE_URL (`task_database_url`).
    `train_fn` replaces `ssm.train.train` (benchmarks of the orchestrator use a no-op trainer).
    `epoch_hook(trial_id, metrics) -> keep_going` lets a search report to Optuna and prune.
    """
    sessions = process_sessions(worker_database_url(database_url))
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def start(s):
        if not store.heartbeat(s, trial_id, attempt, node_id=_node_id(), worker=worker):
            return None
        return s.scalar(select(Trial.config).where(Trial.id == trial_id))

    config_json = in_transaction(sessions, start)
    if config_json is None:
        return "lost"
    config = TrialConfig.model_validate(config_json)

    beat = _Heartbeat(sessions, trial_id, attempt, heartbeat_seconds)
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
        if sweep_state == "cancelled":
            stop_reason["state"] = "cancelled"
            return False
        if trial_state != "running" or beat.lost:
            stop_reason["state"] = "lost"
            return False
        return epoch_hook is None or epoch_hook(trial_id, metrics) is not False

    if train_fn is None:
        from ssm.train import train as train_fn
    checkpoint_dir = Path(checkpoint_root) / f"trial-{trial_id}" if checkpoint_root else None
    try:
        result = train_fn(config, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir, data_dir=data_dir)
    except Exception:
        beat.stop_event.set()
        error = traceback.format_exc()
        owned = in_transaction(
            sessions, lambda s: store.finish(s, trial_id, attempt, None, "failed", error=error)
        )
        return "failed" if owned else "lost"
    finally:
        beat.stop_event.set()
    if stop_reason.get("state") == "lost":
        return "lost"
    state = stop_reason.get("state") or result.status
    owned = in_transaction(sessions, lambda s: store.finish(s, trial_id, attempt, result, state))
    if owned and checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the result is stored; nothing left to resume
    return state if owned else "lost"
