"""The leaderboard: which configuration wins on which task, by how much, over how many seeds — next
to the published baselines (DESIGN.md "Contracts").

    from orchestrator.leaderboard import leaderboard
    board = leaderboard(session, task="listops")   # a Leaderboard (frozen pydantic model)

- `models`: the shape of a board (`Leaderboard`, `LeaderboardRow`, `AverageRow`,
  `LeaderboardFilters`), shared by the query, the API's response model and the HTTP client;
- `query`: `leaderboard(session, **filters)` — ranks, labels, LRA averages, baselines;
- `labels`: how a configuration group is named on the board;
- `aggregates`: n, mean and std in SQL, and the running sums the result writer keeps
  (`record_result_aggregate`, `rebuild_leaderboard_aggregates`) — the only part `orchestrator.store`
  imports.
"""

from .aggregates import (
    aggregates_from_cells,
    aggregates_from_results,
    rebuild_leaderboard_aggregates,
    record_result_aggregate,
)
from .models import AverageRow, Leaderboard, LeaderboardFilters, LeaderboardRow, SweepIds
from .query import LRA_TASKS, BoardInputs, board_from_inputs, board_inputs, leaderboard

__all__ = [
    "LRA_TASKS",
    "AverageRow",
    "BoardInputs",
    "Leaderboard",
    "LeaderboardFilters",
    "LeaderboardRow",
    "SweepIds",
    "aggregates_from_cells",
    "aggregates_from_results",
    "board_from_inputs",
    "board_inputs",
    "leaderboard",
    "rebuild_leaderboard_aggregates",
    "record_result_aggregate",
]
