"""API tokens: only a sha256 of each token is stored; the token itself is shown once at creation."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import ApiToken

PREFIX = "ssmb_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str) -> str:
    """A new token for `name` (unique); returns the token, which is not stored anywhere."""
    if not name or len(name) > 200:
        raise ValueError("a token name is 1 to 200 characters")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise ValueError(f"a token named {name!r} exists already")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token)))
    try:
        session.flush()
    except IntegrityError as err:  # a concurrent creation of the same name
        raise ValueError(f"a token named {name!r} exists already") from err
    return token


def token_owner(session: Session, token: str) -> str | None:
    """The name a valid, unrevoked token belongs to; None otherwise."""
    return session.scalar(
        select(ApiToken.name).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked.is_(False))
    )
