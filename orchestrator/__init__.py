"""orchestrator: sweep specifications, planning, Ray scheduling, Optuna search, SQL persistence
and leaderboard queries (DESIGN.md). Imports ssm, never api. Not built yet: see the open issues."""
