"""`ssmbench token create --name NAME`: an API token for writes (only its sha256 is stored)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import console, fail, print_json

token_app = typer.Typer(help="API tokens for the service's writes (submit, cancel).", no_args_is_help=True)


@token_app.command("create")
def token_create(
    name: Annotated[
        str, typer.Option("--name", help="Who the token is for; sweeps it submits are owned by this name.")
    ],
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default $SSMBENCH_DATABASE_URL).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help='Print {"name", "token"} as JSON.')] = False,
) -> None:
    """Create a token and print it once: only its hash is stored, so keep it now."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from orchestrator.db import (
        DatabaseNotMigrated,
        make_engine,
        require_migrated,
        session_factory,
        transaction,
    )
    from orchestrator.settings import Settings
    from orchestrator.tokens import create_token

    url = db or Settings().database_url
    engine = None
    try:
        engine = make_engine(url)
        require_migrated(engine)
        with transaction(session_factory(engine)) as session:
            token = create_token(session, name)
    except ValueError as err:  # a taken or empty name
        fail(str(err))
    except DatabaseNotMigrated as err:
        fail(str(err), code=1)
    except ArgumentError as err:
        fail(f"--db {url}: {err}")
    except SQLAlchemyError as err:
        fail(f"cannot use the database {url}: {str(err).splitlines()[0]}", code=1)
    finally:
        if engine is not None:
            engine.dispose()
    if json_output:
        print_json({"name": name, "token": token})
        return
    console.print(f"token for [bold]{name}[/] (shown once; only its hash is stored):")
    console.print(token, highlight=False, soft_wrap=True)
    console.print(f"use it with: export SSMBENCH_TOKEN={token}", highlight=False, soft_wrap=True, style="dim")
