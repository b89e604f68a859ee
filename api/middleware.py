"""The shape every middleware of the service has (`api.guards`, `api.metrics`, `api.read_cache`, the
body limit in `api.app`): a plain ASGI class, since Starlette's BaseHTTPMiddleware costs more than
the fast routes themselves."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware:
    """Acts on the requests it `handles` (by default every HTTP request) in `handle`; everything else
    (the lifespan, other requests) goes to the app untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    def handles(self, scope: Scope) -> bool:
        return scope["type"] == "http"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.handles(scope):
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
