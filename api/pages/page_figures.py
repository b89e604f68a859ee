"""The pages' figures: drawn on demand from the database by the one figure module
(`orchestrator.report`: data → figures → SVG) and served as images, no client-side charting.

    /sweeps/{id}/figures/{name}.svg             the sweep's report figures (`report_figures`)
    /trials/{id}/figures/{name}.svg             learning curve; MF(τ) and eigenvalues, init vs end
    /studies/runs/{id}/figures/{name}.svg       a recorded study run's own figures (`Study.figures`)

A page and its images share one drawing: the figures of a sweep, trial or study run are drawn
together once, turned into SVG, and kept in the app's `FigureCache` (least recently used out, and
for at most `ttl` seconds) under a key that changes when the data does (a new result, epoch or
attempt), so a reload neither redraws nor shows a stale figure for longer than the TTL.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.models import EpochMetric, Result, StudyRunRecord, Sweep, Trial
from orchestrator.queries import epoch_metrics

from ..deps import MAX_ID, SessionDep
from .auth import LoginRequired, page_viewer
from .rendering import SweepId, TrialId, configuration, error_line

log = logging.getLogger(__name__)

FigureName = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")]
RunId = Annotated[int, PathParam(ge=1, le=MAX_ID)]

# An SVG answer is an image: no script runs in it; its inline <style> (matplotlib's) is its own.
SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@dataclasses.dataclass(frozen=True)
class PageFigure:
    name: str
    title: str
    caption: str
    svg: bytes


@dataclasses.dataclass(frozen=True)
class FigureSet:
    """The figures of one sweep, trial or study run, in drawing order, and why drawing stopped early
    (a figure that raised: the ones before it are kept, the page says so)."""

    figures: dict[str, PageFigure]
    error: str | None = None

    @property
    def size(self) -> int:
        return sum(len(f.svg) for f in self.figures.values())

    def for_page(self, src: Callable[[str], str], alt_prefix: str) -> list[dict[str, str]]:
        return [
            {"src": src(f.name), "alt": f"{alt_prefix}: {f.title}", "caption": f.caption, "title": f.title}
            for f in self.figures.values()
        ]


class FigureCache:
    """Figure sets by key, least recently used out beyond `max_entries` or `max_bytes` of SVG, each
    kept `ttl` seconds (or its own, given to `get`). One build per key at a time: a page's images, requested together, wait for
    the page's drawing instead of drawing again."""

    def __init__(
        self,
        max_entries: int = 64,
        ttl: float = 600.0,
        max_bytes: int = 64 * 2**20,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_entries, self.ttl, self.max_bytes, self.clock = max_entries, ttl, max_bytes, clock
        self._entries: OrderedDict[Hashable, tuple[float, FigureSet]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}
        self.builds = 0  # how many sets were drawn (the tests read it)

    def _cached(self, key: Hashable) -> FigureSet | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self.clock() > entry[0]:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def get(self, key: Hashable, draw: Callable[[], Iterable[Any]], ttl: float | None = None) -> FigureSet:
        """The set under `key`, drawn from `draw()` (ReportFigure-likes: name, title, caption, figure)
        when missing or expired; kept `ttl` seconds (None: the cache's). A set whose drawing failed is
        not kept: the next request tries again."""
        found = self._cached(key)
        if found is not None:
            return found
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:
            found = self._cached(key)
            if found is None:
                found = _draw_set(draw)
                with self._lock:
                    self.builds += 1
                    if found.error is None:
                        self._keep(key, found, self.ttl if ttl is None else ttl)
            with self._lock:
                self._building.pop(key, None)
        return found

    def _keep(self, key: Hashable, found: FigureSet, ttl: float) -> None:
        self._drop(key)
        self._entries[key] = (self.clock() + ttl, found)
        self._bytes += found.size
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1].size


def _draw_set(draw: Callable[[], Iterable[Any]]) -> FigureSet:
    from orchestrator.report import figures

    drawn: dict[str, PageFigure] = {}
    try:
        for item in draw():
            drawn[item.name] = PageFigure(item.name, item.title, item.caption, figures.to_svg(item.figure))
            item.figure.clear()
    except Exception as err:  # a page without some figures, not a page that fails
        log.warning("figures could not be drawn", exc_info=True)
        return FigureSet(drawn, error_line(f"{type(err).__name__}: {err}"))
    return FigureSet(drawn)


def figure_cache(request: Request) -> FigureCache:
    return request.app.state.page_figures


# --- what each page draws -------------------------------------------------------------------------


def sweep_figures(request: Request, session: Session, sweep: Sweep) -> FigureSet:
    """The sweep's report figures: validation metric per epoch with its band, the final test metric
    with seed points, and the diagnostics' figures where recorded; none before a completed trial."""
    from orchestrator.report.build import diagnostic_runs, report_figures
    from orchestrator.report.data import ReportError, load_diagnostic_arrays, load_report_data

    in_sweep = Trial.sweep_id == sweep.id
    stamp = session.execute(
        select(
            select(func.max(Result.id)).join(Trial, Trial.id == Result.trial_id).where(in_sweep).scalar_subquery(),
            select(func.max(EpochMetric.id)).join(Trial, Trial.id == EpochMetric.trial_id).where(in_sweep).scalar_subquery(),
        )
    ).one()  # fmt: skip

    def draw():
        try:
            data = load_report_data(session, [sweep.id], with_leaderboards=False)
        except ReportError:  # no completed trial yet
            return
        yield from report_figures(data, load_diagnostic_arrays(session, diagnostic_runs(data)))

    return figure_cache(request).get(("sweep", sweep.id, sweep.state, *stamp), draw)


def trial_figures(
    request: Request, session: Session, trial: Trial, epochs: list[dict[str, Any]]
) -> FigureSet:
    """The trial's validation metric per epoch (its last attempt), and its MF(τ) and eigenvalues at
    initialization and at the end when it recorded diagnostic arrays."""
    from orchestrator.report import figures
    from orchestrator.report.build import ReportFigure, array_figures
    from orchestrator.report.data import load_diagnostic_arrays

    points = [
        (e["epoch"], e["val_metric"]) for e in epochs if e["attempt"] == trial.attempt and e.get("val_metric") is not None
    ]  # fmt: skip
    source = trial.reused_from or trial.id

    def draw():
        if points:
            metric = session.scalar(select(Result.metric).where(Result.trial_id == trial.id)) or "accuracy"
            yield ReportFigure(
                "learning-curve",
                f"Validation {metric} per epoch",
                "Validation metric per epoch (the table below holds the numbers)",
                figures.seed_curves_figure(
                    [figures.SeedCurves.from_runs(configuration(trial), [points])],
                    title=f"Trial {trial.id}: validation {metric} per epoch (attempt {trial.attempt})",
                    xlabel="epoch",
                    ylabel=figures.metric_axis_label(metric, "validation"),
                    scale=figures.metric_scale(metric),
                ),
            )
        stored = load_diagnostic_arrays(session, [source]).get(source)
        label = f"{configuration(trial)} (seed {trial.seed})"
        for item in array_figures([(label, stored)] if stored else [], f" of trial {trial.id}"):
            yield dataclasses.replace(
                item, caption=ARRAY_CAPTIONS.get(item.name.split("-trial")[0], item.caption)
            )

    key = ("trial", trial.id, trial.attempt, trial.state, len(points))
    return figure_cache(request).get(key, draw)


ARRAY_CAPTIONS = {
    "eigenvalues": "Continuous-time eigenvalues λ of every SSM layer in the complex plane: at "
    "initialization (hollow grey) and at the end of training (filled).",
    "memory-function": "MF(τ) averaged over the layers' channels: at initialization (dashed) and at "
    "the end of training (solid).",
}


def study_run_figures(request: Request, session: Session, run: StudyRunRecord) -> FigureSet:
    """A recorded run's own figures, redrawn from its sweeps' results (`Study.figures`)."""
    from orchestrator.studies import STUDIES, get_study
    from orchestrator.studies.results import load_results

    def draw():
        if run.study not in STUDIES:  # a study this version no longer has: its verdicts stay
            return
        yield from get_study(run.study).figures(load_results(session, run.sweeps), run.scale)

    # A recorded run's sweeps are finished: its figures do not change, only the LRU drops them.
    return figure_cache(request).get(("study-run", run.id), draw, ttl=math.inf)


# --- the SVG routes --------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


def _serve(request: Request, session: Session, row: Any, draw: Callable, name: str) -> Response:
    """The SVG of figure `name` of `row` (a sweep, trial or study run; None: not found), drawn with
    the row's other figures by `draw(request, session, row)` unless the cache has them."""
    try:
        page_viewer(request, session)
    except LoginRequired:
        return JSONResponse({"error": {"code": "unauthorized", "message": "log in first"}}, 401)
    figure = None if row is None else draw(request, session, row).figures.get(name)
    if figure is None:
        return JSONResponse({"error": {"code": "not_found", "message": f"no figure {name}"}}, 404)
    return Response(figure.svg, media_type="image/svg+xml", headers=SVG_HEADERS)


@router.get("/sweeps/{sweep_id}/figures/{name}.svg")
def sweep_figure(request: Request, session: SessionDep, sweep_id: SweepId, name: FigureName) -> Response:
    return _serve(request, session, session.get(Sweep, sweep_id), sweep_figures, name)


@router.get("/trials/{trial_id}/figures/{name}.svg")
def trial_figure(request: Request, session: SessionDep, trial_id: TrialId, name: FigureName) -> Response:
    def draw(request: Request, session: Session, trial: Trial) -> FigureSet:
        return trial_figures(request, session, trial, epoch_metrics(session, trial.id))

    return _serve(request, session, session.get(Trial, trial_id), draw, name)


@router.get("/studies/runs/{run_id}/figures/{name}.svg")
def study_run_figure(request: Request, session: SessionDep, run_id: RunId, name: FigureName) -> Response:
    return _serve(request, session, session.get(StudyRunRecord, run_id), study_run_figures, name)
