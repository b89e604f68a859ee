"""Who is looking at a page: the token a login form stored in a cookie.

A browser cannot send `Authorization: Bearer` on a link it follows, so the pages read the token from
the cookie `ssmbench_token` (HttpOnly: no script reads it; SameSite=Strict: no other site's page
sends it; Secure when the service is reached over HTTPS). With `SSMBENCH_READ_AUTH=true` a page
without a valid token redirects to `/login?next=<the page>`; without it the pages are open, and the
cookie only lets a sweep's owner see whole tracebacks (as the API does for a bearer token).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from orchestrator.tokens import Caller, token_caller

TOKEN_COOKIE = "ssmbench_token"
COOKIE_MAX_AGE_SECONDS = 7 * 24 * 3600


class LoginRequired(Exception):
    """Raised by a page that needs a token it did not get; answered by a redirect to the form."""


def page_viewer(request: Request, session: Session) -> Caller | None:
    """The caller of the cookie's token; None without a valid one where reads are open.

    Raises `LoginRequired` where reads need a token (`SSMBENCH_READ_AUTH=true`) and none is valid."""
    token = request.cookies.get(TOKEN_COOKIE, "").strip()
    caller = token_caller(session, token) if token else None
    if caller is None and request.app.state.settings.read_auth:
        raise LoginRequired()
    return caller


def safe_next(target: str | None) -> str:
    """A page of this service to go to after logging in: a path, never another site (`//evil`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def redirect_to_login(request: Request, _exc: Exception) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def store_token(response, token: str, secure: bool) -> None:
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


def forget_token(response, secure: bool) -> None:
    response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="strict", secure=secure, path="/")
