"""Report data: what `ssmbench report --api URL` draws, as the database-side report reads it.

One route, self-contained: the report's figures and summary are drawn by the client
(`orchestrator.report.write_report`), from the same `ReportData` that `load_report_data` reads from the
database, so a report through the service is the report read directly. The diagnostic arrays of the
few trials a figure draws come from `GET /trials/{id}/diagnostics`.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Response

from orchestrator.models import Sweep
from orchestrator.report.data import ReportError, load_report_data
from orchestrator.report.transfer import report_data_to_json

from ..deps import API_PREFIX, MAX_ID, ReadAccess, SessionDep
from ..errors import ServiceError, error_responses, not_found

MAX_REPORT_SWEEPS = 64  # sweeps reported together in one request

# The document's outline (orchestrator.report.transfer writes it; orchestrator.report.data defines it).
_SCHEMA = {
    "type": "object",
    "required": ["sweeps", "groups", "leaderboards"],
    "properties": {
        "sweeps": {"type": "array", "items": {"type": "object"}, "description": "SweepInfo per sweep"},
        "groups": {
            "type": "array",
            "items": {"type": "object"},
            "description": "ConfigGroup per task and configuration, its trials with their epochs",
        },
        "leaderboards": {"type": "object", "description": "sweep id → that sweep's Leaderboard"},
    },
}

router = APIRouter(prefix=f"{API_PREFIX}/reports", tags=["reports"], dependencies=[ReadAccess])


@router.get(
    "/data",
    summary="Get the data of a report of sweeps",
    responses={
        200: {"description": "the report data", "content": {"application/json": {"schema": _SCHEMA}}},
        **error_responses(401, 404, 409),
    },
)
def get_report_data(
    session: SessionDep,
    sweep: Annotated[
        list[Annotated[int, Query(ge=1, le=MAX_ID)]],
        Query(
            min_length=1,
            max_length=MAX_REPORT_SWEEPS,
            description="the sweeps to report together (repeatable)",
        ),
    ],
) -> Response:
    """The sweeps, their completed trials grouped by configuration with each trial's epoch metrics,
    and one leaderboard per sweep: `orchestrator.report.transfer`'s document (non-finite floats as
    `{"$float": "nan"}`). 404 for an unknown sweep, 409 for one without a completed trial."""
    for sweep_id in dict.fromkeys(sweep):
        if session.get(Sweep, sweep_id) is None:
            raise not_found("sweep", sweep_id, "sweep")
    try:
        data = load_report_data(session, sweep)
    except ReportError as err:
        raise ServiceError(409, "nothing_to_report", str(err), "sweep") from None
    body = json.dumps(report_data_to_json(data), allow_nan=False, separators=(",", ":"))
    return Response(body, media_type="application/json")
