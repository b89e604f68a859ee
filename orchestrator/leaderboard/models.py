"""The leaderboard's shape: one set of frozen pydantic models, built by the query
(`orchestrator.leaderboard.leaderboard`), served as the API's `response_model` and decoded by the
client (`api.client.Client.leaderboard`) — so a board from the service and one computed locally are
the same objects, render alike and compare equal.

Numbers are fractions (accuracy 0.873, not 87.3). JSON has no NaN or infinity, and a degenerate
group can produce them (an r² of −inf, a variance of inf − inf): every float field turns a non-finite
value into None at construction, so the models always serialize.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import from_json


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


FiniteFloat = Annotated[float | None, AfterValidator(_finite_or_none)]
"""A float, or None where the value is missing, NaN or infinite."""


def _parse_sweep_ids(value: Any) -> Any:
    """`leaderboard_cells.sweep_ids` holds the ids as ",3,17,"; pydantic-core's JSON parser reads them
    fastest (an unfiltered board at 10⁶ results lists about a hundred sweeps on each of thousands of
    rows: twice as fast as `json.loads`, four times `map(int, split)`)."""
    if isinstance(value, str):
        return sorted(from_json(f"[{value.strip(',')}]"))
    return value


SweepIds = Annotated[list[int], BeforeValidator(_parse_sweep_ids)]
"""The sorted ids of the sweeps behind a row: a list of ints, also accepted as the ",3,17," text of
`leaderboard_cells`."""


class _Frozen(BaseModel):
    # every field is in every answer, defaults included: the documented schema says so
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, as plain Python (`model_dump(mode="json")`)."""
        return self.model_dump(mode="json")


class LeaderboardRow(_Frozen):
    """One task × configuration group, or one published baseline on one task.

    Baselines (`is_baseline`): label = the published model, mean = the published accuracy (None where
    the paper reports a failure, i.e. chance); std, n_seeds, rank, group_key and the model fields None;
    `source` = the paper and table.
    """

    task: str
    label: str = Field(description="layer · init · reparam · trained/frozen, then the fields that differ")
    mean: FiniteFloat = Field(description="mean test metric over seeds, a fraction")
    std: FiniteFloat = Field(description="sample std over seeds (null with one seed)")
    n_seeds: int | None = Field(description="results counted (baselines: null)")
    rank: int | None = Field(
        description="1 for the best mean within the task, equal means sharing a rank (1, 1, 3); "
        "null for baselines and for a mean that is not a number"
    )
    metric: str = Field(description="`accuracy` or `r2`")
    group_key: str | None = Field(
        description="the configuration group (model + optim, without task and seed)"
    )
    layer: str | None
    init: str | None
    reparam: str | None
    train_eigenvalues: bool | None
    sweep_ids: SweepIds = Field(default_factory=list, description="the sweeps with results here, sorted")
    is_baseline: bool = False
    source: str | None = Field(default=None, description="the paper and table of a baseline")


class AverageRow(_Frozen):
    """The LRA average of one configuration group (or one published baseline): the mean over tasks of
    the per-task mean accuracy, as a fraction.

    For a baseline, `lra_average` is the paper's six-task average where one is published (a failed
    Path-X counted as chance, 50%, REFERENCE.md §6), else the mean of its six tasks counted that way;
    `lra_average_without_pathx` the published five-task average where one is published, else the mean
    of its five other tasks; `tasks_present` the tasks it reports (failed ones included).
    """

    label: str
    lra_average: FiniteFloat = Field(description="over the six LRA tasks; null unless all six are present")
    lra_average_without_pathx: FiniteFloat = Field(
        description="over the five LRA tasks other than Path-X; null unless those five are present"
    )
    tasks_present: list[str] = Field(description="the LRA tasks the group has results on")
    group_key: str | None = None
    is_baseline: bool = False
    source: str | None = None


class LeaderboardFilters(_Frozen):
    """The arguments the board was computed with (None: not filtered)."""

    sweep_id: int | None = None
    task: str | None = None
    layer: str | None = None
    init: str | None = None
    reparam: str | None = None
    train_eigenvalues: bool | None = None
    include_baselines: bool = True


class Leaderboard(_Frozen):
    """Rows sorted by task (LRA tasks in their published order, then the others alphabetically), then
    rank; each task's baselines follow its rows, best first. Averages: the groups by LRA average (then
    by the average without Path-X), then the baselines the same way.

    A board may be one page of its rows: `rows` are those from `offset` on, at most `limit` of them
    (None: all), out of `total_rows`; `averages` are always the whole board's."""

    model_config = ConfigDict(  # merged with _Frozen's
        json_schema_extra={
            "examples": [
                {
                    "rows": [
                        {
                            "task": "listops",
                            "label": "s4d · inv · exp · trained",
                            "mean": 0.5912,
                            "std": 0.004,
                            "n_seeds": 3,
                            "rank": 1,
                            "metric": "accuracy",
                            "group_key": "9c0e…",
                            "layer": "s4d",
                            "init": "inv",
                            "reparam": "exp",
                            "train_eigenvalues": True,
                            "sweep_ids": [3],
                            "is_baseline": False,
                            "source": None,
                        }
                    ],
                    "averages": [],
                    "filters": {
                        "sweep_id": 3,
                        "task": None,
                        "layer": None,
                        "init": None,
                        "reparam": None,
                        "train_eigenvalues": None,
                        "include_baselines": True,
                    },
                    "total_rows": 1,
                    "offset": 0,
                    "limit": 500,
                }
            ]
        },
    )

    rows: list[LeaderboardRow]
    averages: list[AverageRow]
    filters: LeaderboardFilters
    total_rows: int = Field(ge=0, description="rows on the whole board, over all pages")
    offset: int = Field(0, ge=0, description="rows of the whole board before this page's")
    limit: int | None = Field(None, ge=0, description="the page size asked for (null: to the end)")


__all__ = ["AverageRow", "FiniteFloat", "Leaderboard", "LeaderboardFilters", "LeaderboardRow", "SweepIds"]
