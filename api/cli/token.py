"""`ssmbench token create|list|revoke`: API tokens for writes (only their sha256 is stored)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from .common import DatabaseOption, console, fail, json_option, print_json

token_app = typer.Typer(help="API tokens for the service's writes (submit, cancel).", no_args_is_help=True)

EXPIRY_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


@contextmanager
def _token_session(db: str | None) -> Iterator[Any]:
    """A transaction on the migrated database at `db`; every database failure is one line."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from orchestrator.db import (
        DatabaseNotMigrated,
        make_engine,
        require_migrated,
        session_factory,
        transaction,
    )
    from orchestrator.settings import Settings, masked_url

    url = db or Settings().database_url
    engine = None
    try:
        engine = make_engine(url)
        require_migrated(engine)
        with transaction(session_factory(engine)) as session:
            yield session
    except DatabaseNotMigrated as err:
        fail(str(err), code=1)
    except ArgumentError as err:
        fail(f"--db {masked_url(url)}: {err}")
    except SQLAlchemyError as err:
        fail(f"cannot use the database {masked_url(url)}: {str(err).splitlines()[0]}", code=1)
    finally:
        if engine is not None:
            engine.dispose()


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """`30d`, `12h`, `90m` from now, or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    unit = EXPIRY_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        return now + int(text[:-1]) * unit
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--expires {text!r}: give a duration (30d, 12h, 90m) or an ISO date") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@token_app.command("create")
def token_create(
    name: Annotated[
        str, typer.Option("--name", help="Who the token is for; sweeps it submits are owned by this name.")
    ],
    db: DatabaseOption = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="An admin token: may set a sweep's priority, cancel any sweep, read every traceback.",
        ),
    ] = False,
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Expiry: a duration from now (30d, 12h, 90m) or an ISO date (UTC)."),
    ] = None,
    json_output: Annotated[bool, json_option('{"name", "token", ...} as JSON')] = False,
) -> None:
    """Create a token and print it once: only its hash is stored, so keep it now.

    Example: ssmbench token create --name alice --expires 30d
    """
    from orchestrator.tokens import create_token

    role = "admin" if admin else "user"
    try:
        expires_at = None if expires is None else parse_expiry(expires)
    except ValueError as err:
        fail(str(err))
    token = _in_session(db, lambda session: create_token(session, name, role=role, expires_at=expires_at))
    if json_output:
        print_json({"name": name, "token": token, "role": role, "expires_at": expires_at})
        return
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    console.print(f"{role} token for [bold]{name}[/]{until} (shown once; only its hash is stored):")
    console.print(token, highlight=False, soft_wrap=True)
    console.print(f"use it with: export SSMBENCH_TOKEN={token}", highlight=False, soft_wrap=True, style="dim")


@token_app.command("list")
def token_list(
    db: DatabaseOption = None,
    json_output: Annotated[bool, json_option("the tokens as a JSON list")] = False,
) -> None:
    """Every token's owner, role, state and dates (never the tokens themselves).

    Example: ssmbench token list --db sqlite:///ssmbench.db
    """
    from rich.table import Table

    from orchestrator.tokens import list_tokens

    tokens = _in_session(db, list_tokens)
    if json_output:
        print_json([{**vars(t), "state": t.state()} for t in tokens])
        return
    table = Table("name", "role", "state", "created", "expires", "revoked", title="API tokens")
    for t in tokens:
        dates = (f"{d:%Y-%m-%d %H:%M}" if d else "" for d in (t.created_at, t.expires_at, t.revoked_at))
        table.add_row(t.name, t.role, t.state(), *dates)
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The owner whose token to revoke.")],
    db: DatabaseOption = None,
) -> None:
    """Revoke NAME's token at once (its next request is a 401); `token create --name NAME` issues a new one.

    Example: ssmbench token revoke alice
    """
    from orchestrator.tokens import revoke_token

    if not _in_session(db, lambda session: revoke_token(session, name)):
        fail(f"no valid token named {name!r} (see `ssmbench token list`)")
    console.print(f"revoked the token of [bold]{name}[/]")


def _in_session(db: str | None, work: Callable[[Any], Any]) -> Any:
    """`work(session)` in one transaction; a ValueError from it (bad input) is one line, exit 2."""
    with _token_session(db) as session:
        try:
            return work(session)
        except ValueError as err:
            fail(str(err))
