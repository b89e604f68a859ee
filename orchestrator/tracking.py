"""Experiment tracking from the epoch hook, optional: each trial a run in MLflow and/or TensorBoard.

Configured per sweep, in the spec or by `ssmbench run --mlflow-uri/--tensorboard-dir`:

    tracking:
      mlflow: {uri: "sqlite:///mlflow.db", experiment: my-study}   # experiment: default the sweep's name
      tensorboard: {dir: ./tb}                                # a run directory per trial below it

The worker reads the block from its sweep's stored spec, so it works the same for `run` and for a
submitted sweep; the URI and directory must be reachable from the Ray workers. A run is named
`sweep-<id>/trial-<id>`, its parameters are the trial's flat configuration (`model.init`, `optim.lr`,
… as in `ssmbench export`), its metrics the numeric scalars of each epoch's `on_epoch` dict at step
= epoch. The packages (`ssmbench[tracking]`) are imported only when a sweep asks for them.

MLflow needs only its client, `mlflow-skinny`: a `sqlite:///` store (the one MLflow recommends; it
creates its tables on first use, some seconds) or a `file:` store, which MLflow 3 keeps in
maintenance mode and refuses unless `MLFLOW_ALLOW_FILE_STORE` is set — asking for one in the spec
sets it (in the worker's process) — or an `http://` tracking server.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

TRACKING_INSTALL = "pip install 'ssmbench[tracking]'"
logger = logging.getLogger(__name__)
_MLFLOW_BATCH = 100  # MLflow's limit on parameters per log_batch call


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested configuration as dotted keys: {"model": {"init": "lin"}} → {"model.init": "lin"}.
    An empty section (no task options) gives no column; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MlflowTracking(_Strict):
    uri: str = Field(
        min_length=1, max_length=2000, description="MLflow tracking URI (file:, sqlite:, http://…)"
    )
    experiment: str | None = Field(
        None, min_length=1, max_length=500, description="default: the sweep's name"
    )


class TensorboardTracking(_Strict):
    dir: str = Field(
        min_length=1, max_length=4096, description="event files go to <dir>/sweep-<id>/trial-<id>"
    )


class TrackingSpec(_Strict):
    """The `tracking` block of a sweep spec."""

    mlflow: MlflowTracking | None = None
    tensorboard: TensorboardTracking | None = None


class TrackingError(RuntimeError):
    """Tracking is configured but cannot start (its package is missing); the message is one line."""


def require_packages(spec: TrackingSpec | None) -> None:
    """Raise TrackingError naming the install command when a configured tracker's package is
    missing (the CLI checks this before running, so no trial fails for it)."""
    if spec is None:
        return
    for wanted, module in ((spec.mlflow, "mlflow"), (spec.tensorboard, "tensorboard")):
        if wanted is not None:
            _import(module)


def tracking_for_local_run(
    spec: TrackingSpec | None, *, mlflow_uri: str | None = None, tensorboard_dir: str | None = None
) -> TrackingSpec | None:
    """The tracking of a sweep run here (`ssmbench run`): the spec's block with the flags laid over
    it, relative paths made absolute (the Ray workers need not share this directory), and the
    packages checked (TrackingError naming the install command when one is missing)."""
    merged = spec.model_copy(deep=True) if spec is not None else TrackingSpec()
    if mlflow_uri is not None:
        merged.mlflow = MlflowTracking(
            uri=mlflow_uri, experiment=merged.mlflow.experiment if merged.mlflow else None
        )
    if tensorboard_dir is not None:
        merged.tensorboard = TensorboardTracking(dir=tensorboard_dir)
    if merged.mlflow is None and merged.tensorboard is None:
        return None
    if merged.mlflow is not None:
        for scheme in ("file:", "sqlite:///"):  # a relative path: from here, not a worker's directory
            uri = merged.mlflow.uri
            if uri.startswith(scheme) and not uri[len(scheme) :].startswith("/"):
                merged.mlflow.uri = scheme + os.path.abspath(uri[len(scheme) :])
    if merged.tensorboard is not None:
        merged.tensorboard.dir = os.path.abspath(os.path.expanduser(merged.tensorboard.dir))
    require_packages(merged)
    return merged


def run_name(sweep_id: int, trial_id: int) -> str:
    return f"sweep-{sweep_id}/trial-{trial_id}"


class TrialTracker:
    """The runs of one trial attempt: `log_epoch(metrics)` after each epoch, `close(state)` at the end.
    With no tracking configured it does nothing."""

    def __init__(
        self,
        spec: TrackingSpec | None,
        *,
        sweep_id: int,
        sweep_name: str,
        trial_id: int,
        attempt: int,
        config: dict[str, Any],
    ):
        self.spec, self.sweep_name, self.attempt, self.config = spec, sweep_name, attempt, config
        self.name = run_name(sweep_id, trial_id)
        self._runs: list[_MlflowRun | _TensorboardRun] | None = None  # opened at the first epoch
        self._warned = False

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        """Log the epoch's numeric scalars (lists such as per-layer capacities are left out) at
        step = `metrics["epoch"]`. The runs open at the first call: a missing package raises
        TrackingError there (in training, so the trial fails with it); a later logging error is a
        warning, not the end of a trial."""
        if self.spec is None:
            return
        if self._runs is None:
            self._runs = self._open()
        scalars = {
            key: float(value)
            for key, value in metrics.items()
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        }
        step = int(metrics.get("epoch", 0))
        for run in self._runs:
            try:
                run.log(scalars, step)
            except Exception as err:
                self._warn(err)

    def close(self, state: str = "completed") -> None:
        for run in self._runs or ():
            try:
                run.close(state)
            except Exception as err:
                self._warn(err)

    def _open(self) -> list[_MlflowRun | _TensorboardRun]:

        assert self.spec is not None
        params = flat_config(self.config)
        runs: list[_MlflowRun | _TensorboardRun] = []
        if self.spec.mlflow is not None:
            experiment = self.spec.mlflow.experiment or self.sweep_name
            runs.append(_MlflowRun(self.spec.mlflow.uri, experiment, self.name, params, self.attempt))
        if self.spec.tensorboard is not None:
            runs.append(_TensorboardRun(self.spec.tensorboard.dir, self.name, params))
        return runs

    def _warn(self, err: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "tracking %s: %s: %s (further errors not shown)", self.name, type(err).__name__, err
            )


def open_trial_tracker(sessions, trial_id: int, attempt: int, config: dict[str, Any]) -> TrialTracker:
    """The tracker of a trial attempt, from its sweep's stored `tracking` block (a tracker that does
    nothing when the sweep has none). Reads the database only; the runs open at the first epoch."""
    from sqlalchemy import select

    from .db import in_transaction
    from .models import Sweep, Trial

    query = (
        select(Sweep.id, Sweep.name, Sweep.spec)
        .join(Trial, Trial.sweep_id == Sweep.id)
        .where(Trial.id == trial_id)
    )
    sweep_id, sweep_name, spec = in_transaction(sessions, lambda s: tuple(s.execute(query).one()))
    block = (spec or {}).get("tracking")
    return TrialTracker(
        TrackingSpec.model_validate(block) if block else None,
        sweep_id=sweep_id,
        sweep_name=sweep_name,
        trial_id=trial_id,
        attempt=attempt,
        config=config,
    )


# --- the two backends ----------------------------------------------------------------------------


class _MlflowRun:
    """One MLflow run through an explicit `MlflowClient` (no process-global active run: a Ray worker
    process may train several trials)."""

    _STATUS: ClassVar[dict[str, str]] = {"completed": "FINISHED", "failed": "FAILED", "diverged": "FAILED"}

    def __init__(self, uri: str, experiment: str, name: str, params: dict[str, Any], attempt: int):
        _import("mlflow")
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if uri.startswith("file:"):  # asked for by name: MLflow 3 refuses its file store otherwise
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            try:
                experiment_id = self.client.create_experiment(experiment)
            except MlflowException:  # another worker created it first
                experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            experiment_id = found.experiment_id
        run = self.client.create_run(experiment_id, run_name=name, tags={"ssmbench.attempt": str(attempt)})
        self.run_id = run.info.run_id
        items = [Param(key, _text(value)) for key, value in params.items()]
        for start in range(0, len(items), _MLFLOW_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _MLFLOW_BATCH])

    def log(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in scalars.items()])

    def close(self, state: str) -> None:
        self.client.set_terminated(self.run_id, status=self._STATUS.get(state, "KILLED"))


class _TensorboardRun:
    """Event files under `<dir>/sweep-<id>/trial-<id>`: a scalar per metric and epoch, the flat
    configuration as the run's hyperparameters (the HParams dashboard)."""

    def __init__(self, directory: str, name: str, params: dict[str, Any]):
        _import("tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=f"{directory.rstrip('/')}/{name}")
        # hparams takes numbers, text and booleans: the rest (None, lists) as text
        values = {k: v if isinstance(v, int | float | str | bool) else _text(v) for k, v in params.items()}
        for summary in hparams(values, {}):  # in this run's own directory, not add_hparams' sub-run
            self.writer.file_writer.add_summary(summary)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self, state: str) -> None:
        self.writer.close()


def _text(value: Any) -> str:
    """A parameter as text: lists as JSON, None as "None"."""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _import(module: str) -> None:
    try:
        __import__(module)
    except ModuleNotFoundError:
        raise TrackingError(f"tracking with {module} needs it installed: {TRACKING_INSTALL}") from None
