"""The scheduling loop: one pass after another until finished or told to stop, and what it says
about itself (`LoopHealth`, read by the service's /health).

`Scheduler.run` drives its passes through `run_passes`, for `ssmbench run`, the tests and the
service's background thread (`orchestrator.service.SchedulerService`) alike.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ray import exceptions as ray_errors
from sqlalchemy.exc import DBAPIError, OperationalError

from .models import utcnow

log = logging.getLogger(__name__)
DATABASE_RETRY_SECONDS = 0.5
MAX_FAILURE_BACKOFF_SECONDS = 5.0


@dataclass
class LoopHealth:
    """What the scheduling loop says about itself, updated after every pass."""

    last_step_at: datetime | None = None
    """when the last pass that did not raise ended"""
    failing_passes: int = 0
    """consecutive passes that raised, up to now (0: the last pass went through)"""
    last_error: str | None = None
    """what the failing passes ran into, in a few words (never the exception's text: the log has it)"""

    def passed(self) -> None:
        self.last_step_at, self.failing_passes, self.last_error = utcnow(), 0, None

    def failed(self, err: BaseException) -> None:
        self.failing_passes += 1
        if isinstance(err, OperationalError | DBAPIError):
            self.last_error = f"the database did not answer ({type(err).__name__})"
        elif isinstance(err, ray_errors.RayError):
            self.last_error = f"Ray did not answer ({type(err).__name__})"
        else:
            self.last_error = f"a scheduling pass raised {type(err).__name__}"


def run_passes(
    one_pass: Callable[[], bool],
    finished: Callable[[], bool],
    *,
    health: LoopHealth,
    poll_seconds: float,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    keep_going: bool = False,
    after_pass: Callable[[], None] | None = None,
) -> None:
    """Call `one_pass()` (True: it changed something, go again at once; False: wait `poll_seconds`)
    and then `finished()` until that returns True, `stop` is set, or `timeout` seconds passed
    (TimeoutError). An error in either is the pass failing.

    A pass that lost the database is retried: every write is idempotent and every decision is
    re-read from the database, so the next pass resumes. Any other error is raised, unless
    `keep_going` (the service): then it is logged and the pass retried after a pause that grows while
    passes keep failing. `health` is updated after every pass, and then `after_pass()` runs."""
    deadline = None if timeout is None else time.monotonic() + timeout
    stop = stop or threading.Event()
    while not stop.is_set():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"not finished after {timeout} s")
        try:
            busy = one_pass()
            done = finished()
        except Exception as err:
            health.failed(err)
            pause = _failed_pass(err, health, poll_seconds, keep_going)
            if after_pass is not None:
                after_pass()
            stop.wait(pause)
            continue
        health.passed()
        if after_pass is not None:
            after_pass()
        if done:
            return
        if not busy:
            stop.wait(poll_seconds)


def _failed_pass(err: Exception, health: LoopHealth, poll_seconds: float, keep_going: bool) -> float:
    """Log a pass that raised (or raise it again); returns the pause before the next pass."""
    if isinstance(err, OperationalError | DBAPIError):  # a restarted or terminated database backend
        log.warning("database error in the scheduling loop, retrying: %s", str(err).splitlines()[0])
        return DATABASE_RETRY_SECONDS
    if not keep_going:
        raise err
    if health.failing_passes == 1:
        log.error("scheduling pass failed, retrying: %s", "".join(traceback.format_exception(err)))
    else:  # the traceback is above; one line each time it happens again
        log.error(
            "scheduling pass failed again (%d in a row): %s: %s",
            health.failing_passes,
            type(err).__name__,
            err,
        )
    return min(MAX_FAILURE_BACKOFF_SECONDS, poll_seconds * 2 ** (health.failing_passes - 1))
