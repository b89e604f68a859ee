"""Published baselines (REFERENCE.md §7): the reference rows of the leaderboard."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import TypeAdapter
from sqlalchemy import select

from orchestrator.models import Baseline

from ..deps import API_PREFIX, ReadAccess, SessionDep
from ..errors import error_responses
from ..schemas import BaselineOut

_BASELINE_LIST = TypeAdapter(list[BaselineOut])

router = APIRouter(prefix=f"{API_PREFIX}/baselines", tags=["leaderboard"], dependencies=[ReadAccess])


@router.get(
    "", response_model=list[BaselineOut], summary="List published baselines", responses=error_responses(401)
)
def get_baselines(session: SessionDep) -> Response:
    """Published test accuracies (percent) per model and LRA task, with their source."""
    # orchestrator.queries has no baseline query yet: this one select is the whole of it.
    baselines = session.scalars(select(Baseline).order_by(Baseline.model, Baseline.task))
    rows = [BaselineOut.model_validate(b, from_attributes=True) for b in baselines]
    return Response(_BASELINE_LIST.dump_json(rows), media_type="application/json")
