"""Recording a study run (`study_runs`, migration 0008): what `run_study` writes once the claims are
judged, and what the /studies page lists (`orchestrator.queries.study_runs_page`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..models import StudyRunRecord, utcnow


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
    plain = json.loads(
        json.dumps(claims, default=lambda o: o.item() if hasattr(o, "item") else str(o)),
        parse_constant=lambda _: None,
    )
    row = StudyRunRecord(
        study=study,
        scale=scale,
        sweeps=dict(sweeps),
        claims=plain,
        created_at=started_at,
        finished_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row
