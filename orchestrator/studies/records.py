"""Recording a study run (`study_runs`, migration 0008): what `run_study` writes once the claims are
judged, and what the /studies page lists (`orchestrator.queries.study_runs_page`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..models import StudyRunRecord, utcnow
from ..report.transfer import json_safe


def record_study_run(
    session: Session,
    study: str,
    scale: str,
    sweeps: dict[str, int],
    claims: list[dict[str, Any]],
    started_at: datetime,
) -> StudyRunRecord:
    """Add one judged study run (`study_runs`): each run is a new row, a re-run too. The claims are
    stored as strict JSON: NaN and ±inf become null (PostgreSQL's JSON has no NaN), numpy scalars
    plain numbers."""
    row = StudyRunRecord(
        study=study,
        scale=scale,
        sweeps=dict(sweeps),
        claims=json_safe(claims),
        created_at=started_at,
        finished_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row
