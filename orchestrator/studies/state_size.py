"""Study `state-size`: Biderman, Smékal, Smith, Kleinman, Linderman — "Towards a theory of learning
dynamics in deep state space models" (CLAIMS.md §3, REFERENCE.md §5).

The linear SSM (no nonlinearity, identity input/output maps) learns one fixed random stable linear
filter by plain full-batch gradient descent with a constant step; state size N ∈ {2, 4, …, 64}
(N = 2 is one complex mode, the smallest state a conjugate-pair layer has), white vs coloured (1/f)
input. The loss of every step is recorded; steps-to-threshold is the first step whose loss is below
10% of the first step's. A trial that never gets there counts as censored at the number of steps run
(+1), and the claim's details say how many were.

The analytic piece is computed directly, without the sweep: a one-dimensional SSM
(x_k = a x_{k−1} + b u_k, y_k = c x_k, a fixed) fitted by gradient descent on (b, c) in the frequency
domain to a target s·h(ω), h(ω) = 1/(1 − a e^{−iω}), follows the logistic trajectory of a two-layer
scalar linear network, p(t) = s / (1 + (s/p₀ − 1) e^{−4 H s t}) for p = c·b, H = mean_ω |h(ω)|²,
t = step × learning rate (balanced start b = c).

What the quick scale can show: whether over-parameterizing the latent state and the input's colour
change the time to a loss threshold on a 64-step target with 80 gradient steps, 3 seeds (the seeds
differ only in the model's initial B, C and dt; the target and data are shared). What it cannot
show: the paper's per-frequency analysis of a trained multi-dimensional SSM (the stored results hold
the loss per step, not the kernel per step) — the per-frequency picture is drawn for the 1-D
analytic case only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from .base import Study, StudyFigure, wall_times
from .claims import ClaimDefinition, direct, judged, outside, t_interval, threshold
from .figures import by_seed, curves, curves_figure, drawing_module
from .results import StudyResults, TrialOutcome, paired_differences

PAPER = "Biderman, Smékal, Smith, Kleinman, Linderman — Towards a theory of learning dynamics in deep SSMs"
NO_CHANGE = math.log(1.1)  # a change of convergence time within ±10% counts as no change

CLAIMS = (
    ClaimDefinition(
        "state-size-changes-convergence",
        PAPER,
        "Latent-state over-parameterization changes convergence time",
        "ln(steps to threshold at the largest N / at the smallest N), white input, paired by seed",
        outside(-NO_CHANGE, NO_CHANGE, "the log ratio"),
    ),
    ClaimDefinition(
        "input-covariance-shapes-dynamics",
        PAPER,
        "The covariance structure of the data shapes how the parameters evolve",
        "ln(steps to threshold with coloured (1/f) input / with white input), paired by state size and seed",
        outside(-NO_CHANGE, NO_CHANGE, "the log ratio"),
    ),
    ClaimDefinition(
        "one-dimensional-is-deep-linear",
        PAPER,
        "In the frequency domain a one-dimensional SSM's gradient-descent dynamics have an analytical "
        "solution, that of a deep (two-layer) linear network",
        "max over steps |p_GD − p_logistic| / s for a 1-D SSM fitted by gradient descent (direct "
        "computation, no seeds)",
        threshold(lambda v: v < 0.05, "holds if the deviation is below 0.05; fails otherwise"),
    ),
)


def steps_to_threshold(trial: TrialOutcome) -> tuple[float | None, bool]:
    """(steps, censored): the recorded steps_to_threshold, or the number of steps run + 1 when the
    loss never got below the threshold (censored); (None, False) without a result."""
    if trial.result is None:
        return None, False
    value = trial.result.get("steps_to_threshold")
    if value is not None:
        return float(value), False
    steps = trial.result.get("step_losses") or []
    return float(len(steps) + 1), True


def one_dimensional_dynamics(
    a: float = 0.8, s: float = 1.0, p0: float = 0.01, lr: float = 0.01, steps: int = 150, length: int = 64
) -> dict[str, np.ndarray]:
    """Gradient descent on (b, c) of a 1-D SSM in the frequency domain against the logistic solution.

    Loss(b, c) = mean_ω |c·b·h(ω) − s·h(ω)|² over the rfft frequencies of `length` steps. Returns
    {"step", "gd", "logistic", "error_per_frequency" (steps, frequencies), "frequency" (cycles/step)}.
    """
    omega = 2 * np.pi * np.fft.rfftfreq(length)
    h = 1.0 / (1.0 - a * np.exp(-1j * omega))
    H = float(np.mean(np.abs(h) ** 2))
    b = c = math.sqrt(p0)
    gd, per_frequency = [], []
    for _ in range(steps + 1):
        p = b * c
        gd.append(p)
        per_frequency.append(np.abs((p - s) * h))
        residual = 2 * (p - s) * H  # ∂Loss/∂p
        b, c = b - lr * residual * c, c - lr * residual * b
    t = lr * np.arange(steps + 1)
    logistic = s / (1 + (s / p0 - 1) * np.exp(-4 * H * s * t))
    return {
        "step": np.arange(steps + 1),
        "gd": np.asarray(gd),
        "logistic": logistic,
        "error_per_frequency": np.asarray(per_frequency),
        "frequency": np.fft.rfftfreq(length),
    }


def _steps(trial: TrialOutcome) -> float | None:
    return steps_to_threshold(trial)[0]


class StateSizeStudy(Study):
    name = "state-size"
    paper = PAPER
    summary = "linear SSM, N ∈ {2 … 64}, SGD, white vs coloured input: loss vs step, steps-to-threshold vs N"
    question = (
        "How do the latent state size and the input's covariance change a linear SSM's convergence time?"
    )
    claims = CLAIMS
    time_per_scale: ClassVar[dict[str, str]] = wall_times(quick="6.5 min†", full="~hours on 1 GPU")

    def judge(self, results: StudyResults, scale: str) -> list[dict[str, Any]]:
        out = []
        white = [t for t in results.trials if t.get("task.options.input_alpha") in (0, 0.0, None)]
        coloured = [t for t in results.trials if t not in white]
        sizes = sorted({t.get("model.d_state") for t in white})
        censored = sum(steps_to_threshold(t)[1] for t in results.trials)
        ratios: list[float] = []
        if len(sizes) >= 2:
            ratios = paired_differences(  # ln(a) − ln(b): the log of the ratio of steps
                [t for t in white if t.get("model.d_state") == sizes[-1]],
                [t for t in white if t.get("model.d_state") == sizes[0]],
                lambda t: _log(_steps(t)),
            )
        details = {
            "differences": ratios,
            "n_min": sizes[0] if sizes else None,
            "n_max": sizes[-1] if sizes else None,
        }
        out.append(
            judged(
                self.claim("state-size-changes-convergence"),
                t_interval(ratios),
                {**details, "censored": censored},
            )
        )

        colour = paired_differences(
            coloured, white, lambda t: _log(_steps(t)), lambda t: (t.get("model.d_state"), t.seed)
        )
        out.append(
            judged(
                self.claim("input-covariance-shapes-dynamics"),
                t_interval(colour),
                {"differences": colour, "censored": censored},
            )
        )

        run = one_dimensional_dynamics()
        deviation = float(np.max(np.abs(run["gd"] - run["logistic"])))  # s = 1
        out.append(judged(self.claim("one-dimensional-is-deep-linear"), direct(deviation)))
        return out

    def figures(self, results: StudyResults, scale: str) -> Iterator[StudyFigure]:
        yield from state_size_figures(self, results)


def _log(value: float | None) -> float | None:
    return None if value is None or value <= 0 else math.log(value)


# --- state size --------------------------------------------------------------------------------------


def state_size_figures(study, results: StudyResults) -> Iterator[StudyFigure]:
    sizes = results.values("model.d_state")
    alphas = results.values("task.options.input_alpha")
    for alpha in alphas:
        colour = "white" if not alpha else f"coloured (1/f^{alpha:g})"
        yield StudyFigure(
            f"state-size-loss-alpha-{alpha:g}",
            f"Training loss per step, {colour} input",
            "Full-batch gradient descent, constant step; mean over seeds (line), min–max (band), per state size N.",
            curves_figure(
                [
                    curves(
                        f"N = {n}",
                        [
                            list(enumerate(t.result.get("step_losses") or []))
                            for t in results.where(model__d_state=n, task__options__input_alpha=alpha)
                            if t.result
                        ],
                        i,
                    )
                    for i, n in enumerate(sizes)
                ],
                title=f"Training loss per gradient step, {colour} input",
                xlabel="gradient step",
                ylabel="training loss (mean squared error)",
                log_y=True,
            ),
        )
    yield StudyFigure(
        "state-size-steps-to-threshold",
        "Steps to reach the loss threshold vs state size",
        "The first step whose training loss is below the threshold fraction of the first step's; a run that never got there is drawn at the steps run + 1.",
        curves_figure(
            [
                curves(
                    "white input" if not alpha else f"coloured input (1/f^{alpha:g})",
                    by_seed(
                        results.where(task__options__input_alpha=alpha),
                        lambda t: t.get("model.d_state"),
                        lambda t: steps_to_threshold(t)[0],
                    ),
                    i,
                )
                for i, alpha in enumerate(alphas)
            ],
            title="Steps to the loss threshold vs latent state size",
            xlabel="state size N",
            ylabel="gradient steps to threshold",
            log_x=True,
        ),
    )
    run = one_dimensional_dynamics()
    drawing = drawing_module()
    steps = run["step"]
    yield StudyFigure(
        "state-size-one-dimensional",
        "A one-dimensional SSM learns like a two-layer linear network",
        "p = c·b under gradient descent in the frequency domain (line) and the logistic solution of a two-layer scalar linear network (dashed in the legend's second entry).",
        curves_figure(
            [
                drawing.SeedCurves("gradient descent on (b, c)", steps.astype(float), run["gd"][None, :], 0),
                drawing.SeedCurves(
                    "logistic solution (deep linear network)",
                    steps.astype(float),
                    run["logistic"][None, :],
                    1,
                ),
            ],
            title="1-D SSM: gradient descent vs the analytical (logistic) trajectory",
            xlabel="gradient step",
            ylabel="p = c·b (target s = 1)",
        ),
    )
    bands = np.array_split(np.arange(len(run["frequency"])), 4)
    yield StudyFigure(
        "state-size-error-per-frequency",
        "Error per frequency band over training (1-D SSM)",
        "|G(ω) − G*(ω)| averaged over each quarter of the frequencies; all bands share one mode, so they fall together, scaled by |h(ω)|.",
        curves_figure(
            [
                drawing.SeedCurves(
                    f"{run['frequency'][b[0]]:.2f}–{run['frequency'][b[-1]]:.2f} cycles/step",
                    steps.astype(float),
                    run["error_per_frequency"][:, b].mean(axis=1)[None, :],
                    i,
                )
                for i, b in enumerate(bands)
            ],
            title="Transfer-function error per frequency band during gradient descent (1-D SSM)",
            xlabel="gradient step",
            ylabel="|G(ω) − G*(ω)| (mean over the band)",
            log_y=True,
        ),
    )
