"""`summary.json`: per configuration group the metrics as mean ± std over seeds, and the claims.

    {"sweeps": [{id, name, state, n_trials, trials_by_state, spec}],
     "groups": [{task, label, group_key, layer, init, reparam, train_eigenvalues, metric,
                 n_seeds, seeds, trial_ids, metrics: {NAME: {mean, std, n}}}],
     "claims": []}

`metrics` holds `test_metric` (at the best validation epoch) and `val_metric` (the best validation
value), as stored: accuracy a fraction, r² as it is; then the last epoch's scalar diagnostics that
the trials recorded (`final_grad_over_weight_mean`, `final_memory_capacity` averaged over layers, …).
`std` is the sample standard deviation over seeds (ddof = 1), None with one seed — the leaderboard's.
`claims` is empty for a plain sweep; a study fills it with
`{id, paper, statement, quantity, value, ci, n, rule, verdict}`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .data import ConfigGroup, ReportData

# The per-epoch diagnostics worth summarizing at the last epoch: scalars, or per-layer lists (mean).
EPOCH_DIAGNOSTICS = (
    "grad_over_weight_mean",
    "grad_over_weight_max",
    "eigenvalue_drift_mean",
    "eigenvalue_drift_relative",
    "memory_capacity",
)
DRIFT_PREFIX = "drift_"  # per-quantity drift (drift_re_lambda, drift_dt, …) where recorded
# `ssm.diagnostics.DRIFT_QUANTITIES` in their order (spelled out: reading a report imports no torch)
DRIFT_QUANTITIES = ("re_lambda", "im_lambda", "dt", "abs_Ab")


def mean_std(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """{mean, std, n} over the finite values; std the sample std (None for fewer than two)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = math.fsum(finite) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def epoch_scalar(metrics: dict[str, Any], key: str) -> float | None:
    """A per-epoch value as one number: a scalar as it is, a per-layer list as its mean over layers
    (ignoring missing layers); None when absent or not numeric."""
    value = metrics.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        numbers = [float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        numbers = [v for v in numbers if math.isfinite(v)]
        return math.fsum(numbers) / len(numbers) if numbers else None
    return None


def diagnostic_keys(groups: Sequence[ConfigGroup]) -> list[str]:
    """The epoch-diagnostic keys some trial of these groups recorded, in a fixed order."""
    present: dict[str, None] = {}
    for group in groups:
        for trial in group.trials:
            for metrics in trial.epochs:
                for key in metrics:
                    if key in EPOCH_DIAGNOSTICS or key.startswith(DRIFT_PREFIX):
                        present[key] = None
    ordered = [k for k in EPOCH_DIAGNOSTICS if k in present]
    drift_order = {f"{DRIFT_PREFIX}{q}": i for i, q in enumerate(DRIFT_QUANTITIES)}
    others = [k for k in present if k not in EPOCH_DIAGNOSTICS]
    return ordered + sorted(others, key=lambda k: (drift_order.get(k, len(drift_order)), k))


def group_summary(group: ConfigGroup, keys: Sequence[str]) -> dict[str, Any]:
    metrics = {
        "test_metric": mean_std(t.test_metric for t in group.trials),
        "val_metric": mean_std(t.val_metric for t in group.trials),
    }
    for key in keys:
        finals = [_last(t.epochs, key) for t in group.trials]
        if any(v is not None for v in finals):
            metrics[f"final_{key}"] = mean_std(finals)
    return {
        "task": group.task,
        "label": group.label,
        "group_key": group.group_key,
        "layer": group.layer,
        "init": group.init,
        "reparam": group.reparam,
        "train_eigenvalues": group.train_eigenvalues,
        "metric": group.metric,
        "n_seeds": len(group.trials),
        "seeds": [t.seed for t in group.trials],
        "trial_ids": [t.trial_id for t in group.trials],
        "metrics": metrics,
    }


def build_summary(data: ReportData, claims: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    keys = diagnostic_keys(data.groups)
    return {
        "sweeps": [
            {
                "id": s.id,
                "name": s.name,
                "state": s.state,
                "n_trials": s.n_trials,
                "trials_by_state": s.trials_by_state,
                "spec": s.spec,
            }
            for s in data.sweeps
        ],
        "groups": [group_summary(g, keys) for g in data.groups],
        "claims": list(claims),
    }


def _last(epochs: Sequence[dict[str, Any]], key: str) -> float | None:
    for metrics in reversed(epochs):
        value = epoch_scalar(metrics, key)
        if value is not None:
            return value
    return None
