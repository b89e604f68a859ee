"""How `ssmbench serve` runs the app: uvicorn with the service's connection limits.

uvicorn bounds concurrent connections (`limit_concurrency`: a 503 above it), the size of a request
head (`h11_max_incomplete_event_size`) and idle keep-alive connections (`timeout_keep_alive`), but
not the time a client may take to send its headers: a connection trickling a request head would stay
open for good, and with a connection limit, a few thousand of them would lock everyone out.
`HeaderDeadlineProtocol` closes a connection that has not sent a complete request head within
`ServiceSettings.header_timeout_seconds` of connecting (or of its previous answer). The body's
deadline is the app's (`api.guards.BodyDeadlineMiddleware`). deploy/README.md has the matching
settings of a reverse proxy.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .deps import ServiceSettings


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is late."""

    header_timeout: ClassVar[float] = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request head arrived
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_deadline()  # the next request's head has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class with a deadline of `seconds` for each request head."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds})


def uvicorn_limits(settings: ServiceSettings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` / `uvicorn.Config` that apply the connection limits of
    `settings`: the request-head deadline, keep-alive, concurrent connections, request-head size."""
    return {
        "http": header_deadline_protocol(settings.header_timeout_seconds),
        "timeout_keep_alive": settings.keep_alive_seconds,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
