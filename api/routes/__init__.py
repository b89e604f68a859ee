"""One router per resource, each under /api/v1 (`api.deps.API_PREFIX`). Routes carry their full path,
so that the request metrics label them by their whole template."""

from . import baselines, health, leaderboard, reports, sweeps, trials

ROUTERS = (sweeps.router, trials.router, leaderboard.router, baselines.router, health.router, reports.router)


def read_paths(sweep_id: int, trial_id: int) -> list[str]:
    """The main JSON reads, for a sweep and one of its trials: what bench/api_load.py measures and
    tests/api/test_api_query_counts.py bounds in SQL statements."""
    return [
        "/api/v1/health",
        "/api/v1/baselines",
        "/api/v1/leaderboard?task=listops",
        "/api/v1/sweeps",
        f"/api/v1/sweeps/{sweep_id}",
        f"/api/v1/sweeps/{sweep_id}/trials",
        f"/api/v1/trials/{trial_id}",
    ]
