"""What a report shows, read from the database into plain dataclasses (no ORM objects escape).

`load_report_data(session, sweep_ids)` runs a fixed number of set-based queries whatever the sweep
size: the sweeps, their trial counts by state, the completed trials with their results, the epoch
metrics of those trials, the configuration labels, and one leaderboard per sweep.

What counts is what the leaderboard counts: a trial in state "completed" whose result is completed
with a test metric. A trial that reuses an earlier result (`Trial.reused_from`) is the original's
run: its epoch metrics are the original's, and it is counted once when both sweeps are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..leaderboard.aggregates import GROUP_COLUMNS, counted_rows
from ..leaderboard.labels import group_labels
from ..models import EpochMetric, Result, Sweep, Trial, TrialDiagnostics
from ..queries import sweeps_state_counts


class ReportError(ValueError):
    """The sweeps cannot be reported (unknown id, nothing completed); the message is one line."""


@dataclass
class SweepInfo:
    id: int
    name: str
    state: str
    owner: str | None
    spec: dict[str, Any]
    trials_by_state: dict[str, int]
    created_at: datetime | None
    finished_at: datetime | None

    @property
    def n_trials(self) -> int:
        return sum(self.trials_by_state.values())


@dataclass
class TrialRecord:
    """One completed trial: its result and its epoch metrics (the `on_epoch` dicts of the attempt that
    finished, ordered by epoch; epochs count from 0)."""

    trial_id: int
    run_id: int  # the trial that trained: `reused_from`, or the trial itself
    sweep_id: int
    seed: int
    test_metric: float
    val_metric: float | None
    best_epoch: int | None
    fourier: list[dict[str, float | None]] | None = None  # the Fourier-noise table, when recorded
    epochs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ConfigGroup:
    """The completed trials of one configuration group (`Trial.group_key`) on one task: its seeds."""

    task: str
    group_key: str
    label: str
    layer: str
    init: str
    reparam: str
    train_eigenvalues: bool
    metric: str  # "accuracy" (a fraction) or "r2"
    trials: list[TrialRecord] = field(default_factory=list)

    @property
    def test_values(self) -> list[float]:
        return [t.test_metric for t in self.trials]

    @property
    def mean_test(self) -> float:
        return sum(self.test_values) / len(self.trials)


@dataclass
class ReportData:
    sweeps: list[SweepInfo]
    groups: list[ConfigGroup]  # by task (as the leaderboard orders tasks), then best mean test metric
    leaderboards: dict[int, dict[str, Any]]  # sweep id → `Leaderboard.to_dict()` of that sweep

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(g.task for g in self.groups))

    def groups_of(self, task: str) -> list[ConfigGroup]:
        return [g for g in self.groups if g.task == task]


def load_report_data(
    session: Session, sweep_ids: Sequence[int], *, with_leaderboards: bool = True
) -> ReportData:
    """The sweeps' data for a report. Raises ReportError for an unknown sweep id or a sweep without a
    completed trial."""
    sweep_ids = list(dict.fromkeys(sweep_ids))
    sweeps = _sweeps(session, sweep_ids)
    groups = _groups(session, sweep_ids, sweeps)
    _attach_epochs(session, sweep_ids, groups)
    leaderboards = {}
    if with_leaderboards:
        from ..leaderboard import leaderboard

        leaderboards = {s.id: leaderboard(session, sweep_id=s.id).to_dict() for s in sweeps}
    return ReportData(sweeps=sweeps, groups=groups, leaderboards=leaderboards)


def load_diagnostic_arrays(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The diagnostic arrays ({"init", "best", "end"}, each a list per SSM layer of quantity →
    array, as `ssm.diagnostics.layer_arrays` gives them) of the given trials that have them: from
    their own tables (`orchestrator.queries.trial_diagnostics`), or inside the result's payload for
    results stored before those tables existed. Read for the few trials a figure draws: they are large."""
    from ..array_codec import json_lists
    from ..queries import trial_diagnostics

    found: dict[int, dict[str, Any]] = {}
    for trial in session.scalars(select(Trial).where(Trial.id.in_(set(run_ids)))):
        stored = trial_diagnostics(session, trial)
        if stored.snapshots:  # as the payload held them: nested lists, NaN as None
            found[trial.id] = {
                snapshot: [
                    {quantity: json_lists(array) for quantity, array in layer.items()} for layer in layers
                ]
                for snapshot, layers in stored.snapshots.items()
            }
    legacy = set(run_ids) - found.keys()
    if legacy:
        arrays = Result.payload[("diagnostics", "arrays")]
        rows = session.execute(select(Result.trial_id, arrays).where(Result.trial_id.in_(legacy)))
        found.update({trial_id: value for trial_id, value in rows if isinstance(value, dict)})
    return found


def load_trial_configs(session: Session, trial_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The stored `TrialConfig` JSON of the given trials (for exports: the full configuration, not
    only the columns a group is keyed on)."""
    if not trial_ids:
        return {}
    rows = session.execute(select(Trial.id, Trial.config).where(Trial.id.in_(set(trial_ids))))
    return {trial_id: config for trial_id, config in rows}


# --- the queries ---------------------------------------------------------------------------------


def _fourier_table(value: Any) -> list[dict[str, float | None]] | None:
    return value if isinstance(value, list) and value else None


def _sweeps(session: Session, sweep_ids: list[int]) -> list[SweepInfo]:
    found = {s.id: s for s in session.scalars(select(Sweep).where(Sweep.id.in_(sweep_ids)))}
    missing = [i for i in sweep_ids if i not in found]
    if missing:
        raise ReportError(f"no sweep with id {', '.join(map(str, missing))}")
    counts = sweeps_state_counts(session, list(found.values()))
    return [
        SweepInfo(
            id=s.id,
            name=s.name,
            state=s.state,
            owner=s.owner,
            spec=s.spec,
            trials_by_state=counts[s.id],
            created_at=s.created_at,
            finished_at=s.finished_at,
        )
        for s in (found[i] for i in sweep_ids)
    ]


def _groups(session: Session, sweep_ids: list[int], sweeps: list[SweepInfo]) -> list[ConfigGroup]:
    rows = session.execute(
        select(
            Trial.id,
            func.coalesce(Trial.reused_from, Trial.id),
            Trial.sweep_id,
            *GROUP_COLUMNS,
            Trial.seed,
            Result.metric,
            Result.test_metric,
            Result.val_metric,
            Result.best_epoch,
            Result.payload[("diagnostics", "fourier")],
            TrialDiagnostics.fourier_noise,
        )
        .join(Result, Result.trial_id == Trial.id)
        .outerjoin(TrialDiagnostics, TrialDiagnostics.trial_id == func.coalesce(Trial.reused_from, Trial.id))
        .where(Trial.sweep_id.in_(sweep_ids), *counted_rows())
        .order_by(Trial.id)
    ).all()
    reported = {row[2] for row in rows}
    for sweep in sweeps:
        if sweep.id not in reported:
            raise ReportError(
                f"sweep {sweep.id} ({sweep.name}) has no completed trials yet "
                f"({_states(sweep.trials_by_state)})"
            )

    groups: dict[tuple[str, str], ConfigGroup] = {}
    first_trial: dict[str, int] = {}
    seen_runs: set[int] = set()
    for (
        trial_id, run_id, sweep_id, task, group_key, layer, init, reparam, trained, seed,
        metric, test, val, best_epoch, legacy_fourier, fourier,
    ) in rows:  # fmt: skip
        if run_id in seen_runs:  # the same run reported through two sweeps counts once
            continue
        seen_runs.add(run_id)
        group = groups.get((task, group_key))
        if group is None:
            group = groups[(task, group_key)] = ConfigGroup(
                task, group_key, "", layer, init, reparam, bool(trained), metric
            )
            first_trial.setdefault(group_key, trial_id)
        group.trials.append(
            TrialRecord(
                trial_id=trial_id,
                run_id=run_id,
                sweep_id=sweep_id,
                seed=seed,
                test_metric=test,
                val_metric=val,
                best_epoch=best_epoch,
                fourier=_fourier_table(fourier) or _fourier_table(legacy_fourier),
            )
        )
    labels = group_labels(session, groups.values(), first_trial)  # the leaderboard's labels
    for group in groups.values():
        group.label = labels[group.group_key]
        group.trials.sort(key=lambda t: (t.seed, t.trial_id))
    return sorted(groups.values(), key=lambda g: (_task_order(g.task), -g.mean_test, g.label))


def _attach_epochs(session: Session, sweep_ids: list[int], groups: list[ConfigGroup]) -> None:
    """Each trial's epoch rows: those of the trained run's last attempt, one query for all."""
    by_run = {t.run_id: t for g in groups for t in g.trials}
    runs = (
        select(func.coalesce(Trial.reused_from, Trial.id))
        .where(Trial.sweep_id.in_(sweep_ids), Trial.state == "completed")
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            EpochMetric.trial_id,
            EpochMetric.attempt,
            EpochMetric.epoch,
            EpochMetric.val_metric,
            EpochMetric.metrics,
        )
        .where(EpochMetric.trial_id.in_(runs))
        .order_by(EpochMetric.trial_id, EpochMetric.attempt, EpochMetric.epoch)
    )
    last_attempt: dict[int, int] = {}
    for run_id, attempt, epoch, val_metric, metrics in rows:
        trial = by_run.get(run_id)
        if trial is None:
            continue
        if last_attempt.get(run_id, attempt) < attempt:  # a later attempt replaces an earlier one
            trial.epochs.clear()
        last_attempt[run_id] = attempt
        trial.epochs.append({**(metrics or {}), "epoch": epoch, "val_metric": val_metric})


def _task_order(task: str) -> tuple:
    from ..leaderboard import LRA_TASKS

    return (LRA_TASKS.index(task), "") if task in LRA_TASKS else (len(LRA_TASKS), task)


def _states(counts: dict[str, int]) -> str:
    if not counts:
        return "it has no trials"
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
