"""Trials: one trial with its config and result, its epoch metrics, and its diagnostics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from orchestrator.array_codec import json_lists
from orchestrator.models import Sweep, Trial
from orchestrator.queries import epoch_metrics, trial_detail, trial_diagnostics

from ..deps import API_PREFIX, MAX_ID, ReadAccess, SessionDep, ViewerDep, json_response, visible_error
from ..errors import error_responses, not_found
from ..schemas import DiagnosticSnapshot, TrialDetail, TrialDiagnosticsOut, TrialMetrics

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


@router.get(
    "/{trial_id}/diagnostics",
    response_model=TrialDiagnosticsOut,
    summary="Get a trial's diagnostic arrays",
    responses=error_responses(401, 404),
)
def get_trial_diagnostics(
    session: SessionDep,
    trial_id: TrialId,
    snapshot: Annotated[
        list[DiagnosticSnapshot] | None,
        Query(description="only these snapshots (repeatable); all recorded ones when absent"),
    ] = None,
) -> dict[str, Any]:
    """Per SSM layer at init, at the best validation epoch and at the end: the eigenvalues λ, dt, the
    discrete Ab, the memory function MF(τ) and the memory capacity MC per channel; and the
    Fourier-noise accuracy table. Recorded when the trial runs with `diagnostics.every` > 0 (the
    table with `diagnostics.fourier`); a reused result serves its original trial's.

    A trial without diagnostics (none asked for, not finished, failed) answers 200 with `attempt`
    null, `snapshots` {} and `fourier_noise` null; an unknown trial is 404. The per-epoch scalars
    are in `GET /trials/{id}/metrics`."""
    trial = _trial_or_404(session, trial_id)
    stored = trial_diagnostics(session, trial, snapshot)
    snapshots = {
        name: [
            {"layer": i, **{quantity: json_lists(array) for quantity, array in layer.items()}}
            for i, layer in enumerate(layers)
        ]
        for name, layers in stored.snapshots.items()
    }
    # A plain dict, validated once by response_model: a model returned here would be dumped back
    # to a dict first (0.8 s for the 10 MB of a 6-layer, H = 128 model). That validation runs in a
    # second hop to the thread pool: the session gives its connection back first (see health.py).
    session.close()
    return {
        "trial_id": trial.id,
        "source_trial_id": stored.source_trial_id,
        "attempt": stored.attempt,
        "snapshots": snapshots,
        "fourier_noise": stored.fourier_noise,
    }
