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

from .base import Study, StudyFigure, wall_times
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
from .figures import (
    curves_figure,
    drawing_module,
    epoch_curves,
    layers_complex,
    mean_memory_function,
    memory_function,
    seed_values,
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
        mf = memory_function(layer)
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
    question = (
        "Does the initial memory function decide what an SSM "
        "learns, and do frozen eigenvalues (reservoir computing) match trained ones?"
    )
    claims = CLAIMS
    time_per_scale: ClassVar[dict[str, str]] = wall_times(quick="5.0 min†", full="~days on 1 GPU")

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
        yield from memory_figures(self, results)


# --- memory ----------------------------------------------------------------------------------------


def memory_figures(study, results: StudyResults) -> Iterator[StudyFigure]:
    drawing = drawing_module()
    inits = results.values("model.init")

    def arm(part: str, init: str, trained: bool) -> list[TrialOutcome]:
        return results.where(part, model__init=init, model__train_eigenvalues=trained)

    configs = [  # (label in words, part, init, trained)
        (
            f"S4D-{init.capitalize()} · {'trained' if trained else 'frozen'} · {part.split('-')[0]} memory",
            part,
            init,
            trained,
        )
        for part in (LONG, SHORT)
        for init in inits
        for trained in (True, False)
    ]

    def per_config(value) -> list:
        """Each configuration's `value` per seed, for a seed-points figure."""
        return [seed_values(label, arm(part, init, trained), value) for label, part, init, trained in configs]

    yield StudyFigure(
        "memory-validation",
        "Validation accuracy per epoch: trained vs frozen eigenvalues",
        "Mean over seeds (line) and min–max (band) of the validation accuracy after each epoch.",
        curves_figure(
            [
                epoch_curves(label, arm(part, init, trained), "val_metric", i)
                for i, (label, part, init, trained) in enumerate(configs)
            ],
            title="Validation accuracy per epoch (delay task)",
            xlabel="epoch",
            ylabel="validation accuracy (%)",
            scale=100.0,
        ),
    )
    yield StudyFigure(
        "memory-accuracy-vs-initial-memory",
        "Test accuracy by initial memory length",
        "Each seed's test accuracy (dots), mean ± 1 std (bar); long memory: dt ∈ [1e-3, 1e-1], short: dt ∈ [0.1, 1].",
        drawing.seed_points_figure(
            per_config(lambda t: t.test_metric),
            title="Test accuracy by initial memory length, trained vs frozen",
            xlabel="test accuracy (%)",
            scale=100.0,
        ),
    )
    yield StudyFigure(
        "memory-epochs-to-95",
        "Epochs to reach 95% of the best validation accuracy",
        "Per seed (dots), mean ± 1 std (bar).",
        drawing.seed_points_figure(
            per_config(epochs_to_converge),
            title="Epochs to reach 95% of the best validation accuracy",
            xlabel="epochs (counted from 1)",
        ),
    )
    yield StudyFigure(
        "memory-train-val-gap",
        "Train–validation loss gap at the best epoch",
        "Validation loss − training loss at the best epoch (nats); per seed (dots), mean ± 1 std (bar).",
        drawing.seed_points_figure(
            per_config(overfitting_gap),
            title="Train–validation loss gap at the best epoch",
            xlabel="validation loss − training loss (cross-entropy, nats)",
        ),
    )
    trained_long = [
        (label, part, init, trained) for label, part, init, trained in configs if trained and part == LONG
    ]
    for key, quantity in (("drift_re_lambda", "Re λ"), ("drift_im_lambda", "Im λ"), ("drift_dt", "Δt")):
        yield StudyFigure(
            f"memory-{key.replace('_', '-')}",
            f"Relative drift of {quantity} per epoch (trained eigenvalues)",
            f"mean |q − q₀| / mean |q₀| for q = {quantity}, over channels and layers; mean over seeds, min–max band.",
            curves_figure(
                [
                    epoch_curves(label, arm(part, init, trained), key, i)
                    for i, (label, part, init, trained) in enumerate(trained_long)
                ],
                title=f"Relative drift of {quantity} since initialization",
                xlabel="epoch",
                ylabel=f"relative drift of {quantity} (fraction)",
            ),
        )
    mf_series, plane, plane_discrete = [], [], []
    for label, part, init, trained in configs:
        trials = arm(part, init, trained)
        if not trials:
            continue
        first = min(trials, key=lambda t: t.seed)
        before, after = first.arrays("init"), first.arrays("end")
        mf0, mf1 = mean_memory_function(before), mean_memory_function(after)
        if mf0 is not None and mf1 is not None:
            mf_series.append((f"{label} (seed {first.seed})", mf0, mf1))
        if before and after and part == LONG:
            plane.append((label, layers_complex(before, "eigenvalues"), layers_complex(after, "eigenvalues")))
            plane_discrete.append((label, layers_complex(before, "Ab"), layers_complex(after, "Ab")))
    if mf_series:
        yield StudyFigure(
            "memory-function",
            "Memory function MF(τ) at initialization and at the end",
            "MF(τ) averaged over channels and layers, lowest seed of each configuration.",
            drawing.memory_function_figure(mf_series),
        )
    if plane:
        yield StudyFigure(
            "memory-eigenvalues",
            "Eigenvalues λ before and after training (long initial memory)",
            "Continuous-time eigenvalues of every channel and layer, lowest seed.",
            drawing.eigenvalue_plane_figure(plane, title="Eigenvalues λ before and after training"),
        )
        yield StudyFigure(
            "memory-eigenvalues-discrete",
            "Discrete eigenvalues Ā before and after training (long initial memory)",
            "Ā = exp(Δt λ) of every channel and layer, lowest seed; the unit circle is the stability boundary.",
            drawing.eigenvalue_plane_figure(
                plane_discrete, title="Discrete eigenvalues Ā before and after training", discrete=True
            ),
        )
