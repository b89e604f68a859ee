"""API tokens: only a sha256 of each token is stored; the token itself is shown once at creation.

A token belongs to one owner (its `name`, the owner of the sweeps it submits) and has a role:
`user`, or `admin` (may give sweeps a priority, cancel any sweep, read every trial's traceback). It
is valid until revoked or past its optional expiry. An owner has one token at a time: revoking it
lets `create_token` issue a new one under the same name (rotation).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import TOKEN_ROLES, ApiToken, utcnow

PREFIX = "ssmb_"


@dataclass(frozen=True)
class Caller:
    """Who a valid token speaks for."""

    name: str
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class TokenInfo:
    """What `list_tokens` shows of a token (never the token or its hash)."""

    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """`active`, `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, name: str, *, role: str = "user", expires_at: datetime | None = None
) -> str:
    """A new token for `name`; returns the token, which is not stored anywhere.

    ValueError for an empty or over-long name, an unknown role, an expiry in the past, or a name
    whose token is still valid (revoke it first: an owner has one token at a time)."""
    if not name or len(name) > 200:
        raise ValueError("a token name is 1 to 200 characters")
    if role not in TOKEN_ROLES:
        raise ValueError(f"a token's role is one of {', '.join(TOKEN_ROLES)}, not {role!r}")
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise ValueError(f"the expiry {expires_at.isoformat()} is in the past")
    token = PREFIX + secrets.token_urlsafe(32)
    existing = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if existing is not None:
        info = _info(existing)
        if info.state(now) == "active":
            raise ValueError(f"a token named {name!r} exists already (revoke it first to replace it)")
        existing.token_hash, existing.role, existing.created_at = hash_token(token), role, now
        existing.expires_at, existing.revoked_at = expires_at, None
    else:
        session.add(ApiToken(name=name, token_hash=hash_token(token), role=role, expires_at=expires_at))
    try:
        session.flush()
    except IntegrityError as err:  # a concurrent creation of the same name
        raise ValueError(f"a token named {name!r} exists already") from err
    return token


def token_caller(session: Session, token: str) -> Caller | None:
    """Who a valid token (known, not revoked, not expired) speaks for; None otherwise."""
    row = session.execute(
        select(ApiToken.name, ApiToken.role).where(
            ApiToken.token_hash == hash_token(token),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
        )
    ).one_or_none()
    return None if row is None else Caller(name=row.name, role=row.role)


def token_owner(session: Session, token: str) -> str | None:
    """The name a valid token belongs to; None otherwise."""
    caller = token_caller(session, token)
    return None if caller is None else caller.name


def revoke_token(session: Session, name: str) -> bool:
    """Revoke `name`'s token at once; False if it has none or it is revoked already."""
    row = session.scalar(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)))
    if row is None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token's owner, role and dates, by name."""
    return [_info(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.name))]


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
