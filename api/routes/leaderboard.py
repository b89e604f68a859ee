"""The leaderboard: `orchestrator.leaderboard.leaderboard` over HTTP, with its filters, a page at a
time (`offset`, `limit`: the whole board at 10⁵ results is about a megabyte).

Many clients polling one board is the common load (dashboards, `ssmbench submit --wait`), and a
board is the same until a result is added. So each page of each filter set is kept serialized,
tagged with the newest result's id: a request costs one index lookup (`max(results.id)`) while
nothing changed, and one recomputation — by one thread, the others wait for it — when something did.
A cached page older than `leaderboard_cache_seconds` is recomputed too, which bounds what the id
cannot see (a result committed out of id order, deleted sweeps, edited baselines) — in the
background, the old page answering meanwhile: at 10⁵ results a recomputation on a loaded machine
takes longer than that age, and every client waiting for it each time was the leaderboard's p99.

Each answer carries an `ETag` (a digest of its body): a client that sends it back in
`If-None-Match` gets `304 Not Modified` and no body while the page is unchanged. The ETag is weak
(`W/"…"`) because the service may send the same page gzip-compressed or not.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple, TypeVar

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, select

from orchestrator.leaderboard import BoardInputs, LeaderboardFilters, board_from_inputs, board_inputs
from orchestrator.models import Result, Sweep
from ssm.config import InitName, LayerName, ReparamName

from ..deps import API_PREFIX, MAX_ID, ReadAccess, SessionDep, SettingsDep, page_limit
from ..errors import error_responses, not_found
from ..schemas import Leaderboard

router = APIRouter(prefix=f"{API_PREFIX}/leaderboard", tags=["leaderboard"], dependencies=[ReadAccess])


T = TypeVar("T")
log = logging.getLogger(__name__)
GZIP_MINIMUM_BYTES = 1024  # as api.app's GZipMiddleware: smaller answers go as they are


class BoardCache:
    """Computed answers per key (filters and page), valid while the stamp (newest result id) is
    unchanged and for at most `max_age` seconds."""

    def __init__(self, max_age: float, size: int = 256):
        self.max_age, self.size = max_age, size
        self._boards: OrderedDict[tuple, tuple[Any, float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[tuple, threading.Lock] = {}
        self._refreshing: set[tuple] = set()

    def fresh(self, key: tuple, stamp: Any) -> Any | None:
        """The answer kept for `key` if it is still valid for `stamp`; None otherwise (never waits
        for a computation: the event loop calls this)."""
        answer, expired = self.kept(key, stamp)
        return None if expired else answer

    def kept(self, key: tuple, stamp: Any) -> tuple[Any | None, bool]:
        """The answer kept for `key` at `stamp` (None if there is none or the stamp moved on) and
        whether it is older than `max_age`. Never waits for a computation: the event loop calls it."""
        with self._lock:
            entry = self._boards.get(key)
            if entry is None or entry[0] != stamp:
                return None, False
            self._boards.move_to_end(key)
            return entry[2], time.monotonic() - entry[1] > self.max_age

    def previous(self, key: tuple) -> Any | None:
        """The answer kept for `key` whatever its stamp and age (None if there is none)."""
        with self._lock:
            entry = self._boards.get(key)
            return None if entry is None else entry[2]

    def refresh(self, key: tuple, stamp: Any, compute: Callable[[], Any]) -> None:
        """Recompute `key`'s answer in a thread of its own, unless one is at it already; until it is
        done, `kept` keeps answering the previous one. For an answer that is only too old: nobody
        waits for a recomputation that may take longer than `max_age` itself."""
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run() -> None:
            try:
                self._keep(key, stamp, compute())
            except Exception:  # the kept answer stays; the next expired request tries again
                log.exception("leaderboard: recomputing a kept page failed")
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=run, name="leaderboard-refresh", daemon=True).start()

    def _keep(self, key: tuple, stamp: Any, answer: Any) -> None:
        with self._lock:
            self._boards[key] = (stamp, time.monotonic(), answer)
            self._boards.move_to_end(key)
            while len(self._boards) > self.size:
                self._boards.popitem(last=False)

    def get(self, key: tuple, stamp: Any, compute: Callable[[], T]) -> T:
        answer = self.fresh(key, stamp)
        if answer is not None:
            return answer
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:  # one computation per key; the others take its result
            answer = self.fresh(key, stamp)
            if answer is not None:
                return answer
            answer = compute()
            self._keep(key, stamp, answer)
            with self._lock:
                self._computing.pop(key, None)
            return answer


class Page(NamedTuple):
    """One serialized page of a board, the same gzip-compressed, its entity tag, and a digest of the
    rows it was computed from (`orchestrator.leaderboard.board_inputs`; kept as a digest: a whole
    board's rows per kept page would be megabytes)."""

    body: bytes
    gzipped: bytes
    etag: str
    inputs: str | None = None


def _digest(inputs: BoardInputs) -> str:
    # repr of str, int, bool, None and float (shortest round-trip form) tells unequal values apart
    return hashlib.blake2b(repr(inputs).encode(), digest_size=16).hexdigest()


def _serialized(board: Leaderboard, inputs: str | None = None) -> Page:
    # Compressed once per computation, not per request: a 500-row page is ~150 KB of JSON, and
    # compressing it again for every client that sends `Accept-Encoding: gzip` cost more than all
    # the rest of the request (GZipMiddleware leaves a response that has a Content-Encoding alone).
    body = board.model_dump_json().encode()
    etag = f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
    return Page(body, gzip.compress(body, compresslevel=6, mtime=0), etag, inputs)


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether a client takes gzip, by the rule GZipMiddleware applies to every other answer."""
    return "gzip" in (accept_encoding or "")


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
    # The connection back to the pool before this request may wait for a board another one
    # computes in a session of its own: with as many waiting as the pool holds, that one would wait
    # for a connection until the pool's timeout, and they all with it.
    session.close()

    cache: BoardCache = request.app.state.leaderboard_cache
    key = (*filters.values(), offset, limit)

    def compute() -> Page:  # a session of its own: a refresh outlives the request
        with request.app.state.sessions() as own:
            rows = board_inputs(own, LeaderboardFilters(**filters))
            digest = _digest(rows)
            # The same rows as the page kept (an expired page, or a result that does not count):
            # the same board, so not computed again — the labels, ranks and models of a whole board
            # hold the GIL for longer than reading its rows, and every request waits meanwhile.
            kept = cache.previous(key)
            if kept is not None and kept.inputs == digest:
                return kept
            board = board_from_inputs(own, rows, offset=offset, limit=limit)
            return _serialized(board, digest)

    page, expired = cache.kept(key, stamp)
    if page is None:
        page = cache.get(key, stamp, compute)  # computes, or waits for the request computing it
    elif expired:
        cache.refresh(key, stamp, compute)
    # no-cache: a client may keep the page, but asks (If-None-Match) before each use
    headers = {"ETag": page.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if _not_modified(request.headers.get("if-none-match"), page.etag):
        return Response(status_code=304, headers=headers)
    if len(page.body) >= GZIP_MINIMUM_BYTES and _accepts_gzip(request.headers.get("accept-encoding")):
        headers["Content-Encoding"] = "gzip"
        return Response(content=page.gzipped, media_type="application/json", headers=headers)
    return Response(content=page.body, media_type="application/json", headers=headers)
