"""Rich tables the commands print. `leaderboard_table` is shared by `ssmbench run` (a board computed
here) and `ssmbench leaderboard` (a board from the service): the same board prints the same table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from rich.table import Table
from rich.text import Text

from orchestrator.leaderboard import Leaderboard, LeaderboardRow
from orchestrator.leaderboard.query import LRA_TASKS
from orchestrator.models import TrialState

STATE_STYLES = {  # trial states, and the sweep states of the same names
    TrialState.PENDING: "dim",
    TrialState.RUNNING: "cyan",
    TrialState.COMPLETED: "green",
    TrialState.FAILED: "red",
    TrialState.DIVERGED: "magenta",
    TrialState.PRUNED: "yellow",
    TrialState.CANCELLED: "dim",
}


def _value(value: float | None, metric: str) -> str:
    """Accuracy in percent (0.873 → 87.30); other metrics (r²) as they are."""
    if value is None:
        return "—"
    return f"{100 * value:.2f}" if metric == "accuracy" else f"{value:.4f}"


def metric_text(value: float | None, metric: str) -> str:
    """A metric as every table shows it: accuracy in percent (0.873 → `87.30%`), r² as a number
    (`r2 0.9512`); `—` when there is none."""
    if value is None:
        return "—"
    return f"{_value(value, metric)}%" if metric == "accuracy" else f"{metric} {_value(value, metric)}"


def _mean_std(row: LeaderboardRow) -> str:
    if row.mean is None:
        return "failed (chance)" if row.is_baseline else "—"
    shown = _value(row.mean, row.metric)
    if row.std is not None:
        shown += f" ± {_value(row.std, row.metric)}"
    return shown + ("%" if row.metric == "accuracy" else "")


def leaderboard_table(board: Leaderboard) -> Table:
    """The board as one printable table: per task the configurations by rank (test metric at the best
    validation epoch, mean ± std over n seeds; accuracy in percent) with the published baselines
    dimmed below them, then the LRA averages."""
    rows = Table(title="Leaderboard", title_justify="left")
    rows.add_column("task", style="bold", no_wrap=True)
    rows.add_column("#", justify="right", no_wrap=True)
    rows.add_column("configuration")
    rows.add_column("test", justify="right", no_wrap=True)
    rows.add_column("seeds", justify="right", no_wrap=True)
    rows.add_column("sweeps")
    previous_task = None
    sources: dict[str, str] = {}
    for row in board.rows:
        if previous_task is not None and row.task != previous_task:
            rows.add_section()
        task = row.task if row.task != previous_task else ""
        previous_task = row.task
        if row.is_baseline:
            sources.setdefault(row.label, row.source or "")
            rows.add_row(task, "", f"{row.label} (published)", _mean_std(row), "—", "", style="dim")
        else:
            metric = "" if row.metric == "accuracy" else f" {row.metric}"
            sweeps = ",".join(str(s) for s in row.sweep_ids)
            rows.add_row(task, str(row.rank), row.label, _mean_std(row) + metric, str(row.n_seeds), sweeps)
    if not board.rows:
        rows.add_row("", "", Text("no results yet", style="dim"), "", "", "")
    if sources:
        by_source: dict[str, list[str]] = {}
        for label, source in sources.items():
            by_source.setdefault(source, []).append(label)
        cited = "; ".join(f"{', '.join(labels)}: {source}" for source, labels in by_source.items())
        rows.caption = Text(f"published: {cited}", style="dim")
        rows.caption_justify = "left"

    # The averages belong with LRA results: a board of synthetic tasks only has no such table.
    show_averages = any(row.task in LRA_TASKS for row in board.rows) or any(
        not average.is_baseline for average in board.averages
    )
    averages = Table(title="LRA average", title_justify="left")
    averages.add_column("configuration")
    averages.add_column("LRA (6 tasks)", justify="right")
    averages.add_column("without Path-X", justify="right")
    averages.add_column("tasks")
    for average in board.averages:
        tasks = ", ".join(average.tasks_present)
        if average.is_baseline and not average.tasks_present:
            tasks = "published average only"  # no per-task results to show above
        cells = (_percent(average.lra_average), _percent(average.lra_average_without_pathx), tasks)
        if average.is_baseline:
            averages.add_row(f"{average.label} (published)", *cells, style="dim")
        else:
            averages.add_row(average.label, *cells)

    outer = Table.grid(padding=(1, 0))
    outer.add_row(rows)
    if board.averages and show_averages:
        outer.add_row(averages)
    return outer


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _states(counts: Mapping[str, int]) -> Text:
    text = Text()
    for state in TrialState:
        if counts.get(state):
            if text:
                text.append("  ")
            text.append(f"{state} {counts[state]}", style=STATE_STYLES[state])
    return text


def sweeps_table(sweeps: Iterable, total: int | None = None) -> Table:
    """Sweeps (api.schemas.SweepSummary) with their progress."""
    table = Table(title="Sweeps" if total is None else f"Sweeps ({total})", title_justify="left")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("name")
    table.add_column("state", no_wrap=True)
    table.add_column("owner")
    table.add_column("progress", justify="right", no_wrap=True)
    table.add_column("trials")
    table.add_column("created", no_wrap=True)
    for sweep in sweeps:
        table.add_row(
            str(sweep.id),
            sweep.name,
            Text(sweep.state, style=STATE_STYLES.get(sweep.state, "")),
            sweep.owner or "—",
            f"{100 * sweep.progress:.0f}% of {sweep.n_trials}",
            _states(sweep.trials_by_state),
            _when(sweep.created_at),
        )
    return table


def sweep_table(sweep) -> Table:
    """One sweep (api.schemas.SweepDetail or SweepSummary): its fields and trial counts by state."""
    table = Table(title=f"Sweep {sweep.id}: {sweep.name}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("state", Text(sweep.state, style=STATE_STYLES.get(sweep.state, "")))
    table.add_row("owner", sweep.owner or "—")
    table.add_row("progress", f"{100 * sweep.progress:.0f}% of {sweep.n_trials} trials")
    if sweep.error:
        table.add_row("error", Text(sweep.error, style=STATE_STYLES[TrialState.FAILED]))
    for state in TrialState:
        if sweep.trials_by_state.get(state):
            table.add_row(f"  {state}", str(sweep.trials_by_state[state]), style=STATE_STYLES[state])
    table.add_row("created", _when(sweep.created_at))
    table.add_row("finished", _when(sweep.finished_at))
    return table


def trials_table(trials: Iterable, title: str) -> Table:
    """Trials (api.schemas.TrialSummary): state, configuration, seed, the test metric at the best
    validation epoch (accuracy in percent), time and a note (the error's last line)."""
    table = Table(title=title, title_justify="left")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("try", justify="right", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("configuration")
    table.add_column("seed", justify="right", no_wrap=True)
    table.add_column("test", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("note", overflow="ellipsis", max_width=40)
    for trial in trials:
        seconds = (
            f"{(trial.finished_at - trial.started_at).total_seconds():.1f} s"
            if trial.started_at and trial.finished_at
            else "—"
        )
        note = f"reuses trial {trial.reused_from}" if trial.reused_from else ""
        if trial.error and not note:
            from .outcome import failure_reason  # the exception's last line, without its module

            note = failure_reason(trial.error)
        eigenvalues = "trained" if trial.train_eigenvalues else "frozen"
        table.add_row(
            str(trial.id),
            Text(trial.state, style=STATE_STYLES.get(trial.state, "")),
            str(trial.attempt),
            trial.task,
            f"{trial.layer} · {trial.init} · {trial.reparam} · {eigenvalues}",
            str(trial.seed),
            "—" if trial.result is None else metric_text(trial.result.test_metric, trial.result.metric),
            seconds,
            note.splitlines()[-1] if note else "",
        )
    return table
