"""The leaderboard: `orchestrator.leaderboard.leaderboard` over HTTP, with its filters, a page at a
time (`offset`, `limit`: the whole board at 10⁵ results is about a megabyte).

Many clients polling one board is the common load (dashboards, `ssmbench submit --wait`), and a
board is the same until a result is added. So each page of each filter set is kept serialized,
tagged with the newest result's id: a request costs one index lookup (`max(results.id)`) while
nothing changed, and one recomputation — by one thread, the others wait for it — when something did.
A cached page is also recomputed after `leaderboard_cache_seconds` at the latest, which bounds what
the id cannot see (a result committed out of id order, deleted sweeps, edited baselines).

Each answer carries an `ETag` (a digest of its body): a client that sends it back in
`If-None-Match` gets `304 Not Modified` and no body while the page is unchanged. The ETag is weak
(`W/"…"`) because the service may send the same page gzip-compressed or not.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple, TypeVar

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, select

from orchestrator.leaderboard import leaderboard
from orchestrator.models import Result, Sweep
from ssm.config import InitName, LayerName, ReparamName

from ..deps import API_PREFIX, MAX_ID, ReadAccess, SessionDep, SettingsDep, page_limit
from ..errors import error_responses, not_found
from ..schemas import Leaderboard

router = APIRouter(prefix=f"{API_PREFIX}/leaderboard", tags=["leaderboard"], dependencies=[ReadAccess])


T = TypeVar("T")


class BoardCache:
    """Computed answers per key (filters and page), valid while the stamp (newest result id) is
    unchanged and for at most `max_age` seconds."""

    def __init__(self, max_age: float, size: int = 256):
        self.max_age, self.size = max_age, size
        self._boards: OrderedDict[tuple, tuple[Any, float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[tuple, threading.Lock] = {}

    def _fresh(self, key: tuple, stamp: Any) -> Any | None:
        with self._lock:
            entry = self._boards.get(key)
            if entry is None or entry[0] != stamp or time.monotonic() - entry[1] > self.max_age:
                return None
            self._boards.move_to_end(key)
            return entry[2]

    def get(self, key: tuple, stamp: Any, compute: Callable[[], T]) -> T:
        answer = self._fresh(key, stamp)
        if answer is not None:
            return answer
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:  # one computation per key; the others take its result
            answer = self._fresh(key, stamp)
            if answer is not None:
                return answer
            answer = compute()
            with self._lock:
                self._boards[key] = (stamp, time.monotonic(), answer)
                self._boards.move_to_end(key)
                while len(self._boards) > self.size:
                    self._boards.popitem(last=False)
                self._computing.pop(key, None)
            return answer


class Page(NamedTuple):
    """One serialized page of a board and its entity tag."""

    body: bytes
    etag: str


def _serialized(board: Leaderboard) -> Page:
    body = board.model_dump_json().encode()
    return Page(body, f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"')


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names this ETag (or is `*`), compared weakly (RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in tags}


@router.get(
    "",
    response_model=Leaderboard,
    summary="Get the leaderboard",
    responses={
        304: {"description": "Not Modified: the page is the one whose `ETag` was sent in `If-None-Match`"},
        **error_responses(401, 404),
    },
)
def get_leaderboard(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    task: Annotated[str | None, Query(max_length=64, description="only this task's rows")] = None,
    sweep: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this sweep's results")] = None,
    layer: Annotated[LayerName | None, Query(description="only this SSM layer")] = None,
    init: Annotated[InitName | None, Query(description="only this eigenvalue initialization")] = None,
    reparam: Annotated[ReparamName | None, Query(description="only this reparameterization")] = None,
    train_eigenvalues: Annotated[
        bool | None, Query(description="true: trained eigenvalues; false: frozen (reservoir)")
    ] = None,
    baselines: Annotated[bool, Query(description="include the published baselines")] = True,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip")] = 0,
    limit: Annotated[
        int | None,
        Query(ge=1, description="rows per page (default and most: the service's max page size)"),
    ] = None,
) -> Response:
    """Mean ± std of the test metric (a fraction) at the best validation epoch, per task and
    configuration group, ranked within each task, with the number of seeds; the LRA averages (with
    and without Path-X); and the published baselines as labelled reference rows. The rows come a page
    at a time (`total_rows` counts them all); the averages are the whole board's on every page."""
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
    limit = page_limit(settings, settings.max_page_size if limit is None else limit)
    stamp = session.scalar(select(func.max(Result.id)))

    def compute() -> Page:
        return _serialized(leaderboard(session, **filters, offset=offset, limit=limit))

    cache: BoardCache = request.app.state.leaderboard_cache
    page = cache.get((*filters.values(), offset, limit), stamp, compute)
    # no-cache: a client may keep the page, but asks (If-None-Match) before each use
    headers = {"ETag": page.etag, "Cache-Control": "no-cache"}
    if _not_modified(request.headers.get("if-none-match"), page.etag):
        return Response(status_code=304, headers=headers)
    return Response(content=page.body, media_type="application/json", headers=headers)
