"""`ssmbench ui`: the web pages over a local database, without a scheduler (nothing runs trials)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DatabaseOption, console


def ui_command(
    db: DatabaseOption = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the pages in the default browser.")
    ] = True,
) -> None:
    """Look at sweeps, trials and the leaderboard in a browser: the pages of `ssmbench serve`,
    read-only, over a local database (the one `ssmbench run` writes), with no scheduler and no Ray.

    The database must be migrated (`ssmbench run` and `ssmbench db upgrade` do it). Stop with Ctrl-C.
    """
    import threading
    import webbrowser

    import uvicorn

    from orchestrator.settings import masked_url

    from ..server import uvicorn_limits
    from .serve import service_app, service_settings

    overrides: dict = {"scheduler": False}
    if db is not None:
        overrides["database_url"] = db
    settings = service_settings(overrides)
    app = service_app(settings, not_migrated_code=2)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    console.print(f"ssmbench pages over {masked_url(settings.database_url)} at {url} (Ctrl-C stops)")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_limits(settings))
    server = uvicorn.Server(config)
    if open_browser:

        def open_when_started() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.1)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_started, daemon=True).start()
    server.run()
