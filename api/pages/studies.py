"""The /studies page: the built-in studies of the registry (`orchestrator.studies`) and every
recorded run (`study_runs`, newest first, a few per page), each with its verdict table, links to its
sweeps and its figures, redrawn from those sweeps (`page_figures.study_run_figures`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestrator.queries import study_runs_page
from orchestrator.studies import STUDIES, get_study

from ..deps import SessionDep
from .auth import page_viewer
from .page_figures import study_run_figures
from .rendering import PageNumber, page_link, pages, render

# A run's figures take seconds to draw the first time (SVG layout: 1-5 s a study on 2 loaded CPUs)
RUNS_PER_PAGE = 3
VERDICT_ORDER = ("holds", "fails", "inconclusive")

router = APIRouter(include_in_schema=False)


def built_in_studies() -> list[dict[str, Any]]:
    """Name, paper, question and claims of every study in the registry, in its order."""
    studies = []
    for name in STUDIES:
        study = get_study(name)
        claims = [{"id": c.id, "statement": c.statement} for c in study.claims]
        studies.append({"name": name, "paper": study.paper, "question": study.question, "claims": claims})
    return studies


def verdict_counts(claims: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(verdict, how many claims) in the order holds, fails, inconclusive; other verdicts after."""
    counts: dict[str, int] = {}
    for claim in claims:
        verdict = str(claim.get("verdict") or "inconclusive")
        counts[verdict] = counts.get(verdict, 0) + 1
    order = [v for v in VERDICT_ORDER if v in counts] + sorted(set(counts) - set(VERDICT_ORDER))
    return [(v, counts[v]) for v in order]


@router.get("/studies", response_class=HTMLResponse)
def studies_page(request: Request, session: SessionDep, page: PageNumber = 1) -> HTMLResponse:
    viewer = page_viewer(request, session)
    records, total = study_runs_page(session, offset=(page - 1) * RUNS_PER_PAGE, limit=RUNS_PER_PAGE)
    runs = []
    for record in records:
        drawn = study_run_figures(request, session, record)
        runs.append(
            {
                "record": record,
                "sweeps": sorted((record.sweeps or {}).items()),
                "counts": verdict_counts(record.claims or []),
                "figures": drawn.for_page(
                    lambda name, run_id=record.id: f"/studies/runs/{run_id}/figures/{name}.svg",
                    f"Study {record.study}, run {record.id}",
                ),
                "figures_error": drawn.error,
            }
        )
    return render(
        request,
        "studies.html",
        title="Studies",
        viewer=viewer,
        studies=built_in_studies(),
        runs=runs,
        paging=pages(total, RUNS_PER_PAGE, page),
        link=lambda **changes: page_link(request, **changes),
    )
