"""One router per resource, each under /api/v1 (`api.deps.API_PREFIX`). Routes carry their full path,
so that the request metrics label them by their whole template."""

from . import baselines, health, leaderboard, reports, sweeps, trials

ROUTERS = (
    sweeps.router, trials.router, leaderboard.router, baselines.router, health.router, reports.router
)
