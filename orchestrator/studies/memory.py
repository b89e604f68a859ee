"""Study `memory`: Guan, Kubota, Kuniyoshi, Nakajima — "Memory determines learning direction: a
theory of gradient-based optimization in state space models" (CLAIMS.md §1, REFERENCE.md §4).

Varies init (S4D-Inv, S4D-Lin) × {trained, frozen} eigenvalues (frozen: the reservoir-computing
setting) × initial memory length (the dt range: long = S4D's default [1e-3, 1e-1], short = [0.1, 1])
on a memory-bound task, with diagnostics on (MF(τ), eigenvalues and Ā at init / best / end, drift of
Re λ, Im λ and dt per epoch).

What the quick scale can show: on the delay task (recall a token 48 steps back, 64 steps, a small
two-layer S4D, 8 epochs, 3 seeds) whether frozen eigenvalues keep up with trained ones, whether a
long initial memory beats a short one, how far trained eigenvalues move and whether the (truncated)
memory capacity grows. What it cannot show: the paper's LRA numbers (comparable or higher accuracy
on LRA, the overfitting gap of long training) — a few epochs on a toy task decide nothing about
those, so a `fails` or `inconclusive` here is a statement about this small setting only; and the
"~10% of parameters" figure depends on the model's width and depth (a 16-wide model has a larger
share in its SSM than the paper's 128-wide six-layer ones), so its verdict at quick scale is
expected to differ from the paper's. `--scale full` runs the paper's LRA setup.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from .base import Study, StudyFigure
from .claims import (
    ClaimDefinition,
    at_least,
    below,
    direct,
    judged,
    negative,
    positive,
    t_interval,
    threshold,
)
from .results import StudyResults, TrialOutcome, paired_differences

PAPER = "Guan, Kubota, Kuniyoshi, Nakajima — Memory determines learning direction (SSM memory theory)"
LONG, SHORT = "long-memory", "short-memory"
CONVERGED_FRACTION = 0.95  # "epochs to reach 95% of the best validation metric"

CLAIMS = (
    ClaimDefinition(
        "rc-comparable",
        PAPER,
        "With structured inits the reservoir setting (frozen eigenvalues) reaches comparable or higher "
        "accuracy than training them",
        "test accuracy frozen − trained (percentage points), paired by init and seed, long initial memory",
        at_least(1.0, "frozen − trained (points)"),
    ),
    ClaimDefinition(
        "rc-faster",
        PAPER,
        "The reservoir setting converges faster",
        "epochs to reach 95% of the best validation accuracy, frozen − trained (epochs), paired by init "
        "and seed, long initial memory",
        negative("frozen − trained (epochs)"),
    ),
    ClaimDefinition(
        "rc-less-overfitting",
        PAPER,
        "The reservoir setting mitigates overfitting better",
        "train–validation loss gap (val loss − train loss at the best epoch), trained − frozen, paired by "
        "init and seed, long initial memory",
        positive("trained − frozen gap"),
    ),
    ClaimDefinition(
        "long-initial-memory",
        PAPER,
        "The initial memory must be as long as possible: a long initial memory learns better than a "
        "short one",
        "test accuracy long − short initial memory (percentage points), trained eigenvalues, paired by "
        "init and seed",
        positive("long − short (points)"),
    ),
    ClaimDefinition(
        "modest-drift",
        PAPER,
        "Trained eigenvalues change only modestly",
        "relative drift at the end of training, the larger of Re λ's and Im λ's (mean|q − q₀| / mean|q₀|), "
        "trained eigenvalues, long initial memory",
        # fixed before any run: "modest" = less than 20% of the initial magnitude
        below(0.2, "the relative drift"),
    ),
    ClaimDefinition(
        "mf-not-improved",
        PAPER,
        "The memory function often does not significantly improve with training",
        "relative change of the truncated memory capacity Σ_{τ ≤ max_lag} MF(τ) (mean over channels and "
        "layers) from init to end, trained eigenvalues, long initial memory",
        below(0.1, "the relative change"),
    ),
    ClaimDefinition(
        "rc-parameter-share",
        PAPER,
        "Fixing the recurrent weights removes approximately 10% of the parameters",
        "frozen / total parameters of the frozen model (fraction; a direct count, no seeds)",
        threshold(lambda v: 0.05 <= v <= 0.15, "holds if the fraction lies in [0.05, 0.15]; fails otherwise"),
    ),
)


def epochs_to_converge(trial: TrialOutcome, fraction: float = CONVERGED_FRACTION) -> float | None:
    """The first epoch (counted from 1) whose validation metric reaches `fraction` × the best one."""
    values = [e.get("val_metric") for e in trial.epochs]
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return None
    target = fraction * max(finite)
    for i, v in enumerate(values):
        if v is not None and v >= target:
            return float(i + 1)
    return None


def overfitting_gap(trial: TrialOutcome) -> float | None:
    """val loss − train loss at the best epoch."""
    best = None if trial.result is None else trial.result.get("best_epoch")
    for e in trial.epochs:
        if e.get("epoch") == best and e.get("val_loss") is not None and e.get("train_loss") is not None:
            return float(e["val_loss"]) - float(e["train_loss"])
    return None


def final_drift(trial: TrialOutcome) -> float | None:
    """max(relative drift of Re λ, of Im λ) at the last epoch with diagnostics."""
    for e in reversed(trial.epochs):
        parts = [e.get("drift_re_lambda"), e.get("drift_im_lambda")]
        parts = [p for p in parts if p is not None]
        if parts:
            return float(max(parts))
    return None


def truncated_capacity(per_layer: list[dict[str, Any]] | None) -> float | None:
    """Σ_τ MF(τ) over the recorded lags, mean over channels (unstable ones left out) and layers."""
    if not per_layer:
        return None
    sums = []
    for layer in per_layer:
        mf = np.asarray(
            [[np.nan if v is None else v for v in row] for row in layer["memory_function"]], dtype=float
        )
        channel = mf.sum(axis=-1) if mf.ndim > 1 else np.asarray([mf.sum()])
        channel = channel[np.isfinite(channel)]
        if channel.size:
            sums.append(float(channel.mean()))
    return float(np.mean(sums)) if sums else None


def capacity_change(trial: TrialOutcome) -> float | None:
    before, after = truncated_capacity(trial.arrays("init")), truncated_capacity(trial.arrays("end"))
    if before is None or after is None or before <= 0:
        return None
    return (after - before) / before


def _accuracy_points(trial: TrialOutcome) -> float | None:
    return None if trial.test_metric is None else 100.0 * trial.test_metric


def _key(trial: TrialOutcome) -> tuple:
    return (trial.get("model.init"), trial.seed)


class MemoryStudy(Study):
    name = "memory"
    paper = PAPER
    summary = "init × {trained, frozen} × initial memory length on a memory-bound task"
    claims = CLAIMS
    time_per_scale: ClassVar[dict[str, str]] = {
        "smoke": "< 1 min",
        "quick": "see bench/RESULTS.md",
        "full": "~days on 1 GPU",
    }

    def judge(self, results: StudyResults, scale: str) -> list[dict[str, Any]]:
        trained = results.where(LONG, model__train_eigenvalues=True)
        frozen = results.where(LONG, model__train_eigenvalues=False)
        short_trained = results.where(SHORT, model__train_eigenvalues=True)
        out = []

        diffs = paired_differences(frozen, trained, _accuracy_points, _key)
        out.append(judged(self.claim("rc-comparable"), t_interval(diffs), {"differences": diffs}))

        diffs = paired_differences(frozen, trained, epochs_to_converge, _key)
        out.append(judged(self.claim("rc-faster"), t_interval(diffs), {"differences": diffs}))

        diffs = paired_differences(trained, frozen, overfitting_gap, _key)
        out.append(judged(self.claim("rc-less-overfitting"), t_interval(diffs), {"differences": diffs}))

        diffs = paired_differences(trained, short_trained, _accuracy_points, _key)
        out.append(judged(self.claim("long-initial-memory"), t_interval(diffs), {"differences": diffs}))

        drifts = [d for d in map(final_drift, trained) if d is not None]
        out.append(judged(self.claim("modest-drift"), t_interval(drifts), {"values": drifts}))

        changes = [c for c in map(capacity_change, trained) if c is not None]
        out.append(judged(self.claim("mf-not-improved"), t_interval(changes), {"values": changes}))

        shares = [
            t.result["parameters"]["frozen"] / t.result["parameters"]["total"]
            for t in frozen
            if t.result and t.result.get("parameters", {}).get("total")
        ]
        share = float(np.mean(shares)) if shares else None
        out.append(judged(self.claim("rc-parameter-share"), direct(share), {"values": shares}))
        return out

    def figures(self, results: StudyResults, scale: str) -> Iterator[StudyFigure]:
        from . import figures

        yield from figures.memory_figures(self, results)
