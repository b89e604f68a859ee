"""The leaderboard: which configuration wins on which task, by how much, over how many seeds — next
to the published baselines (DESIGN.md "Contracts", issue 6 §5).

    from orchestrator.leaderboard import leaderboard
    board = leaderboard(session, task="listops")
    board.rows        # LeaderboardRow per task × configuration group, then the baselines of the task
    board.averages    # AverageRow per configuration group with LRA results, then the baselines'
    board.to_dict()   # the JSON document

A *configuration group* is `Trial.group_key` (model + optim, without task, seed and diagnostics), so
one group on several tasks is one configuration, and the LRA average is taken over its tasks. What
counts and how n, mean and std are summed: `orchestrator.leaderboard.aggregates`. Here: the ranks
within each task, the labels, the LRA averages and the published baselines.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Baseline
from .aggregates import Aggregate, aggregates_from_cells, aggregates_from_results
from .labels import group_labels
from .models import AverageRow, Leaderboard, LeaderboardFilters, LeaderboardRow

# The Long Range Arena in its published order (REFERENCE.md §6). Equal to `ssm.data.LRA_TASKS`
# (a test checks it); spelled out so that reading a leaderboard does not import torch.
LRA_TASKS: tuple[str, ...] = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
PATHX = "pathx"
LRA_TASKS_WITHOUT_PATHX: tuple[str, ...] = tuple(t for t in LRA_TASKS if t != PATHX)
# A model that fails Path-X is at chance on it (REFERENCE.md §6); the six-task average counts 50%.
PATHX_CHANCE = 0.5
# The baselines' rows that hold a paper's own averages rather than a task (REFERENCE.md §7).
PUBLISHED_AVERAGE = "average"
PUBLISHED_AVERAGE_WITHOUT_PATHX = "average_without_pathx"
# Means closer than this share a rank: sums of the same numbers in another order differ by rounding.
TIE_TOLERANCE = 1e-9


class BoardInputs(NamedTuple):
    """What a board is computed from: its filters and the rows read for them. Equal inputs make the
    same board (its labels come from the groups' trial configs, which do not change). Reading them is
    a few statements; computing the board from them (labels, ranks, averages, the rows' models) is
    most of `leaderboard`'s time, which a caller holding an earlier board of equal inputs can skip."""

    filters: LeaderboardFilters
    aggregates: list[Aggregate]
    lra_means: list[tuple[str, str, float]] | None  # None: the aggregates' own (no task filter)
    baselines: list[tuple[str, str, float | None, str]] | None  # (model, task, accuracy %, source)


def leaderboard(
    session: Session, *, offset: int = 0, limit: int | None = None, **filters: Any
) -> Leaderboard:
    """The leaderboard of every completed trial, or of those matching the filters (all must match):
    `LeaderboardFilters`' fields by name (another name raises TypeError; a value pydantic cannot read
    as the field's type, its ValidationError).

    `sweep_id` keeps one sweep's results (reused ones included); `train_eigenvalues` False keeps the
    frozen-eigenvalue (reservoir) trials. The averages belong to the configuration groups on the
    board and are taken over all their LRA tasks under the other filters — a `task` filter picks the
    rows, not the tasks averaged.

    Baseline rows (with `include_baselines`): with a `task` filter, that task's published results
    (none for a synthetic task); without one, those of each LRA task that has rows on the board, or of
    all six when the board has no rows at all (a fresh database shows the published table) — but
    never for a task a `sweep_id`'s board has no results on (its trials failed, or it never ran it). Baseline
    averages come with any baseline row or any group average.

    `offset` and `limit` pick a page of the rows (`limit` None: to the end); `total_rows` counts them
    all. The averages are the whole board's on every page.
    """
    _check_page(offset, limit)  # before any statement
    unknown = filters.keys() - LeaderboardFilters.model_fields.keys()
    if unknown:
        raise TypeError(f"leaderboard() has no filter {', '.join(sorted(unknown))}")
    inputs = board_inputs(session, LeaderboardFilters(**filters))
    return board_from_inputs(session, inputs, offset=offset, limit=limit)


def board_inputs(session: Session, filters: LeaderboardFilters) -> BoardInputs:
    """The rows `filters`' board is computed from (`leaderboard` above)."""
    conditions = {
        "layer": filters.layer,
        "init": filters.init,
        "reparam": filters.reparam,
        "train_eigenvalues": filters.train_eigenvalues,
    }
    sweep_id, task = filters.sweep_id, filters.task
    source = aggregates_from_cells if sweep_id is None else partial(aggregates_from_results, sweep_id)
    aggregates = [Aggregate._make(row) for row in session.execute(source(task=task, **conditions))]
    lra_means = None
    if task is not None:  # the groups' other tasks, for their averages
        every_task = source(**conditions).subquery()
        lra_means = [
            tuple(row)
            for row in session.execute(
                select(every_task.c.group_key, every_task.c.task, every_task.c.mean).where(
                    every_task.c.task.in_(LRA_TASKS)
                )
            )
        ]
    baselines = None
    if filters.include_baselines:
        columns = (Baseline.model, Baseline.task, Baseline.test_accuracy, Baseline.source)
        baselines = [tuple(row) for row in session.execute(select(*columns).order_by(Baseline.id))]
    return BoardInputs(filters, aggregates, lra_means, baselines)


def board_from_inputs(
    session: Session, inputs: BoardInputs, *, offset: int = 0, limit: int | None = None
) -> Leaderboard:
    """The board of `inputs` (`board_inputs`); the session reads the groups' labels."""
    _check_page(offset, limit)
    filters, aggregates = inputs.filters, inputs.aggregates
    task, sweep_id = filters.task, filters.sweep_id
    trial_ids = {a.group_key: a.trial_id for a in aggregates if a.trial_id is not None}
    labels = group_labels(session, aggregates, trial_ids)
    by_task = _ranked_rows(aggregates, labels)

    if inputs.lra_means is None:
        lra_means = [(a.group_key, a.task, a.mean) for a in aggregates if a.task in LRA_TASKS]
    else:
        lra_means = inputs.lra_means
    averages = _group_averages(lra_means, labels)
    if inputs.baselines is not None:
        if task is not None:
            baseline_tasks = {task}
        elif by_task or sweep_id is not None:  # a sweep's board: the tasks it has results on, if any
            baseline_tasks = set(by_task)
        else:
            baseline_tasks = set(LRA_TASKS)
        baseline_rows, baseline_averages = _baselines(inputs.baselines, baseline_tasks)
        for row in baseline_rows:
            by_task.setdefault(row.task, []).append(row)
        if baseline_rows or averages:
            averages += baseline_averages
    rows = [row for name in sorted(by_task, key=_task_order) for row in by_task[name]]
    page = rows[offset:] if limit is None else rows[offset : offset + limit]
    return Leaderboard(
        rows=page, averages=averages, filters=filters, total_rows=len(rows), offset=offset, limit=limit
    )


def _check_page(offset: int, limit: int | None) -> None:
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError(f"offset and limit must not be negative (got offset={offset}, limit={limit})")


# --- rows, ranks, averages, baselines ------------------------------------------------------------------


def _task_order(task: str) -> tuple:
    return (LRA_TASKS.index(task), "") if task in LRA_TASKS else (len(LRA_TASKS), task)


def _ranked_rows(
    aggregates: Iterable[Aggregate], labels: Mapping[str, str]
) -> dict[str, list[LeaderboardRow]]:
    """Our rows per task, best first. A mean that is not a finite number (a degenerate r²) has no
    rank and comes last; the row shows it as None."""
    aggregates_by_task: dict[str, list[Aggregate]] = defaultdict(list)
    for aggregate in aggregates:
        aggregates_by_task[aggregate.task].append(aggregate)
    by_task = {}
    for task, aggregates_of_task in aggregates_by_task.items():
        ordered = sorted(aggregates_of_task, key=lambda a: (*_descending(a.mean), labels[a.group_key]))
        rows = by_task[task] = []
        rank, previous = 0, math.inf
        for position, a in enumerate(ordered, start=1):
            if previous - a.mean > TIE_TOLERANCE:
                rank = position
            previous = a.mean
            rows.append(
                LeaderboardRow(
                    task=a.task,
                    label=labels[a.group_key],
                    mean=a.mean,
                    std=a.std,
                    n_seeds=a.n,
                    rank=rank if math.isfinite(a.mean) else None,
                    metric=a.metric,
                    group_key=a.group_key,
                    layer=a.layer,
                    init=a.init,
                    reparam=a.reparam,
                    train_eigenvalues=a.train_eigenvalues,
                    sweep_ids=a.sweep_ids,
                )
            )
    return by_task


def _group_averages(
    lra_means: Iterable[tuple[str, str, float]], labels: Mapping[str, str]
) -> list[AverageRow]:
    """LRA averages, from (group_key, task, mean) of LRA tasks, of the groups on the board (labelled)."""
    means: dict[str, dict[str, float]] = defaultdict(dict)
    for group_key, task, mean in lra_means:
        if group_key in labels:
            means[group_key][task] = mean
    averages = []
    for group_key, by_task in means.items():
        averages.append(
            AverageRow(
                label=labels[group_key],
                lra_average=_mean_over(by_task, LRA_TASKS),
                lra_average_without_pathx=_mean_over(by_task, LRA_TASKS_WITHOUT_PATHX),
                tasks_present=[t for t in LRA_TASKS if t in by_task],
                group_key=group_key,
            )
        )
    return sorted(averages, key=_average_order)


def _mean_over(by_task: Mapping[str, float], tasks: Sequence[str]) -> float | None:
    if not all(t in by_task for t in tasks):
        return None
    return sum(by_task[t] for t in tasks) / len(tasks)


def _descending(value: float | None) -> tuple[bool, float]:
    """A sort key: the largest number first, then None, NaN and infinities."""
    finite = value is not None and math.isfinite(value)
    return (not finite, -value if finite else 0.0)


def _average_order(average: AverageRow) -> tuple:
    return (*_descending(average.lra_average), *_descending(average.lra_average_without_pathx), average.label)


def _baselines(
    baselines: Iterable[tuple[str, str, float | None, str]], tasks: set[str]
) -> tuple[list[LeaderboardRow], list[AverageRow]]:
    """Baseline rows of `tasks` (best first per task) and every baseline's averages. Accuracies are
    stored in percent; tasks `average` and `average_without_pathx` hold the paper's own averages
    (over six tasks, and over the five without Path-X), which win over the ones computed here."""
    published: dict[str, dict[str, float | None]] = {}
    sources: dict[tuple[str, str], str] = {}
    for model, task, test_accuracy, source in baselines:  # (model, task, accuracy %, source) by id
        accuracy = None if test_accuracy is None else test_accuracy / 100
        published.setdefault(model, {})[task] = accuracy
        sources[model, task] = source

    rows = []
    for model, by_task in published.items():
        for task in tasks & by_task.keys() & set(LRA_TASKS):
            rows.append(
                LeaderboardRow(
                    task=task,
                    label=model,
                    mean=by_task[task],
                    std=None,
                    n_seeds=None,
                    rank=None,
                    metric="accuracy",
                    group_key=None,
                    layer=None,
                    init=None,
                    reparam=None,
                    train_eigenvalues=None,
                    is_baseline=True,
                    source=sources[model, task],
                )
            )
    rows.sort(key=lambda row: (*_descending(row.mean), row.label))

    averages = []
    for model, by_task in published.items():
        with_chance = {t: (PATHX_CHANCE if t == PATHX and v is None else v) for t, v in by_task.items()}
        lra_average = by_task.get(PUBLISHED_AVERAGE)
        if lra_average is None and all(with_chance.get(t) is not None for t in LRA_TASKS):
            lra_average = _mean_over(with_chance, LRA_TASKS)
        without_pathx = by_task.get(PUBLISHED_AVERAGE_WITHOUT_PATHX)
        if without_pathx is None:
            without_pathx = _mean_over(
                {t: v for t, v in by_task.items() if v is not None}, LRA_TASKS_WITHOUT_PATHX
            )
        # the averages' own sources where published, else the tasks' (one paper: one source)
        cited = [
            sources[model, t] for t in (PUBLISHED_AVERAGE, PUBLISHED_AVERAGE_WITHOUT_PATHX) if t in by_task
        ]
        cited = cited or [sources[model, t] for t in by_task]
        averages.append(
            AverageRow(
                label=model,
                lra_average=lra_average,
                lra_average_without_pathx=without_pathx,
                tasks_present=[t for t in LRA_TASKS if t in by_task],
                is_baseline=True,
                source="; ".join(dict.fromkeys(cited)),
            )
        )
    return rows, sorted(averages, key=_average_order)


__all__ = ["LRA_TASKS", "BoardInputs", "board_from_inputs", "board_inputs", "leaderboard"]
