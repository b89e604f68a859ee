"""Running a study: plan its sweeps, run them through the scheduler like any sweep (a trial whose
config hash already has a completed result reuses it), judge the claims, write the report.

    DIR/summary.json     the study, its sweeps, per configuration group mean ± std over seeds, the claims
    DIR/figures/*.png    the study's figures, then the sweeps' own report figures (and .svg beside each)
    DIR/index.html       the page: sweeps, leaderboard, claims with their verdicts, figures

written by the report module (`orchestrator.report.build.write_report`). Each run is also recorded in
the database (`study_runs`: its sweeps and judged claims), which the /studies page lists.

`run_study` is what `ssmbench study run` calls; `report_study` writes the report of sweeps that ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Study
from .records import record_study_run
from .results import StudyResults, load_results

Progress = Callable[[str, dict[str, int], int], None]  # (part, trial counts by state, planned trials)


@dataclass
class StudyRun:
    """What a run did: its sweeps `{part: id}`, trials reused, the claims, where the report is, times."""

    study: str
    scale: str
    sweeps: dict[str, int]
    reused: int
    planned: int
    claims: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    record_id: int | None = None  # its row in `study_runs` (the /studies page)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "scale": self.scale,
            "sweeps": self.sweeps,
            "planned_trials": self.planned,
            "reused_trials": self.reused,
            "claims": self.claims,
            "report": None if self.out_dir is None else str(self.out_dir / "index.html"),
            "seconds": self.seconds,
        }


def run_study(
    study: Study,
    scale: str,
    database_url: str,
    out_dir: Path | None,
    *,
    settings: Any = None,
    progress: Progress | None = None,
) -> StudyRun:
    """Plan and run the study's sweeps at `scale` on the database (migrated here), then write its
    report into `out_dir` (None: no report). Ray must be connected (`orchestrator.cluster.connect_ray`)."""
    from .. import store
    from ..db import make_engine, session_factory, transaction, upgrade
    from ..models import TrialState, utcnow
    from ..scheduler import Scheduler
    from ..settings import Settings

    started, started_at = time.perf_counter(), utcnow()
    specs = study.specs(scale)
    upgrade(database_url)
    sessions = session_factory(make_engine(database_url))
    sweeps, reused, planned = {}, 0, 0
    with transaction(sessions) as s:
        for part, spec in specs.items():
            sweep = store.create_sweep(s, spec)
            sweeps[part] = sweep.id
            reused += store.state_counts(s, sweep.id).get(TrialState.COMPLETED, 0)
            planned += spec.trial_budget()
    settings = (settings or Settings()).model_copy(update={"database_url": database_url})
    scheduler = Scheduler(database_url, settings)
    try:
        scheduler.run(
            list(sweeps.values()),
            on_progress=None if progress is None else (lambda counts: progress(study.name, counts, planned)),
        )
    finally:
        scheduler.close()
    trained = time.perf_counter()
    with sessions() as s:
        results = load_results(s, sweeps)
    run = StudyRun(study.name, scale, sweeps, reused, planned)
    run.claims = study.judge(results, scale)
    with transaction(sessions) as s:  # every run is recorded, a re-run as a new row
        run.record_id = record_study_run(s, study.name, scale, sweeps, run.claims, started_at).id
    judged_at = time.perf_counter()
    if out_dir is not None:
        with sessions() as s:
            run.out_dir = report_study(study, scale, s, results, sweeps, out_dir, claims=run.claims)
    run.seconds = {
        "sweeps": trained - started,
        "claims": judged_at - trained,
        "report": time.perf_counter() - judged_at,
        "total": time.perf_counter() - started,
    }
    return run


def report_study(
    study: Study,
    scale: str,
    session: Any,
    results: StudyResults,
    sweeps: dict[str, int],
    out_dir: Path,
    *,
    claims: list[dict[str, Any]],
) -> Path:
    """Write the study's report into `out_dir` with the report module (`orchestrator.report`): the
    sweeps' page, figures and summary.json, with the claims, the study's own figures first and
    "study" ({name, paper, scale, sweeps}) in summary.json. Returns `out_dir`."""
    from ..report.build import diagnostic_runs, write_report
    from ..report.data import load_diagnostic_arrays, load_report_data

    data = load_report_data(session, list(sweeps.values()))
    arrays = load_diagnostic_arrays(session, diagnostic_runs(data))
    write_report(
        data,
        Path(out_dir),
        arrays=arrays,
        claims=claims,
        study_figures=study.figures(results, scale),
        study={"name": study.name, "paper": study.paper, "scale": scale, "sweeps": sweeps},
    )
    return Path(out_dir)


__all__ = ["StudyRun", "report_study", "run_study"]
