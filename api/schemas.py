"""The service's request and response bodies (pydantic), shared by the routes and `api.client`.

Kept free of `ssm` and `orchestrator.spec` imports so that the client stays light; the sweep spec's
own schema (`orchestrator.spec.SweepSpec`) is attached to the OpenAPI document by `api.routes.sweeps`.
The leaderboard's models are the orchestrator's own (`orchestrator.leaderboard.models`), named here.
Times are UTC (ISO 8601); metrics are fractions (accuracy 0.873), except the published baselines,
which are in percent as papers print them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator import models
from orchestrator.leaderboard.models import AverageRow as AverageRow  # re-exported: response bodies
from orchestrator.leaderboard.models import Leaderboard as Leaderboard
from orchestrator.leaderboard.models import LeaderboardFilters as LeaderboardFilters
from orchestrator.leaderboard.models import LeaderboardRow as LeaderboardRow
from orchestrator.models import DIAGNOSTIC_SNAPSHOTS

SweepState = Literal[tuple(state.value for state in models.SweepState)]  # type: ignore[valid-type]
TrialState = Literal[tuple(state.value for state in models.TrialState)]  # type: ignore[valid-type]
DiagnosticSnapshot = Literal[DIAGNOSTIC_SNAPSHOTS]  # type: ignore[valid-type]

_WHEN = "2026-11-23T10:15:00Z"


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# --- errors -------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="a stable, machine-readable reason, e.g. `invalid_spec`, `sweep_not_found`")
    message: str = Field(description="what is wrong, for a human")
    field: str | None = Field(
        description="the key path, parameter or header at fault (`model.init[1]`, `limit`), or null"
    )


class ErrorResponse(BaseModel):
    model_config = _examples(
        {
            "error": {
                "code": "invalid_spec",
                "message": "unknown field; valid: layer, init, …",
                "field": "model.inits",
            }
        }
    )

    error: ErrorDetail


# --- sweeps -------------------------------------------------------------------------------------------


class SweepCreated(BaseModel):
    model_config = _examples({"id": 3, "name": "quickstart", "state": "pending", "n_trials": 32})

    id: int
    name: str
    state: SweepState
    n_trials: int = Field(description="trials planned (a search sweep: its trial budget)")


_SWEEP = {
    "id": 3,
    "name": "quickstart",
    "state": "running",
    "owner": "alice",
    "n_trials": 32,
    "trials_by_state": {"completed": 20, "running": 2, "pending": 10},
    "progress": 0.625,
    "created_at": _WHEN,
    "finished_at": None,
    "error": None,
}


class SweepSummary(BaseModel):
    model_config = _examples(_SWEEP)

    id: int
    name: str
    state: SweepState
    owner: str | None = Field(description="the name of the token that submitted it (null: submitted locally)")
    n_trials: int = Field(description="trials stored so far")
    trials_by_state: dict[str, int]
    progress: float = Field(ge=0, le=1, description="fraction of the stored trials in a final state")
    created_at: datetime
    finished_at: datetime | None
    error: str | None = Field(
        None, description="why the sweep failed (state failed): what the scheduler could not do with it"
    )


class SweepDetail(SweepSummary):
    model_config = _examples(
        {
            **_SWEEP,
            "spec": {"name": "quickstart", "tasks": [{"name": "delay", "options": {}}], "seeds": [0, 1]},
        }
    )

    spec: dict[str, Any] = Field(description="the validated sweep spec, with defaults filled in")


class SweepPage(BaseModel):
    items: list[SweepSummary]
    total: int = Field(description="sweeps matching the filter, over all pages")
    offset: int
    limit: int


class CancelResult(SweepSummary):
    model_config = _examples(
        {
            **_SWEEP,
            "state": "cancelled",
            "trials_by_state": {"completed": 20, "running": 2, "cancelled": 10},
            "finished_at": _WHEN,
            "cancelled_trials": 10,
        }
    )

    cancelled_trials: int = Field(
        description="pending trials cancelled now (running ones stop at their next epoch)"
    )


# --- trials -------------------------------------------------------------------------------------------


_TRIAL = {
    "id": 41,
    "sweep_id": 3,
    "number": 0,
    "state": "completed",
    "attempt": 1,
    "task": "listops",
    "layer": "s4d",
    "init": "inv",
    "reparam": "exp",
    "train_eigenvalues": True,
    "seed": 0,
    "config_hash": "5f1c…",
    "reused_from": None,
    "error": None,
    "created_at": _WHEN,
    "started_at": _WHEN,
    "finished_at": _WHEN,
}


class TrialResultOut(BaseModel):
    status: str
    metric: str = Field(description="`accuracy` or `r2`")
    best_epoch: int | None
    val_metric: float | None
    test_metric: float | None = Field(description="the test metric at the best validation epoch")


class TrialSummary(BaseModel):
    model_config = _examples(_TRIAL)

    id: int
    sweep_id: int
    number: int = Field(description="position within the sweep")
    state: TrialState
    attempt: int = Field(description="how many times the trial was started")
    task: str
    layer: str
    init: str
    reparam: str
    train_eigenvalues: bool
    seed: int
    config_hash: str
    reused_from: int | None = Field(description="the trial whose completed result this one reuses")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: TrialResultOut | None = Field(None, description="the result, once the trial finished")


class TrialPage(BaseModel):
    items: list[TrialSummary]
    total: int
    offset: int
    limit: int


class TrialDetail(TrialSummary):
    model_config = _examples(
        {
            **_TRIAL,
            "config": {"task": {"name": "listops", "options": {}}, "model": {"layer": "s4d"}, "seed": 0},
            "node_id": "5e1f…",
            "worker": "node-1:4242",
            "optuna_trial": None,
            "result": {
                "status": "completed",
                "metric": "accuracy",
                "best_epoch": 2,
                "val_metric": 0.6,
                "test_metric": 0.59,
            },
        }
    )

    config: dict[str, Any] = Field(description="the TrialConfig (task, model, optim, seed, diagnostics)")
    node_id: str | None
    worker: str | None
    optuna_trial: int | None
    result: TrialResultOut | None


class EpochMetricOut(BaseModel):
    """One epoch of one attempt: the `on_epoch` dict (loss, val_metric, seconds, tokens_per_s, …)."""

    model_config = ConfigDict(extra="allow")

    attempt: int
    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    val_metric: float | None = None


class TrialMetrics(BaseModel):
    model_config = _examples(
        {
            "trial_id": 41,
            "epochs": [{"attempt": 1, "epoch": 0, "train_loss": 1.2, "val_loss": 1.1, "val_metric": 0.41}],
        }
    )

    trial_id: int
    epochs: list[EpochMetricOut]


Number = float | None  # None: NaN (an unstable channel); JSON has no NaN


class LayerDiagnostics(BaseModel):
    """One SSM layer at one snapshot (`ssm.diagnostics.layer_arrays`), numbers to float32's 7
    significant digits. A complex number is an [re, im] pair."""

    model_config = ConfigDict(extra="allow")

    layer: int = Field(description="the SSM layer's index, from 0 (input side)")
    eigenvalues: list[Any] = Field(
        description="continuous eigenvalues λ as [re, im]: S4D (H, N/2, 2), S5 (N/2, 2), S4 eig(A) (H, N, 2)"
    )
    dt: list[Number] = Field(description="the step Δ per channel (H,), for S5 per state (N/2,)")
    Ab: list[Any] = Field(description="discrete eigenvalues, shaped as `eigenvalues` (for S4 eig(Ab))")
    memory_function: list[list[Number]] = Field(
        description="MF per input channel (channels, max_lag): [h][k] is MF at lag k = 0 … max_lag − 1"
    )
    memory_capacity: list[Number] = Field(
        description="MC per input channel (channels,): the sum of MF over all lags, closed-form tail included"
    )


class FourierNoisePoint(BaseModel):
    frequency: float | None = Field(description="cycles per step (0.5: Nyquist); None: the clean input")
    accuracy: float = Field(description="test accuracy, a fraction")


class TrialDiagnosticsOut(BaseModel):
    """A trial's end-of-trial diagnostics. A trial without them (none asked for — `diagnostics.every`
    0 —, not finished yet, or failed) answers with `attempt` None, no snapshots and no table. The
    per-epoch diagnostic scalars (gradient-over-weight, drift, MC per layer) are in the epoch
    metrics (`GET /trials/{id}/metrics`)."""

    model_config = _examples(
        {
            "trial_id": 41,
            "source_trial_id": 41,
            "attempt": 1,
            "snapshots": {
                "init": [
                    {
                        "layer": 0,
                        "eigenvalues": [[[-0.5, 3.141593], [-0.5, 9.424778]]],
                        "dt": [0.01],
                        "Ab": [[[0.9950125, 0.03141076], [0.9950125, 0.09410129]]],
                        "memory_function": [[1.0, 0.99, 0.98]],
                        "memory_capacity": [4.0],
                    }
                ]
            },
            "fourier_noise": [{"frequency": None, "accuracy": 0.91}, {"frequency": 0.1, "accuracy": 0.62}],
        }
    )

    trial_id: int
    source_trial_id: int = Field(
        description="the trial that computed them: this one, or the trial whose result it reused"
    )
    attempt: int | None = Field(description="the attempt that wrote them; None when there are none")
    snapshots: dict[DiagnosticSnapshot, list[LayerDiagnostics]] = Field(
        description="init, best (the best validation epoch's weights) and end: one entry per SSM layer; "
        "only those recorded (a diverged trial has init only)"
    )
    fourier_noise: list[FourierNoisePoint] | None = Field(
        description="accuracy under Fourier-mode input noise, per frequency (diagnostics.fourier); None if not run"
    )


# --- leaderboard --------------------------------------------------------------------------------------
# The board is `orchestrator.leaderboard.Leaderboard` (with LeaderboardRow, AverageRow and
# LeaderboardFilters, imported above): one set of models for the query, the route and the client.


class BaselineOut(BaseModel):
    model_config = _examples(
        {
            "model": "S4D-LegS",
            "task": "listops",
            "test_accuracy": 60.47,
            "source": "Gu, Gupta, Goel, Ré 2022, On the Parameterization and Initialization of Diagonal "
            'State Space Models (NeurIPS), LRA table, row "S4D-LegS"; as reprinted in Hasani et al. 2023, '
            "Liquid Structural State-Space Models (ICLR), Table 1",
        }
    )

    model: str
    task: str = Field(
        description="an LRA task; `average`: the paper's six-task average (a failed Path-X counted as 50%); "
        "`average_without_pathx`: its own average over the five other tasks, where it publishes one"
    )
    test_accuracy: float | None = Field(description="percent; null: the model failed the task (chance)")
    source: str = Field(description="the paper and table")


# --- health -------------------------------------------------------------------------------------------


class ComponentHealth(BaseModel):
    ok: bool
    detail: str


class SchedulerHealth(BaseModel):
    enabled: bool = Field(description="false on an API-only replica (`ssmbench serve --no-scheduler`)")
    state: Literal["disabled", "starting", "active", "standby", "error", "stopped"] = Field(
        description="active: holds the lease and schedules; standby: another replica holds it"
    )
    holds_lease: bool
    in_flight: int = Field(description="trials this replica runs now")
    last_step_at: datetime | None = Field(description="when the last scheduling pass that went through ended")
    failing_passes: int = Field(0, description="consecutive scheduling passes that failed, up to now")
    last_error: str | None = Field(description="what the failing passes ran into, in a few words")


class Health(BaseModel):
    model_config = _examples(
        {
            "status": "ok",
            "version": "0.1.0",
            "database": {"ok": True, "detail": "postgresql"},
            "ray": {"ok": True, "detail": "connected: 2 CPU, 0 GPU"},
            "scheduler": {
                "enabled": True,
                "state": "active",
                "holds_lease": True,
                "in_flight": 2,
                "last_step_at": _WHEN,
                "failing_passes": 0,
                "last_error": None,
            },
        }
    )

    status: Literal["ok", "degraded"] = Field(
        description="ok: the database answers and, where the scheduler runs, Ray does too and the "
        "scheduling loop is not failing pass after pass (503 otherwise)"
    )
    version: str
    database: ComponentHealth
    ray: ComponentHealth
    scheduler: SchedulerHealth
