"""The web pages: read-only, server-rendered HTML at the root of the service (issue 16).

    /                 sweeps, newest first, with progress by trial state and the best trial so far
    /sweeps/{id}      spec, live progress (static/progress.js polls /sweeps/{id}/progress.json),
                      the sweep's leaderboard with the published baselines, its trials and failures
    /trials/{id}      config, state and attempts, epoch metrics, diagnostics, the Fourier-noise table
    /leaderboard      every sweep's board with filters, the LRA averages, the baselines
    /studies          the built-in studies and their recorded runs: verdict tables and figures
    …/figures/NAME.svg  a sweep's, trial's or study run's figures (`page_figures`)
    /login, /logout   the read token in a cookie, when the service has `SSMBENCH_READ_AUTH=true`

Jinja2 templates (autoescaped) in `templates/`, CSS and the one script in `static/`: no build step,
nothing loaded from elsewhere. Every page carries a Content-Security-Policy that allows only this
service's own scripts, styles and images (no inline script). Figures come from the one figure
module shared with `ssmbench report` (`orchestrator/report/figures.py`), served as SVG images.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import page_figures, studies
from .auth import LoginRequired, redirect_to_login
from .rendering import STATIC_DIR
from .routes import router


def install_pages(app: FastAPI) -> None:
    """Add the pages, their static files (`/static`) and the login redirect to `app`."""
    app.state.page_figures = page_figures.FigureCache()  # the figures drawn for pages, as SVG
    app.include_router(router)
    app.include_router(studies.router)
    app.include_router(page_figures.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(LoginRequired, redirect_to_login)


__all__ = ["install_pages"]
