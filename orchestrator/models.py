"""The database schema (SQLAlchemy 2 declarative). The database is the source of truth: every
state a sweep passes through is a row here, written idempotently (DESIGN.md "Contracts")."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class TrialState(StrEnum):
    """A trial's life: pending → running → one final state (DESIGN.md "Contracts"); a lost worker's
    trial goes back to pending while retries remain. Members are strings: they compare equal to
    what the `state` column holds."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PRUNED = "pruned"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"


FINAL_TRIAL_STATES = tuple(s for s in TrialState if s not in (TrialState.PENDING, TrialState.RUNNING))


class SweepState(StrEnum):
    """A sweep's life: pending (nothing started) → running → completed (every trial final),
    cancelled (by its owner or its wall budget) or failed (the scheduler could not handle it: the
    reason is in `Sweep.error`)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


OPEN_SWEEP_STATES = (SweepState.PENDING, SweepState.RUNNING)
FINAL_SWEEP_STATES = tuple(s for s in SweepState if s not in OPEN_SWEEP_STATES)

TOKEN_ROLES = ("user", "admin")
DIAGNOSTIC_SNAPSHOTS = ("init", "best", "end")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator):
    """A timestamp stored in UTC and read back timezone-aware, on every backend: SQLite keeps no
    zone, so a naive value read from it (or given to it) is UTC by this project's rule."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @staticmethod
    def _utc(value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        return self._utc(value)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return self._utc(value)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, datetime: UtcDateTime}


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    state: Mapped[str] = mapped_column(String(20), default=SweepState.PENDING, index=True)
    error: Mapped[str | None] = mapped_column(Text, doc="why the sweep failed (state failed), for its owner")
    owner: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()

    trials: Mapped[list[Trial]] = relationship(back_populates="sweep", order_by="Trial.id")


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        Index("ix_trials_state_sweep", "state", "sweep_id"),
        Index("ix_trials_sweep_state", "sweep_id", "state"),  # 0009: counts per state of sweeps
        Index("ix_trials_sweep_number", "sweep_id", "number"),  # 0009: a page in planning order
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer, doc="position within the sweep")
    state: Mapped[str] = mapped_column(String(20), default=TrialState.PENDING)
    attempt: Mapped[int] = mapped_column(Integer, default=0, doc="incremented each time the trial is started")
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    group_key: Mapped[str] = mapped_column(String(64), index=True, doc="hash of the config without the seed")
    # denormalized for leaderboard filters
    task: Mapped[str] = mapped_column(String(64), index=True)
    layer: Mapped[str] = mapped_column(String(16))
    init: Mapped[str] = mapped_column(String(16))
    reparam: Mapped[str] = mapped_column(String(16))
    train_eigenvalues: Mapped[bool] = mapped_column(Boolean)
    seed: Mapped[int] = mapped_column(Integer)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    optuna_trial: Mapped[int | None] = mapped_column(Integer, doc="Optuna trial number (search sweeps)")
    reused_from: Mapped[int | None] = mapped_column(
        ForeignKey("trials.id"), doc="trial whose result was reused"
    )
    worker: Mapped[str | None] = mapped_column(String(200))
    node_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    sweep: Mapped[Sweep] = relationship(back_populates="trials")
    result: Mapped[Result | None] = relationship(viewonly=True, doc="the completed result, if any")


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (
        UniqueConstraint("trial_id", "attempt", "epoch", name="uq_epoch_metrics_trial_attempt_epoch"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_metric: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, doc="the whole on_epoch dict")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Result(Base):
    """One row per completed (or pruned) trial: the test metric at the best validation epoch."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), unique=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    metric: Mapped[str] = mapped_column(String(20))
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    val_metric: Mapped[float | None] = mapped_column(Float)
    test_metric: Mapped[float | None] = mapped_column(Float, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSON, doc="the TrialResult without its `diagnostics` (those are in `trial_diagnostics`)"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrialDiagnostics(Base):
    """The end-of-trial diagnostics of a trial, written once, with its result, by the attempt that
    finished it (`orchestrator.store.record_diagnostics`): the Fourier-noise table here, the
    per-layer arrays in `trial_diagnostic_arrays`. The per-epoch diagnostic scalars are not here:
    they are part of each epoch's `epoch_metrics.metrics`."""

    __tablename__ = "trial_diagnostics"

    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, doc="the attempt that wrote them")
    fourier_noise: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON, doc='`ssm.diagnostics.fourier_noise_robustness`: [{"frequency": f or None, "accuracy": a}, ...]'
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrialDiagnosticArray(Base):
    """One array of one SSM layer at one snapshot of a trial (`ssm.diagnostics.layer_arrays`):
    quantity `eigenvalues` (λ), `dt`, `Ab`, `memory_function` (MF, channels × max_lag) or
    `memory_capacity` (MC); a complex array is stored as [re, im] pairs in a last axis of 2.

    `data` is the array as float32 little-endian, its bytes shuffled (every first byte of the
    values, then every second, …) and zlib-compressed; `shape` gives it back its axes
    (`orchestrator.array_codec`). NaN marks an unstable channel."""

    __tablename__ = "trial_diagnostic_arrays"

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trial_diagnostics.trial_id", ondelete="CASCADE"), primary_key=True
    )
    snapshot: Mapped[str] = mapped_column(String(8), primary_key=True, doc="init | best | end")
    layer: Mapped[int] = mapped_column(Integer, primary_key=True, doc="the SSM layer's index, from 0")
    quantity: Mapped[str] = mapped_column(String(40), primary_key=True)
    shape: Mapped[list[int]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Baseline(Base):
    """A published accuracy (REFERENCE.md §7), shown on the leaderboard as a labelled reference row."""

    __tablename__ = "baselines"
    __table_args__ = (UniqueConstraint("model", "task", name="uq_baselines_model_task"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(64))
    test_accuracy: Mapped[float | None] = mapped_column(Float, doc="percent; None: the model failed the task")
    source: Mapped[str] = mapped_column(String(300))


class ApiToken(Base):
    """The credential of one owner (`name`): valid while not revoked and not past `expires_at`."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="sha256 hex of the token")
    role: Mapped[str] = mapped_column(String(10), default="user", server_default="user", doc="user | admin")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(doc="None: never expires")
    revoked_at: Mapped[datetime | None] = mapped_column()


class SchedulerLease(Base):
    """At most one scheduler acts on a database: the holder renews `expires_at`; others wait it out."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column()


class LeaderboardEntry(Base):
    """A completed trial already added to `leaderboard_cells`: recording a trial twice adds nothing
    (`orchestrator.leaderboard.record_result_aggregate`)."""

    __tablename__ = "leaderboard_entries"

    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True)


class LeaderboardCell(Base):
    """Running sums of the test metric per task and configuration group, over every sweep, kept in
    the transaction that stores each result — the unfiltered leaderboard reads these few thousand
    rows instead of every result. A reused result (`Trial.reused_from`) is not counted again; its
    sweep is still listed in `sweep_ids`."""

    __tablename__ = "leaderboard_cells"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    layer: Mapped[str] = mapped_column(String(16))
    init: Mapped[str] = mapped_column(String(16))
    reparam: Mapped[str] = mapped_column(String(16))
    train_eigenvalues: Mapped[bool] = mapped_column(Boolean)
    metric: Mapped[str] = mapped_column(String(20))
    n: Mapped[int] = mapped_column(Integer, doc="results counted")
    sum_x: Mapped[float] = mapped_column(Float, doc="Σ test_metric")
    sum_xx: Mapped[float] = mapped_column(Float, doc="Σ test_metric²")
    sweep_ids: Mapped[str] = mapped_column(Text, doc='the sweeps with a trial here, as ",3,17,"')
    trial_id: Mapped[int | None] = mapped_column(
        ForeignKey("trials.id", ondelete="SET NULL"), doc="a trial of the group: its config names the group"
    )


class StudyRunRecord(Base):
    """One run of a built-in study (`orchestrator.studies.runner.run_study`), written once its claims
    are judged: the sweeps it ran `{part: sweep id}` and the judged claims, each
    `{id, paper, statement, quantity, value, ci, n, rule, verdict}`. A re-run adds a row."""

    __tablename__ = "study_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    study: Mapped[str] = mapped_column(String(40), index=True, doc="the registry's name: memory, ptd, …")
    scale: Mapped[str] = mapped_column(String(10), doc="quick | full | smoke")
    sweeps: Mapped[dict[str, Any]] = mapped_column(JSON, doc="{part: sweep id}")
    claims: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, doc="when the run started")
    finished_at: Mapped[datetime | None] = mapped_column(doc="when its claims were judged")
