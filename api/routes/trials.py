"""Trials: one trial with its config and result, and its epoch metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from orchestrator.models import Sweep, Trial
from orchestrator.queries import epoch_metrics, trial_detail

from ..deps import API_PREFIX, MAX_ID, ReadAccess, SessionDep, ViewerDep, json_response, visible_error
from ..errors import error_responses, not_found
from ..schemas import TrialDetail, TrialMetrics

router = APIRouter(prefix=f"{API_PREFIX}/trials", tags=["trials"], dependencies=[ReadAccess])

TrialId = Annotated[int, Path(ge=1, le=MAX_ID, description="the trial's id")]


def _trial_or_404(session, trial_id: int) -> Trial:
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise not_found("trial", trial_id, "trial_id")
    return trial


@router.get(
    "/{trial_id}", response_model=TrialDetail, summary="Get a trial", responses=error_responses(401, 404)
)
def get_trial(session: SessionDep, trial_id: TrialId, viewer: ViewerDep) -> Response:
    """A trial: state, attempts, config, where it ran, its error, and its result once finished.

    `error` is the exception's last line; the sweep's owner and admins (with their token) get the
    whole traceback."""
    trial = _trial_or_404(session, trial_id)
    detail = trial_detail(session, trial)
    detail["error"] = visible_error(trial.error, session.get(Sweep, trial.sweep_id).owner, viewer)
    return json_response(TrialDetail.model_validate(detail))


@router.get(
    "/{trial_id}/metrics",
    response_model=TrialMetrics,
    summary="Get a trial's epoch metrics",
    responses=error_responses(401, 404),
)
def get_trial_metrics(session: SessionDep, trial_id: TrialId) -> Response:
    """Every epoch of every attempt, in order: the dict the trainer reported for it."""
    _trial_or_404(session, trial_id)
    metrics = TrialMetrics.model_validate({"trial_id": trial_id, "epochs": epoch_metrics(session, trial_id)})
    return json_response(metrics)
