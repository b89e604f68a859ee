"""Running a study: plan its sweeps, run them through the scheduler like any sweep (a trial whose
config hash already has a completed result reuses it), judge the claims, write the report.

    DIR/summary.json     the study, its sweeps, per configuration group mean ± std over seeds, the claims
    DIR/figures/*.png    the study's figures (and .svg beside each)
    DIR/index.html       the page: verdict table, figures

`run_study` is what `ssmbench study run` calls; `report_study` writes the report of sweeps that ran.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Study
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
    from ..models import TrialState
    from ..scheduler import Scheduler
    from ..settings import Settings

    started = time.perf_counter()
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
    judged_at = time.perf_counter()
    if out_dir is not None:
        run.out_dir = report_study(study, scale, results, sweeps, out_dir, claims=run.claims)
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
    results: StudyResults,
    sweeps: dict[str, int],
    out_dir: Path,
    *,
    claims: list[dict[str, Any]],
) -> Path:
    """Write summary.json, the study's figures and index.html into `out_dir` (created)."""
    from ..report import figures as drawing

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for item in study.figures(results, scale):
        png, svg = drawing.to_png_and_svg(item.figure)
        (out_dir / "figures" / f"{item.name}.png").write_bytes(png)
        (out_dir / "figures" / f"{item.name}.svg").write_bytes(svg)
        written.append({"name": item.name, "title": item.title, "caption": item.caption})
        item.figure.clear()
    summary = study_summary(study, scale, results, sweeps, claims)
    (out_dir / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    from .page import render_study_page

    (out_dir / "index.html").write_text(render_study_page(summary, written))
    return out_dir


def study_summary(
    study: Study, scale: str, results: StudyResults, sweeps: dict[str, int], claims: list[dict[str, Any]]
) -> dict[str, Any]:
    """The study's summary.json: the study, its sweeps, per configuration group (the config without
    seed) the test metric's mean ± std over seeds and n, and the claims."""
    from ssm.config import TrialConfig

    from ..spec import group_key

    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for trial in results.trials:
        config = TrialConfig.model_validate(trial.config)
        key = (trial.part, config.task.name + ":" + group_key(config))
        group = groups.setdefault(
            key,
            {
                "part": trial.part,
                "task": config.task.name,
                "task_options": config.task.options,
                "model": config.model.model_dump(mode="json"),
                "optim": config.optim.model_dump(mode="json"),
                "states": {},
                "test_metric": [],
                "metric": None,
            },
        )
        group["states"][trial.state] = group["states"].get(trial.state, 0) + 1
        if trial.test_metric is not None:
            group["test_metric"].append(trial.test_metric)
            group["metric"] = trial.result.get("metric")
    rows = []
    for group in groups.values():
        values = group.pop("test_metric")
        mean = sum(values) / len(values) if values else None
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        rows.append({**group, "test_metric": {"mean": mean, "std": std, "n": len(values)}})
    return {
        "study": study.name,
        "paper": study.paper,
        "scale": scale,
        "sweeps": [{"part": part, "id": sweep_id} for part, sweep_id in sweeps.items()],
        "groups": rows,
        "claims": claims,
    }


def _json_safe(value: Any) -> Any:
    """NaN and ±inf become None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


__all__ = ["StudyRun", "report_study", "run_study", "study_summary"]
