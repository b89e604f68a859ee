"""A short-lived in-process cache of anonymous API reads, with entity tags (issue 18 §2).

Dashboards and `ssmbench submit --wait` poll the same few reads, and each read through the database
costs a session, a thread-pool hop and its queries — several times what the service spends on a
request that touches no database. So `ReadCacheMiddleware` keeps the answer of an anonymous
`GET /api/v1/...` (no `Authorization` header, reads open: `SSMBENCH_READ_AUTH` off) for at most
`read_cache_seconds` and answers identical requests from memory.

What a kept answer may miss, and for how long:
- a write made through this process (any route, the scheduler thread, the CLI in-process) drops every
  kept answer when it commits (`WRITES`: SQLAlchemy's engine events count the commits that wrote), and
  an answer computed while such a write committed is not kept;
- a write by another process (a Ray worker finishing a trial, another replica, `ssmbench token
  revoke`) shows at the latest `read_cache_seconds` later: that is the staleness bound.
An entry is refreshed in the background once it is half that age and a request asks for it, so
clients polling a read do not wait for its recomputation; a request never gets an older answer.

What is kept: 200 answers of GET routes under /api/v1 up to `MAX_BODY_BYTES`, per path and query
string, computed without the client's `Accept-Encoding` and `If-None-Match` and kept both plain and
gzip-compressed (once; this middleware answers gzip itself for these reads). Every kept answer carries
a weak `ETag` (a digest of its body, or the route's own) and `Cache-Control: no-cache`; a request
whose `If-None-Match` names it gets `304 Not Modified`. A request with a token is not cached — what it
may see depends on who it is (api.deps.visible_error) — and goes to the routes as it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

from sqlalchemy import Engine, event
from sqlalchemy.pool import Pool
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import API_PREFIX
from .middleware import HttpMiddleware

MAX_BODY_BYTES = 1_048_576  # a trial's diagnostics (~10 MB) are not kept: they are read rarely
MAX_ENTRIES = 512
GZIP_MINIMUM_BYTES = 1024  # as api.app's GZipMiddleware
_STRIPPED = frozenset({b"accept-encoding", b"if-none-match"})


class WriteCounter:
    """Commits in this process that wrote, counted by engine events on every SQLAlchemy engine."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def bump(self) -> None:
        with self._lock:
            self.value += 1


WRITES = WriteCounter()


def _is_write(statement: str) -> bool:
    # The scheduler renews its lease several times a second; no read shows the lease.
    head = statement.lstrip()[:6].upper()
    return head not in ("SELECT", "PRAGMA") and "scheduler_lease" not in statement


@event.listens_for(Engine, "before_cursor_execute")
def _note_write(connection, _cursor, statement, _parameters, _context, _executemany) -> None:
    if _is_write(statement):
        connection.info["ssmbench_wrote"] = True


@event.listens_for(Engine, "commit")
def _count_commit(connection) -> None:
    # This event comes just before the database commits: a read that starts now may still see the
    # old rows and be kept as current, so the count moves again once the commit is done (at the
    # connection's next transaction or its return to the pool, whichever comes first).
    if connection.info.pop("ssmbench_wrote", False):
        connection.info["ssmbench_committed"] = True
        WRITES.bump()


@event.listens_for(Engine, "begin")
def _count_committed(connection) -> None:
    if connection.info.pop("ssmbench_committed", False):
        WRITES.bump()


@event.listens_for(Pool, "checkin")
def _count_committed_at_checkin(_dbapi_connection, record) -> None:
    if record is not None and record.info.pop("ssmbench_committed", False):
        WRITES.bump()


@event.listens_for(Engine, "rollback")
def _forget_rollback(connection) -> None:
    connection.info.pop("ssmbench_wrote", None)


class Entry(NamedTuple):
    """One answer of the routes: its headers (without content-length), bodies, tag and route, and
    whether it may be kept (a 200 of at most MAX_BODY_BYTES that no write raced)."""

    keep: bool
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    gzipped: bytes | None
    etag: bytes
    route: Any
    born: float
    writes: int


def _etag_of(headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    for name, value in headers:
        if name == b"etag":
            return value
    return b'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def _not_modified(if_none_match: bytes | None, etag: bytes) -> bool:
    """Whether `If-None-Match` names `etag` (or is `*`), compared weakly (RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")}
    return b"*" in tags or etag.removeprefix(b"W/") in tags


def _compressible(headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    return len(body) >= GZIP_MINIMUM_BYTES and all(n != b"content-encoding" for n, _ in headers)


class ReadCacheMiddleware(HttpMiddleware):
    """Anonymous GET /api/v1 answers kept for at most `seconds` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, seconds: float, read_auth: bool):
        super().__init__(app)
        self.seconds, self.read_auth = seconds, read_auth
        self._entries: OrderedDict[tuple[str, bytes], Entry] = OrderedDict()
        self._computing: dict[tuple[str, bytes], asyncio.Future] = {}
        self._refreshes: set[asyncio.Task] = set()  # referenced until done (the loop keeps weak refs)

    def handles(self, scope: Scope) -> bool:
        """Whether the answer may be kept: an anonymous GET under /api/v1, when reads need no token."""
        if not super().handles(scope) or scope["method"] != "GET" or self.read_auth:
            return False
        if not scope["path"].startswith(API_PREFIX + "/"):
            return False
        return all(name != b"authorization" for name, _ in scope["headers"])

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = (scope["path"], scope["query_string"])
        entry = self._kept(key)
        if entry is None:
            entry = await self._compute_once(key, scope)
            if entry is None:  # the computation it waited for failed or predates a write: again
                entry = await self._compute_once(key, scope)
            if entry is None:
                await self.app(scope, receive, send)
                return
        elif time.monotonic() - entry.born > self.seconds / 2 and key not in self._computing:
            self._computing[key] = asyncio.get_running_loop().create_future()
            task = asyncio.get_running_loop().create_task(self._refresh_quietly(key, scope))
            self._refreshes.add(task)
            task.add_done_callback(self._refreshes.discard)
        await self._answer(scope, send, entry)

    def _kept(self, key: tuple[str, bytes]) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.writes != WRITES.value or time.monotonic() - entry.born > self.seconds:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    async def _compute_once(self, key: tuple[str, bytes], scope: Scope) -> Entry | None:
        """The answer for `key`, computed by the first request that misses; the others wait for it."""
        waiting = self._computing.get(key)
        if waiting is not None:
            seen = WRITES.value
            entry = await asyncio.shield(waiting)
            # begun before a write this request may know of (it committed before the request came):
            # the request computes its own answer
            return entry if entry is not None and entry.writes == seen else None
        self._computing[key] = asyncio.get_running_loop().create_future()
        return await self._refresh(key, scope)

    async def _refresh_quietly(self, key: tuple[str, bytes], scope: Scope) -> None:
        with contextlib.suppress(Exception):  # the entry expires; the next request computes it again
            await self._refresh(key, scope)

    async def _refresh(self, key: tuple[str, bytes], scope: Scope) -> Entry | None:
        future = self._computing[key]
        entry = None
        try:
            entry = await self._run(scope)
            if entry.keep:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > MAX_ENTRIES:
                    self._entries.popitem(last=False)
        finally:
            del self._computing[key]
            future.set_result(entry)
        return entry

    async def _run(self, scope: Scope) -> Entry:
        """The routes' answer to `scope`, asked without the client's encoding and validators."""
        writes, born = WRITES.value, time.monotonic()
        inner = {**scope, "headers": [(n, v) for n, v in scope["headers"] if n not in _STRIPPED]}
        start: Message = {}
        chunks: list[bytes] = []
        asked = False

        async def receive() -> Message:
            nonlocal asked
            if asked:
                return {"type": "http.disconnect"}
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(inner, receive, capture)
        body, status = b"".join(chunks), start["status"]
        headers = [(n, v) for n, v in start.get("headers", []) if n != b"content-length"]
        if (
            status != 200
            or len(body) > MAX_BODY_BYTES
            or any(n in (b"set-cookie", b"content-encoding") for n, _ in headers)
            or WRITES.value != writes  # a write committed meanwhile: this answer may predate it
        ):  # answered as it is (to this request and those that waited for it), not kept
            etag = next((v for n, v in headers if n == b"etag"), b"")  # the route's own, if any
            return Entry(False, status, headers, body, None, etag, inner.get("route"), born, writes)
        gzipped = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MINIMUM_BYTES else None
        etag = _etag_of(headers, body)
        headers = [(n, v) for n, v in headers if n not in (b"etag", b"cache-control", b"vary")]
        headers += [(b"etag", etag), (b"cache-control", b"no-cache"), (b"vary", b"Accept-Encoding")]
        return Entry(True, 200, headers, body, gzipped, etag, inner.get("route"), born, writes)

    async def _answer(self, scope: Scope, send: Send, entry: Entry) -> None:
        if entry.route is not None:
            scope["route"] = entry.route  # the request metrics label by it
        request_headers = dict(scope["headers"])
        headers = list(entry.headers)
        validator = request_headers.get(b"if-none-match")
        if entry.etag and entry.status == 200 and _not_modified(validator, entry.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body, gzipped = entry.body, entry.gzipped
        takes_gzip = b"gzip" in request_headers.get(b"accept-encoding", b"")
        if takes_gzip and not entry.keep and _compressible(headers, body):  # as GZipMiddleware would
            gzipped = await run_in_threadpool(gzip.compress, body, 6, mtime=0)  # ~10 MB: off the loop
            headers.append((b"vary", b"Accept-Encoding"))
        if gzipped is not None and takes_gzip:
            body = gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": entry.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
