"""Prometheus metrics of one service instance, in a registry of its own (tests build many apps).

- `ssmbench_sweeps_submitted_total`: sweeps accepted by this instance (counter);
- `ssmbench_trials` {state}: trials per state in the database (gauge, read at scrape time);
- `ssmbench_trial_duration_seconds`: started → finished of every trial that ran (histogram over the
  database, read at scrape time — the workers, not the service, see trials end);
- `ssmbench_http_request_duration_seconds` {method, route, status}: request latency (histogram).
  Every label has a bounded set of values, whatever clients send: `method` is one of HTTP_METHODS
  or `other`, `route` the route's path template (`/api/v1/sweeps/{sweep_id}`) or `unmatched`, never
  the raw path; `status` is what this service answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.models import Trial, TrialState
from orchestrator.store import state_counts

from .middleware import HttpMiddleware

TRIAL_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class DatabaseCollector(Collector):
    """Trials by state and trial durations, queried when Prometheus scrapes."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def describe(self) -> Iterable[Metric]:  # lets the registry register us without a query
        yield GaugeMetricFamily("ssmbench_trials", "Trials in the database by state.", labels=["state"])
        yield HistogramMetricFamily("ssmbench_trial_duration_seconds", "Trial run time, started to finished.")

    def collect(self) -> Iterable[Metric]:
        with self.sessions() as session:
            counts = state_counts(session)
            buckets, count, total = self._durations(session)
        trials = GaugeMetricFamily("ssmbench_trials", "Trials in the database by state.", labels=["state"])
        for state in TrialState:
            trials.add_metric([state.value], counts.get(state, 0))
        yield trials
        cumulative = [(repr(float(b)), n) for b, n in zip(TRIAL_DURATION_BUCKETS, buckets, strict=True)]
        yield HistogramMetricFamily(
            "ssmbench_trial_duration_seconds",
            "Trial run time, started to finished.",
            buckets=[*cumulative, ("+Inf", count)],
            sum_value=total,
        )

    @staticmethod
    def _durations(session: Session) -> tuple[list[int], int, float]:
        if session.get_bind().dialect.name == "postgresql":
            seconds = func.extract("epoch", Trial.finished_at - Trial.started_at)
        else:  # SQLite keeps times as text; julianday() reads it, in days
            seconds = (func.julianday(Trial.finished_at) - func.julianday(Trial.started_at)) * 86400.0
        columns = [
            func.coalesce(func.sum(case((seconds <= b, 1), else_=0)), 0) for b in TRIAL_DURATION_BUCKETS
        ]
        row = session.execute(
            select(*columns, func.count(), func.coalesce(func.sum(seconds), 0.0)).where(
                Trial.started_at.is_not(None), Trial.finished_at.is_not(None), Trial.reused_from.is_(None)
            )
        ).one()
        return [int(n) for n in row[:-2]], int(row[-2]), float(row[-1])


class ServiceMetrics:
    def __init__(self, sessions: sessionmaker[Session]):
        self.registry = CollectorRegistry()
        self.sweeps_submitted = Counter(
            "ssmbench_sweeps_submitted", "Sweeps accepted by this service instance.", registry=self.registry
        )
        self.request_seconds = Histogram(
            "ssmbench_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(DatabaseCollector(sessions))


class RequestMetricsMiddleware(HttpMiddleware):
    """Times every HTTP request into `ServiceMetrics.request_seconds`."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.request_seconds.labels(method_label(scope), route_label(scope), str(status)).observe(
                time.perf_counter() - start
            )


def method_label(scope: Scope) -> str:
    """The request's method if it is a standard one, else `other` (any token is a valid method)."""
    return scope["method"] if scope["method"] in HTTP_METHODS else "other"


def route_label(scope: Scope) -> str:
    """The path template of the route that answered, `unmatched` when none did."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else "unmatched"
