"""The leaderboard: which configuration wins on which task, by how much, over how many seeds — next
to the published baselines (DESIGN.md "Contracts", issue 6 §5).

    from orchestrator.leaderboard import leaderboard
    board = leaderboard(session, task="listops")
    board.rows        # LeaderboardRow per task × configuration group, then the baselines of the task
    board.averages    # AverageRow per configuration group with LRA results, then the baselines'
    board.to_dict()   # JSON

What counts: trials in state "completed" whose result has status "completed" and a test metric (the
test metric at the best validation epoch, a fraction). Pruned, failed, diverged, cancelled, pending
and running trials do not. A *configuration group* is `Trial.group_key` (model + optim, without task,
seed and diagnostics), so one group on several tasks is one configuration, and the LRA average is
taken over its tasks.

Where the numbers come from: n, Σx and Σx² per task × group are summed in SQL (GROUP BY), and
mean = Σx/n, std = sqrt((Σx² − (Σx)²/n)/(n − 1)) (the sample std; None for one seed) in the same
statement. Without a sweep filter they are read from `leaderboard_cells` — running sums over every
sweep that the result writer keeps with `record_result_aggregate` — because a GROUP BY over all
results takes seconds at 10⁶ results on PostgreSQL (bench/leaderboard.py). With a sweep
filter they are summed from that sweep's results and trials directly (an index lookup). A result
reused from an earlier trial (`Trial.reused_from`) counts once: under its own sweep it is one of
that sweep's results; across sweeps it is the original's result, already counted.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import Float, Select, case, cast, func, literal, select, text
from sqlalchemy.orm import Session

from .db import insert_ignoring_conflicts
from .models import Baseline, LeaderboardCell, LeaderboardEntry, Result, Trial

# The Long Range Arena in its published order (REFERENCE.md §6). Equal to `ssm.data.LRA_TASKS`
# (a test checks it); spelled out so that reading a leaderboard does not import torch.
LRA_TASKS: tuple[str, ...] = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
PATHX = "pathx"
LRA_TASKS_WITHOUT_PATHX: tuple[str, ...] = tuple(t for t in LRA_TASKS if t != PATHX)
# A model that fails Path-X is at chance on it (REFERENCE.md §6); the six-task average counts 50%.
PATHX_CHANCE = 0.5
# Means closer than this share a rank: sums of the same numbers in another order differ by rounding.
TIE_TOLERANCE = 1e-9


class SweepIds(Sequence[int]):
    """The sorted ids of the sweeps behind a row: a read-only list, parsed from the cell's ",3,17,"
    text when first read: at 10⁶ results an unfiltered board lists about a hundred sweeps on each of
    thousands of rows, and reading them all costs more than the rest of the board (bench/leaderboard.py).
    Equal to a list or tuple of the same ids; JSON and pydantic see a list."""

    __slots__ = ("_ids", "_text")

    def __init__(self, ids: Iterable[int] | str = ()):
        self._text = ids if isinstance(ids, str) else None
        self._ids = None if self._text is not None else sorted(ids)

    @property
    def _list(self) -> list[int]:
        if self._ids is None:
            self._ids = sorted(json.loads(f"[{self._text.strip(',')}]"))  # json's C parser
        return self._ids

    def __getitem__(self, index):
        return self._list[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._list)

    def __len__(self) -> int:
        return len(self._list)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SweepIds, list, tuple)):
            return self._list == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._list))

    def __repr__(self) -> str:
        return repr(self._list)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """In pydantic models and FastAPI responses: validated and serialized as a list of ints."""
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            cls, handler(list[int]), serialization=core_schema.plain_serializer_function_ser_schema(list)
        )


@dataclass(frozen=True, slots=True)
class LeaderboardRow:
    """One task × configuration group (or one published baseline on one task).

    `mean` and `std` are fractions (accuracy 0.873, not 87.3), `std` the sample std over seeds (None
    with one seed), `n_seeds` the number of results, `rank` 1 for the best mean within the task, equal
    means sharing a rank (1, 1, 3). Baselines (`is_baseline`): label = the published model, mean = the
    published accuracy (None where the paper reports a failure, i.e. chance), std, n_seeds, rank,
    group_key and the model fields None, `source` = the paper and table.
    """

    task: str
    label: str
    mean: float | None
    std: float | None
    n_seeds: int | None
    rank: int | None
    metric: str
    group_key: str | None
    layer: str | None
    init: str | None
    reparam: str | None
    train_eigenvalues: bool | None
    sweep_ids: SweepIds = field(default_factory=SweepIds)
    is_baseline: bool = False
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)


@dataclass(frozen=True, slots=True)
class AverageRow:
    """The LRA average of one configuration group (or one published baseline): the mean over tasks of
    the per-task mean accuracy, as a fraction.

    `lra_average` is over the six LRA tasks and is None unless all six are present;
    `lra_average_without_pathx` over the five others, None unless those five are present;
    `tasks_present` the LRA tasks the group has results on. For a baseline, `lra_average` is the
    paper's own average where it publishes one, else the mean of its six tasks — a failed Path-X
    counted as chance, 50% (REFERENCE.md §6) — and `tasks_present` the tasks it reports (failed ones
    included).
    """

    label: str
    lra_average: float | None
    lra_average_without_pathx: float | None
    tasks_present: list[str]
    group_key: str | None = None
    is_baseline: bool = False
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)


def _as_dict(row: LeaderboardRow | AverageRow) -> dict[str, Any]:
    """The fields as a JSON-ready dict (`dataclasses.asdict` without its deep copy: a board has
    thousands of rows)."""
    return {name: _plain(getattr(row, name)) for name in row.__slots__}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, SweepIds)) else value


@dataclass(frozen=True, slots=True)
class Leaderboard:
    """Rows sorted by task (LRA tasks in their published order, then the others alphabetically), then
    rank; each task's baselines follow its rows, best first. Averages: the groups by LRA average (then
    by the average without Path-X), then the baselines the same way. `filters`: the arguments used."""

    rows: list[LeaderboardRow]
    averages: list[AverageRow]
    filters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [row.to_dict() for row in self.rows],
            "averages": [average.to_dict() for average in self.averages],
            "filters": dict(self.filters),
        }


def leaderboard(
    session: Session,
    *,
    sweep_id: int | None = None,
    task: str | None = None,
    layer: str | None = None,
    init: str | None = None,
    reparam: str | None = None,
    train_eigenvalues: bool | None = None,
    include_baselines: bool = True,
) -> Leaderboard:
    """The leaderboard of every completed trial, or of those matching the filters (all must match).

    `sweep_id` keeps one sweep's results (reused ones included); `train_eigenvalues` False keeps the
    frozen-eigenvalue (reservoir) trials. The averages belong to the configuration groups on the
    board and are taken over all their LRA tasks under the other filters — a `task` filter picks the
    rows, not the tasks averaged.

    Baseline rows (with `include_baselines`): with a `task` filter, that task's published results
    (none for a synthetic task); without one, those of each LRA task that has rows on the board, or of
    all six when the board has no rows at all (a fresh database shows the published table). Baseline
    averages come with any baseline row or any group average.
    """
    filters = {
        "sweep_id": sweep_id,
        "task": task,
        "layer": layer,
        "init": init,
        "reparam": reparam,
        "train_eigenvalues": train_eigenvalues,
        "include_baselines": include_baselines,
    }
    conditions = {"layer": layer, "init": init, "reparam": reparam, "train_eigenvalues": train_eigenvalues}
    source = aggregates_from_cells if sweep_id is None else partial(aggregates_from_results, sweep_id)
    aggregates = [Aggregate._make(row) for row in session.execute(source(task=task, **conditions))]
    labels = _group_labels(session, aggregates)
    by_task = _ranked_rows(aggregates, labels)

    if task is None:
        lra_means = [(a.group_key, a.task, a.mean) for a in aggregates if a.task in LRA_TASKS]
    else:  # the groups' other tasks, for their averages
        every_task = source(**conditions).subquery()
        lra_means = session.execute(
            select(every_task.c.group_key, every_task.c.task, every_task.c.mean).where(
                every_task.c.task.in_(LRA_TASKS)
            )
        ).all()
    averages = _group_averages(lra_means, labels)
    if include_baselines:
        if task is not None:
            baseline_tasks = {task}
        elif by_task:
            baseline_tasks = set(by_task)
        else:
            baseline_tasks = set(LRA_TASKS)
        baseline_rows, baseline_averages = _baselines(session, baseline_tasks)
        for row in baseline_rows:
            by_task.setdefault(row.task, []).append(row)
        if baseline_rows or averages:
            averages += baseline_averages
    rows = [row for name in sorted(by_task, key=_task_order) for row in by_task[name]]
    return Leaderboard(rows=rows, averages=averages, filters=filters)


# --- the aggregation, in SQL ------------------------------------------------------------------------


class Aggregate(NamedTuple):
    """One row of `aggregates_from_cells` / `aggregates_from_results`."""

    task: str
    group_key: str
    layer: str
    init: str
    reparam: str
    train_eigenvalues: bool
    metric: str
    n: int
    mean: float
    std: float | None
    sweep_ids: str  # ",3,17,"
    trial_id: int | None  # a trial of the group, whose config names it


def _mean_and_std(n, sum_x, sum_xx) -> tuple:
    """SQL expressions for the mean and the sample std from n, Σx, Σx² (expressions or columns).
    The variance is clamped at 0: equal values can leave a rounding residue of either sign."""
    variance = (sum_xx - sum_x * sum_x / n) / (n - 1)
    std = case((n > 1, func.sqrt(case((variance > 0, variance), else_=0.0))), else_=None)
    return cast(sum_x, Float) / n, std


def _group_filters(columns, conditions: Mapping[str, Any]) -> list:
    return [getattr(columns, name) == value for name, value in conditions.items() if value is not None]


def aggregates_from_cells(**conditions: Any) -> Select:
    """n, mean, std per task × group over every sweep, from the running sums in `leaderboard_cells`.
    `conditions`: task, layer, init, reparam, train_eigenvalues (None: any)."""
    cell = LeaderboardCell
    mean, std = _mean_and_std(cell.n, cell.sum_x, cell.sum_xx)
    return select(
        cell.task,
        cell.group_key,
        cell.layer,
        cell.init,
        cell.reparam,
        cell.train_eigenvalues,
        cell.metric,
        cell.n,
        mean.label("mean"),
        std.label("std"),
        cell.sweep_ids,
        cell.trial_id,
    ).where(cell.n > 0, *_group_filters(cell, conditions))


def aggregates_from_results(sweep_id: int | None = None, **conditions: Any) -> Select:
    """The same columns as `aggregates_from_cells`, summed from results ⋈ trials (GROUP BY): of one
    sweep, its reused results included; or, with `sweep_id` None, of every result row (reused copies
    too) — the plain query that `leaderboard_cells` replaces, kept for the benchmark."""
    x = Result.test_metric
    n = func.count(x)
    mean, std = _mean_and_std(n, func.sum(x), func.sum(x * x))
    group = (Trial.task, Trial.group_key, Trial.layer, Trial.init, Trial.reparam, Trial.train_eigenvalues)
    sweep_ids = literal(f",{sweep_id}," if sweep_id is not None else "")
    statement = (
        select(
            *group,
            func.min(Result.metric).label("metric"),
            n.label("n"),
            mean.label("mean"),
            std.label("std"),
            sweep_ids.label("sweep_ids"),
            func.min(Trial.id).label("trial_id"),
        )
        .join(Result, Result.trial_id == Trial.id)
        .where(*_counted(), *_group_filters(Trial, conditions))
        .group_by(*group)
    )
    if sweep_id is not None:
        statement = statement.where(Trial.sweep_id == sweep_id)
    return statement


def _counted() -> tuple:
    """The rows that count: a completed trial with a completed result that has a test metric."""
    return (Trial.state == "completed", Result.status == "completed", Result.test_metric.is_not(None))


# --- keeping leaderboard_cells ----------------------------------------------------------------------


def record_result_aggregate(session: Session, trial_id: int) -> bool:
    """Add a finished trial's result to the leaderboard's running sums, in the caller's transaction.

    Call it after the trial's final state and its result are written (the result writer, and the
    planner when it stores a reused result), before the commit. Idempotent: a trial is added at most
    once, however often this is called. Returns True when the trial was added now; False when it was
    already, or does not count (not completed, no completed result, no test metric). A reused result
    (`reused_from` set) adds the trial's sweep to the cell's `sweep_ids` but not its value: the
    original is counted already.
    """
    trial = session.execute(
        select(
            Trial.id,
            Trial.sweep_id,
            Trial.task,
            Trial.group_key,
            Trial.layer,
            Trial.init,
            Trial.reparam,
            Trial.train_eigenvalues,
            Trial.reused_from,
            Result.metric,
            Result.test_metric,
        )
        .join(Result, Result.trial_id == Trial.id)
        .where(Trial.id == trial_id, *_counted())
    ).one_or_none()
    if trial is None:
        return False
    entry = (
        insert_ignoring_conflicts(session, LeaderboardEntry)
        .values(trial_id=trial.id)
        .on_conflict_do_nothing()
    )
    if session.scalar(entry.returning(LeaderboardEntry.trial_id)) is None:
        return False  # counted already

    counted = trial.reused_from is None
    x = trial.test_metric if counted else 0.0
    sweep = f",{trial.sweep_id},"
    cell = insert_ignoring_conflicts(session, LeaderboardCell).values(
        task=trial.task,
        group_key=trial.group_key,
        layer=trial.layer,
        init=trial.init,
        reparam=trial.reparam,
        train_eigenvalues=trial.train_eigenvalues,
        metric=trial.metric,
        n=int(counted),
        sum_x=x,
        sum_xx=x * x,
        sweep_ids=sweep,
        trial_id=trial.id,
    )
    table = LeaderboardCell.__table__.c
    session.execute(
        cell.on_conflict_do_update(
            index_elements=["task", "group_key"],
            set_={
                "n": table.n + cell.excluded.n,
                "sum_x": table.sum_x + cell.excluded.sum_x,
                "sum_xx": table.sum_xx + cell.excluded.sum_xx,
                "sweep_ids": case(
                    (table.sweep_ids.contains(sweep), table.sweep_ids),
                    else_=table.sweep_ids + f"{trial.sweep_id},",
                ),
                "trial_id": func.coalesce(table.trial_id, cell.excluded.trial_id),
            },
        )
    )
    return True


def rebuild_leaderboard_aggregates(session: Session) -> int:
    """Recount `leaderboard_cells` from every result, in the caller's transaction — after deleting
    trials or sweeps (the running sums do not subtract), or to repair a writer that did not record.
    Returns the number of trials counted. On PostgreSQL, result writers wait for it (their
    `record_result_aggregate` then counts what the rebuild did not see); readers do not."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE leaderboard_entries, leaderboard_cells IN SHARE ROW EXCLUSIVE MODE"))
    session.execute(LeaderboardCell.__table__.delete())
    session.execute(LeaderboardEntry.__table__.delete())
    counted_ids = select(Trial.id).join(Result, Result.trial_id == Trial.id).where(*_counted())
    session.execute(LeaderboardEntry.__table__.insert().from_select(["trial_id"], counted_ids))

    x = Result.test_metric
    own = Trial.reused_from.is_(None)
    group = (Trial.task, Trial.group_key, Trial.layer, Trial.init, Trial.reparam, Trial.train_eigenvalues)
    per_sweep = (
        select(
            *group,
            Trial.sweep_id,
            func.min(Result.metric).label("metric"),
            func.sum(case((own, 1), else_=0)).label("n"),
            func.sum(case((own, x), else_=0.0)).label("sum_x"),
            func.sum(case((own, x * x), else_=0.0)).label("sum_xx"),
            func.min(Trial.id).label("trial_id"),
        )
        .join(Result, Result.trial_id == Trial.id)
        .where(*_counted())
        .group_by(*group, Trial.sweep_id)
        .subquery()
    )
    s = per_sweep.c
    by_group = (s.task, s.group_key, s.layer, s.init, s.reparam, s.train_eigenvalues)
    cells = select(
        *by_group,
        func.min(s.metric),
        func.sum(s.n),
        func.sum(s.sum_x),
        func.sum(s.sum_xx),
        literal(",") + func.aggregate_strings(cast(s.sweep_id, LeaderboardCell.sweep_ids.type), ",") + ",",
        func.min(s.trial_id),
    ).group_by(*by_group)
    columns = ["task", "group_key", "layer", "init", "reparam", "train_eigenvalues", "metric"]
    columns += ["n", "sum_x", "sum_xx", "sweep_ids", "trial_id"]
    session.execute(LeaderboardCell.__table__.insert().from_select(columns, cells))
    return session.scalar(select(func.count()).select_from(LeaderboardEntry)) or 0


# --- rows, ranks, labels, averages ------------------------------------------------------------------


def _task_order(task: str) -> tuple:
    return (LRA_TASKS.index(task), "") if task in LRA_TASKS else (len(LRA_TASKS), task)


def _ranked_rows(
    aggregates: Iterable[Aggregate], labels: Mapping[str, str]
) -> dict[str, list[LeaderboardRow]]:
    """Our rows per task, best first."""
    aggregates_by_task: dict[str, list[Aggregate]] = defaultdict(list)
    for aggregate in aggregates:
        aggregates_by_task[aggregate.task].append(aggregate)
    by_task = {}
    for task, aggregates_of_task in aggregates_by_task.items():
        ordered = sorted(aggregates_of_task, key=lambda a: (-a.mean, labels[a.group_key]))
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
                    rank=rank,
                    metric=a.metric,
                    group_key=a.group_key,
                    layer=a.layer,
                    init=a.init,
                    reparam=a.reparam,
                    train_eigenvalues=a.train_eigenvalues,
                    sweep_ids=SweepIds(a.sweep_ids),
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


def _average_order(average: AverageRow) -> tuple:
    def descending(value: float | None) -> tuple:
        return (value is None, -(value or 0.0))

    return (*descending(average.lra_average), *descending(average.lra_average_without_pathx), average.label)


def _baselines(session: Session, tasks: set[str]) -> tuple[list[LeaderboardRow], list[AverageRow]]:
    """Baseline rows of `tasks` (best first per task) and every baseline's averages. Accuracies are
    stored in percent; task "average" holds the paper's own average."""
    published: dict[str, dict[str, float | None]] = {}
    sources: dict[str, str] = {}
    for baseline in session.scalars(select(Baseline).order_by(Baseline.id)):
        accuracy = None if baseline.test_accuracy is None else baseline.test_accuracy / 100
        published.setdefault(baseline.model, {})[baseline.task] = accuracy
        sources[baseline.model] = baseline.source

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
                    source=sources[model],
                )
            )
    rows.sort(key=lambda row: (row.mean is None, -(row.mean or 0.0), row.label))

    averages = []
    for model, by_task in published.items():
        with_chance = {t: (PATHX_CHANCE if t == PATHX and v is None else v) for t, v in by_task.items()}
        lra_average = by_task.get("average")
        if lra_average is None and all(with_chance.get(t) is not None for t in LRA_TASKS):
            lra_average = _mean_over(with_chance, LRA_TASKS)
        without_pathx = {t: v for t, v in by_task.items() if v is not None}
        averages.append(
            AverageRow(
                label=model,
                lra_average=lra_average,
                lra_average_without_pathx=_mean_over(without_pathx, LRA_TASKS_WITHOUT_PATHX),
                tasks_present=[t for t in LRA_TASKS if t in by_task],
                is_baseline=True,
                source=sources[model],
            )
        )
    return rows, sorted(averages, key=_average_order)


def _group_labels(session: Session, aggregates: Sequence[Aggregate]) -> dict[str, str]:
    """A label per configuration group: layer · init · reparam (with a, b for `best`) ·
    trained/frozen, then `field=value` for every other model or optim field on which the groups
    differ. Labels are unique: groups that their stored configs do not tell apart get the start of
    their group key."""
    columns = {a.group_key: a for a in aggregates}
    trial_ids = {a.group_key: a.trial_id for a in aggregates if a.trial_id is not None}
    configs: dict[str, dict[str, Any]] = {group_key: {} for group_key in columns}
    if trial_ids:
        found = session.execute(
            select(Trial.group_key, Trial.config).where(Trial.id.in_(set(trial_ids.values())))
        )
        for group_key, config in found:
            configs[group_key] = _fields(config)

    # A field is shown where it tells groups apart; a and b are already in a `best` group's reparam.
    shown = {"layer", "init", "reparam", "train_eigenvalues"}
    in_reparam = {"reparam_a", "reparam_b"}
    keys = list(dict.fromkeys(key for fields in configs.values() for key in fields))
    varying = []
    for key in keys:
        if key in shown:
            continue
        values = {
            _comparable(fields.get(key, _ABSENT))
            for group_key, fields in configs.items()
            if not (key in in_reparam and columns[group_key].reparam == "best")
        }
        if len(values) > 1:
            varying.append(key)
    labels = {}
    for group_key, fields in configs.items():
        group = columns[group_key]
        reparam = group.reparam
        if reparam == "best":
            reparam = f"best(a={_format(fields.get('reparam_a'))},b={_format(fields.get('reparam_b'))})"
        parts = [group.layer, group.init, reparam, "trained" if group.train_eigenvalues else "frozen"]
        for key in varying:
            if group.reparam == "best" and key in in_reparam:
                continue
            parts.append(f"{key}={_format(fields.get(key))}")
        labels[group_key] = " · ".join(parts)

    seen: dict[str, int] = defaultdict(int)
    for label in labels.values():
        seen[label] += 1
    for group_key, label in labels.items():
        if seen[label] > 1:
            labels[group_key] = f"{label} · {group_key[:8]}"
    return labels


_ABSENT = object()


def _comparable(value: Any) -> Any:
    """A hashable stand-in for a config value; 1, 1.0 and True stay apart."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return (type(value), value)


def _fields(config: dict[str, Any] | str | None) -> dict[str, Any]:
    """The model and optim fields of a stored TrialConfig, flat: `d_state`, `lr`, and
    `optim.x` where a name is in both sections."""
    if isinstance(config, str):  # a JSON column read as text by some drivers
        config = json.loads(config)
    sections = {name: (config or {}).get(name) or {} for name in ("model", "optim")}
    both = set(sections["model"]) & set(sections["optim"])
    return {
        (f"{name}.{key}" if key in both else key): value
        for name, section in sections.items()
        for key, value in section.items()
    }


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


__all__ = [
    "LRA_TASKS",
    "AverageRow",
    "Leaderboard",
    "LeaderboardRow",
    "SweepIds",
    "aggregates_from_cells",
    "aggregates_from_results",
    "leaderboard",
    "rebuild_leaderboard_aggregates",
    "record_result_aggregate",
]
