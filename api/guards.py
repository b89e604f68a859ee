"""ASGI middleware that refuses a bad request before anything is spent on it.

In the order a request meets them (`api.app.create_app` registers them):
- `RejectNulMiddleware`: a NUL character in the path or a query parameter is a 422 naming the
  parameter — PostgreSQL's text cannot hold one, and no route has a use for it;
- `WriteAuthMiddleware`: a write (any method but GET/HEAD/OPTIONS on an existing route) needs a valid
  bearer token, checked from the headers alone, before a byte of the body is read; a write to no
  route is answered (404/405) without reading its body either;
- `BodyDeadlineMiddleware`: a body that has not fully arrived `seconds` after the headers is a 408,
  so a client trickling a body cannot hold a request (and its buffer) open.
Refusals close the connection (`Connection: close`): whatever the client still sends is not read.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.tokens import Caller

from .deps import authenticate
from .errors import ServiceError, error_response
from .middleware import HttpMiddleware

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The web pages' forms (api.pages): the login form posts the token in its body and checks it itself;
# logging out needs none. Every other write needs a bearer token.
FORM_PATHS = frozenset({"/login", "/logout"})
CLOSE = {"Connection": "close"}


class RejectNulMiddleware(HttpMiddleware):
    """422 for a NUL character (`%00`) in the path or in any query parameter's name or value."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = nul_field(scope)
        if field is not None:
            message = f"{field} contains a NUL character (%00), which no parameter accepts"
            await error_response(422, "validation_error", message, field)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def nul_field(scope: Scope) -> str | None:
    """The query parameter (or `path`) of the request that holds a NUL character; None if none does."""
    if "\x00" in scope["path"]:
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or "query"
    return None


class WriteAuthMiddleware(HttpMiddleware):
    """401 (or 503 when the database does not answer) for a write without a valid token, from its
    headers; the caller it finds is left in `scope["state"]["caller"]` for the route's dependency.
    The routes and the database sessions are the app's (`scope["app"]`, `app.state.sessions`)."""

    def handles(self, scope: Scope) -> bool:
        return (
            super().handles(scope) and scope["method"] not in SAFE_METHODS and scope["path"] not in FORM_PATHS
        )

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = scope["app"]
        if not _routed(service.router, scope):  # the router answers 404/405; it has no use for the body
            await self.app(scope, _no_body, send)
            return
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        try:
            caller = await run_in_threadpool(_authenticate, service.state.sessions, authorization)
        except ServiceError as err:
            headers = {**(err.headers or {}), **CLOSE}
            await error_response(err.status, err.code, err.message, err.field, headers)(scope, receive, send)
            return
        except OperationalError:
            message = "the database is not reachable; try again shortly"
            await error_response(503, "database_unavailable", message, None, CLOSE)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


def _routed(router: Router, scope: Scope) -> bool:
    return any(route.matches(scope)[0] is Match.FULL for route in router.routes)


def _authenticate(sessions: sessionmaker[Session], authorization: str | None) -> Caller:
    with sessions() as session:
        return authenticate(session, authorization)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class BodyDeadlineMiddleware(HttpMiddleware):
    """408 when a request body is still arriving `seconds` after the request began."""

    def __init__(self, app: ASGIApp, seconds: float):
        super().__init__(app)
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = time.monotonic() + self.seconds
        timed_out = started = body_done = False

        async def receive_by_deadline() -> Message:
            nonlocal timed_out, body_done
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                timed_out = True  # to the app, the client is gone: it stops reading and answers nothing
                return {"type": "http.disconnect"}
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, receive_by_deadline, send_noting_start)
        if timed_out and not started:
            message = (
                f"the request body did not arrive within {self.seconds:g} s (SSMBENCH_BODY_TIMEOUT_SECONDS)"
            )
            await error_response(408, "request_timeout", message, None, CLOSE)(scope, receive, send)
