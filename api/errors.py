"""One error shape for every failure: `{"error": {"code", "message", "field"}}`.

`field` names what is wrong — a sweep spec's key path (`model.init[1]`), a query parameter
(`limit`), `Authorization` — or is null when nothing in the request is. FastAPI's own validation
errors, unknown routes (404), wrong methods (405), slow bodies (408) and refused writes
(`api.guards`), oversized bodies (413, `api.app`), quotas (429), an unreachable database (503) and
bugs (500, without a traceback) all answer in this shape. A 500's traceback is logged once, by the
server (uvicorn); this module's handler adds one line naming the request.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.errors import key_path

from .schemas import ErrorResponse

log = logging.getLogger("api")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


class ServiceError(Exception):
    """An error answer: `raise ServiceError(404, "sweep_not_found", "no sweep 7", "sweep_id")`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The error shape. `message` and `field` may quote what the client sent: text that is not valid
    Unicode (a lone surrogate from a JSON escape) is written as its escape, so the answer encodes."""
    return {"error": {"code": code, "message": _printable(message), "field": _printable(field)}}


def _printable(text: str | None) -> str | None:
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def not_found(kind: str, identifier: int, field: str) -> ServiceError:
    return ServiceError(404, f"{kind}_not_found", f"no {kind} with id {identifier}", field)


# --- OpenAPI: the error responses a route declares --------------------------------------------------

_EXAMPLES = {
    401: ("unauthorized", "this request needs `Authorization: Bearer <token>`", "Authorization"),
    403: ("forbidden", "only the owner of sweep 3 (or an admin) can cancel it", "sweep_id"),
    404: ("sweep_not_found", "no sweep with id 7", "sweep_id"),
    408: ("request_timeout", "the request body did not arrive within 30 s", None),
    409: ("sweep_finished", "sweep 3 is completed already", "sweep_id"),
    413: ("payload_too_large", "the request body is over the limit of 1048576 bytes", None),
    415: ("unsupported_media_type", "send the spec as application/json or application/yaml", "Content-Type"),
    429: ("too_many_open_sweeps", "you have 20 open sweeps, the most one owner may have", None),
    422: (
        "invalid_spec",
        "Input should be 'legs', 'inv', 'lin', 'real', 'rand' or 'ptd' (line 3)",
        "model.init[1]",
    ),
    503: ("database_unavailable", "the database is not reachable", None),
}
_DESCRIPTIONS = {
    401: "No valid bearer token.",
    403: "The token's owner may not do this.",
    404: "No such resource.",
    408: "The request body did not arrive in time.",
    409: "The resource is in a state that does not allow this.",
    413: "The request body is too large.",
    415: "The body's content type is not accepted.",
    422: "A parameter or the body is not valid; `field` names it.",
    429: "The owner is over a quota (open sweeps, pending trials); retry after `Retry-After` seconds.",
    503: "The database is not reachable.",
}


_RETRY_AFTER = {
    "headers": {
        "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
    }
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries of a route for these error statuses (422 and 503 are always added:
    every route validates its parameters and reads the database)."""
    wanted = sorted({*statuses, 422, 503})
    return {
        status: {
            "model": ErrorResponse,
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"example": error_body(*_EXAMPLES[status])}},
            **(_RETRY_AFTER if status == 429 else {}),
        }
        for status in wanted
    }


# --- handlers ---------------------------------------------------------------------------------------


def _location(loc: tuple | list) -> str | None:
    """("query", "limit") → "limit"; ("body", "model", 0) → "model[0]"."""
    return (
        key_path(loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc) or None
    )


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = _location(first.get("loc", ()))
    message = str(first.get("msg", "invalid request"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "validation_error", message, field)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /openapi.json"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        message = f"{request.method} is not allowed on {request.url.path}" + (
            f"; allowed: {allowed}" if allowed else ""
        )
    else:
        message = str(exc.detail)
    code = CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, message, None, exc.headers)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database error on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
    return error_response(503, "database_unavailable", "the database is not reachable; try again shortly")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # One line here; Starlette re-raises the exception after this answer and the server logs its
    # traceback (uvicorn: "Exception in ASGI application"), so logging it here too would double it.
    log.error("500 on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(500, "internal_error", "internal server error; the service log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(Exception, _internal_error)
