"""The leaderboard: `orchestrator.leaderboard.leaderboard` over HTTP, with its filters.

Many clients polling one board is the common load (dashboards, `ssmbench submit --wait`), and a
board is the same until a result is added. So each filter set's board is kept serialized, tagged
with the newest result's id: a request costs one index lookup (`max(results.id)`) while nothing
changed, and one recomputation — by one thread, the others wait for it — when something did. A
cached board is also recomputed after `leaderboard_cache_seconds` at the latest, which bounds what
the id cannot see (a result committed out of id order, deleted sweeps, edited baselines).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, select

from orchestrator.leaderboard import leaderboard
from orchestrator.models import Result, Sweep
from ssm.config import InitName, LayerName, ReparamName

from ..deps import API_PREFIX, MAX_ID, ReadAccess, SessionDep
from ..errors import error_responses, not_found
from ..schemas import Leaderboard

router = APIRouter(prefix=f"{API_PREFIX}/leaderboard", tags=["leaderboard"], dependencies=[ReadAccess])


class BoardCache:
    """Serialized boards per filter set, valid while the stamp (newest result id) is unchanged."""

    def __init__(self, max_age: float, size: int = 256):
        self.max_age, self.size = max_age, size
        self._boards: OrderedDict[tuple, tuple[Any, float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[tuple, threading.Lock] = {}

    def _fresh(self, key: tuple, stamp: Any) -> bytes | None:
        with self._lock:
            entry = self._boards.get(key)
            if entry is None or entry[0] != stamp or time.monotonic() - entry[1] > self.max_age:
                return None
            self._boards.move_to_end(key)
            return entry[2]

    def get(self, key: tuple, stamp: Any, compute: Callable[[], bytes]) -> bytes:
        body = self._fresh(key, stamp)
        if body is not None:
            return body
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:  # one computation per key; the others take its result
            body = self._fresh(key, stamp)
            if body is not None:
                return body
            body = compute()
            with self._lock:
                self._boards[key] = (stamp, time.monotonic(), body)
                self._boards.move_to_end(key)
                while len(self._boards) > self.size:
                    self._boards.popitem(last=False)
                self._computing.pop(key, None)
            return body


@router.get(
    "",
    response_model=Leaderboard,
    summary="Get the leaderboard",
    responses=error_responses(401, 404),
)
def get_leaderboard(
    request: Request,
    session: SessionDep,
    task: Annotated[str | None, Query(max_length=64, description="only this task's rows")] = None,
    sweep: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this sweep's results")] = None,
    layer: Annotated[LayerName | None, Query(description="only this SSM layer")] = None,
    init: Annotated[InitName | None, Query(description="only this eigenvalue initialization")] = None,
    reparam: Annotated[ReparamName | None, Query(description="only this reparameterization")] = None,
    train_eigenvalues: Annotated[
        bool | None, Query(description="true: trained eigenvalues; false: frozen (reservoir)")
    ] = None,
    baselines: Annotated[bool, Query(description="include the published baselines")] = True,
) -> Response:
    """Mean ± std of the test metric (a fraction) at the best validation epoch, per task and
    configuration group, ranked within each task, with the number of seeds; the LRA averages (with
    and without Path-X); and the published baselines as labelled reference rows."""
    if sweep is not None and session.get(Sweep, sweep) is None:
        raise not_found("sweep", sweep, "sweep")
    filters = {
        "sweep_id": sweep,
        "task": task,
        "layer": layer,
        "init": init,
        "reparam": reparam,
        "train_eigenvalues": train_eigenvalues,
        "include_baselines": baselines,
    }
    stamp = session.scalar(select(func.max(Result.id)))

    def compute() -> bytes:
        return leaderboard(session, **filters).model_dump_json().encode()

    cache: BoardCache = request.app.state.leaderboard_cache
    body = cache.get(tuple(filters.values()), stamp, compute)
    return Response(content=body, media_type="application/json")
