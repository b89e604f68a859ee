"""A typed HTTP client of the ssmbench service.

    from api.client import Client
    with Client() as client:                       # $SSMBENCH_API_URL, $SSMBENCH_TOKEN
        sweep = client.submit(Path("examples/quickstart.yaml"))
        client.wait(sweep.id)
        board = client.leaderboard(LeaderboardFilters(sweep_id=sweep.id))  # an orchestrator.leaderboard.Leaderboard

Every method raises `ApiError` (status, code, message, field — the server's own words) for an error
answer, and `ServerUnreachable` (naming the URL) when no server answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from orchestrator.leaderboard import Leaderboard, LeaderboardFilters
from orchestrator.models import FINAL_SWEEP_STATES
from orchestrator.settings import masked_text, masked_url

from .schemas import (
    BaselineOut,
    CancelResult,
    Health,
    SweepCreated,
    SweepDetail,
    SweepPage,
    TrialDetail,
    TrialDiagnosticsOut,
    TrialMetrics,
    TrialPage,
    TrialSummary,
)

API_PREFIX = "/api/v1"
M = TypeVar("M", bound=BaseModel)


class ClientError(Exception):
    """Anything that kept a request from getting an answer it could use."""


class ApiError(ClientError):
    """The server answered with an error: its status, code, message and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        self.status, self.code, self.message, self.field = status, code, message, field
        super().__init__(f"{field}: {message}" if field else message)


class ServerUnreachable(ClientError):
    """No server answered at `url` (refused, unknown host, timed out); `url` and `reason` are for
    display: a password in the URL is masked."""

    def __init__(self, url: str, reason: str):
        self.url, self.reason = masked_url(url), masked_text(reason)
        super().__init__(f"cannot reach the ssmbench server at {self.url} ({self.reason})")


class Client:
    """`url` defaults to `$SSMBENCH_API_URL` (else http://127.0.0.1:8000), `token` to
    `$SSMBENCH_TOKEN`; reads need no token unless the server sets `SSMBENCH_READ_AUTH=true`."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0):
        if url is None or token is None:
            from orchestrator.settings import Settings

            settings = Settings()
            url = url or settings.api_url
            token = token if token is not None else settings.token
        self.url = url.rstrip("/")
        self.token = token or None
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transport ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request under /api/v1 (or an absolute path such as /metrics); errors raised as above."""
        if not path.startswith(API_PREFIX) and path not in ("/metrics", "/openapi.json"):
            path = API_PREFIX + path
        if "params" in kwargs:
            kwargs["params"] = {k: _param(v) for k, v in kwargs["params"].items() if v is not None}
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ServerUnreachable(self.url, "timed out") from None
        except httpx.TransportError as err:
            raise ServerUnreachable(self.url, str(err) or type(err).__name__) from None
        if response.is_error:
            raise _api_error(response)
        return response

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        return model.model_validate_json(self.request("GET", path, params=params).content)

    # --- sweeps ---------------------------------------------------------------------------------------

    def submit(self, spec: str | Path | dict[str, Any]) -> SweepCreated:
        """Submit a sweep: a spec mapping (sent as JSON), YAML text, or the path of a YAML file (sent as
        YAML, so errors carry line numbers)."""
        if isinstance(spec, dict):
            kwargs: dict[str, Any] = {"json": spec}
        else:
            text = spec.read_text() if isinstance(spec, Path) else spec
            kwargs = {"content": text.encode(), "headers": {"Content-Type": "application/yaml"}}
        return SweepCreated.model_validate_json(self.request("POST", "/sweeps", **kwargs).content)

    def sweeps(self, *, state: str | None = None, offset: int = 0, limit: int = 50) -> SweepPage:
        return self._get("/sweeps", SweepPage, state=state, offset=offset, limit=limit)

    def sweep(self, sweep_id: int) -> SweepDetail:
        return self._get(f"/sweeps/{sweep_id}", SweepDetail)

    def cancel(self, sweep_id: int) -> CancelResult:
        return CancelResult.model_validate_json(self.request("POST", f"/sweeps/{sweep_id}/cancel").content)

    def trials(
        self, sweep_id: int, *, state: str | None = None, offset: int = 0, limit: int = 100
    ) -> TrialPage:
        return self._get(f"/sweeps/{sweep_id}/trials", TrialPage, state=state, offset=offset, limit=limit)

    def all_trials(
        self, sweep_id: int, *, state: str | None = None, page: int = 500
    ) -> Iterator[TrialSummary]:
        """Every trial of a sweep, page by page."""
        offset = 0
        while True:
            batch = self.trials(sweep_id, state=state, offset=offset, limit=page)
            yield from batch.items
            offset += len(batch.items)
            if not batch.items or offset >= batch.total:
                return

    def wait(
        self,
        sweep_id: int,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[SweepDetail], None] | None = None,
    ) -> SweepDetail:
        """Poll until the sweep is closed (completed, cancelled or failed); TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.sweep(sweep_id)
            if on_progress is not None:
                on_progress(sweep)
            if sweep.state in FINAL_SWEEP_STATES:
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} is still {sweep.state} after {timeout} s")
            time.sleep(poll)

    # --- trials ---------------------------------------------------------------------------------------

    def trial(self, trial_id: int) -> TrialDetail:
        return self._get(f"/trials/{trial_id}", TrialDetail)

    def trial_metrics(self, trial_id: int) -> TrialMetrics:
        return self._get(f"/trials/{trial_id}/metrics", TrialMetrics)

    def trial_diagnostics(self, trial_id: int, snapshots: list[str] | None = None) -> TrialDiagnosticsOut:
        """The trial's diagnostic arrays (all recorded snapshots, or only `snapshots`)."""
        return self._get(f"/trials/{trial_id}/diagnostics", TrialDiagnosticsOut, snapshot=snapshots)

    def report_data(self, sweep_ids: Sequence[int]) -> dict[str, Any]:
        """The data of a report of the sweeps: `orchestrator.report.transfer`'s JSON document."""
        return self.request("GET", "/reports/data", params={"sweep": list(sweep_ids)}).json()

    # --- leaderboard ----------------------------------------------------------------------------------

    def leaderboard(
        self, filters: LeaderboardFilters | None = None, *, offset: int = 0, limit: int | None = None
    ) -> Leaderboard:
        """The board as `orchestrator.leaderboard` builds it (the same models), so a board from the
        service and one computed locally render and compare alike; `filters` as that query takes them
        (default: none).

        With `limit`, that page of the rows; without, every row from `offset` on, fetched a page at
        a time (the server's page size). A result added meanwhile can shift rows between pages."""
        params = (filters or LeaderboardFilters()).model_dump()
        # The route's query names: `sweep` and `baselines`.
        params["sweep"], params["baselines"] = params.pop("sweep_id"), params.pop("include_baselines")
        first = self._get("/leaderboard", Leaderboard, **params, offset=offset, limit=limit)
        if limit is not None:
            return first
        rows = list(first.rows)
        while rows and offset + len(rows) < first.total_rows:
            page = self._get("/leaderboard", Leaderboard, **params, offset=offset + len(rows))
            if not page.rows:
                break
            rows += page.rows
        return first.model_copy(update={"rows": rows, "limit": None})

    def baselines(self) -> list[BaselineOut]:
        response = self.request("GET", "/baselines")
        return TypeAdapter(list[BaselineOut]).validate_json(response.content)

    # --- service --------------------------------------------------------------------------------------

    def health(self) -> Health:
        """The service's health; a 503 answer (degraded) is returned, not raised."""
        try:
            response = self._http.get(f"{API_PREFIX}/health")
        except httpx.TransportError as err:
            raise ServerUnreachable(self.url, str(err) or type(err).__name__) from None
        if response.status_code not in (200, 503):
            raise _api_error(response)
        return Health.model_validate_json(response.content)

    def metrics(self) -> str:
        """The Prometheus text."""
        return self.request("GET", "/metrics").text


def _param(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, bool) else value


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]), error.get("field"))
    except (ValueError, KeyError, TypeError):
        text = (
            response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
        )
        return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")
