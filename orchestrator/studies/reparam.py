"""Study `reparam`: Wang & Li — "Stable reparameterization alleviates the curse of memory in
state-space models" (CLAIMS.md §2, REFERENCE.md §3).

Varies the reparameterization of Re λ {none, exp, softplus, best} × the eigenvalues' learning rate
`ssm_lr` × the target's memory decay (exponential, polynomial) × state size, on the linear SSM (one
S4D layer, identity maps), with the gradient-over-weight ratio recorded every epoch and Ā at the end.

"Stably approximate" is measured as the paper defines it: the perturbation error
E(β) = max over perturbations |w̃ − w|_∞ = β of (test MSE of the perturbed model − test MSE), where
w is the trained parameter under the reparameterization (Re λ = f(w)). The stored results hold no
weights, so E(β) retrains the polynomial-target trials of one `ssm_lr` and the largest state size
in this process — training is deterministic on CPU, so these are the sweep's own models — and
perturbs w by β times random signs (PERTURBATION_DRAWS draws; the max stands in for the sup). A
perturbed model whose loss is not finite counts as E = BLOWN_UP.

What the quick scale can show: short sequences (128 steps), 6 epochs, 3 seeds — whether `none`
drives eigenvalues toward the stability boundary on polynomial memory, whether stable
reparameterizations keep E(β) small where `none` does not, how the gradient-over-weight ratio of
`best` compares with `exp`, and how often each diverges as `ssm_lr` grows. What it cannot show: the
asymptotics of the paper (E(β) as β → 0 and as the hidden size grows without bound) — two state
sizes and one β grid are a finite sample of them.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import Study, StudyFigure, wall_times
from .claims import ClaimDefinition, below, judged, negative, positive, t_interval
from .figures import by_seed, curves, curves_figure, epoch_curves
from .results import StudyResults, TrialOutcome, paired_differences

PAPER = "Wang & Li — Stable reparameterization alleviates the curse of memory in state-space models"
REPARAMS = ("none", "exp", "softplus", "best")
STABLE = ("exp", "softplus", "best")
BETAS = (1e-3, 1e-2, 3e-2, 1e-1, 3e-1)
CLAIM_BETA = 0.1  # the β at which the claims read E(β), fixed before any run
PERTURBATION_DRAWS = 8
BLOWN_UP = 1e6  # E(β) of a perturbed model whose loss is not finite (an unstable system)

CLAIMS = (
    ClaimDefinition(
        "curse-of-memory",
        PAPER,
        "Without reparameterization, learning polynomially decaying memory drives the recurrent weights "
        "to the stability boundary (only exponential memory is stably approximated)",
        "stability margin 1 − max|Ā| at the end, exponential − polynomial target, reparam none, paired by "
        "state size, ssm_lr and seed",
        positive("margin(exp target) − margin(poly target)"),
    ),
    ClaimDefinition(
        "stable-approximation",
        PAPER,
        "With a stable reparameterization, polynomially decaying memory is stably approximated",
        f"perturbation error E(β={CLAIM_BETA:g}) (test MSE increase, target variance 1) of exp, softplus and "
        "best on the polynomial target, per reparameterization and seed",
        below(0.1, f"E({CLAIM_BETA:g})"),
    ),
    ClaimDefinition(
        "none-unstable",
        PAPER,
        "Without reparameterization the same approximation is not stable",
        f"log10 E(β={CLAIM_BETA:g}) of none − log10 of the largest E among the stable ones, polynomial "
        "target, paired by seed",
        positive("log10 E(none) − log10 max E(stable)"),
    ),
    ClaimDefinition(
        "best-bounded-ratio",
        PAPER,
        "The 'best' reparameterization keeps the gradient-over-weight ratio bounded (smaller than exp's)",
        "log10 of the largest per-epoch gradient-over-weight ratio |∂L/∂w|/|w| over training, best − exp, "
        "paired by target, state size, ssm_lr and seed",
        negative("log10 ratio(best) − log10 ratio(exp)"),
    ),
    ClaimDefinition(
        "divergence",
        PAPER,
        "A stable reparameterization trains without diverging where none does not, at large ssm_lr",
        "diverged (1) or not (0) — NaN loss, or an unstable system (max|Ā| > 1) at the end — none − best at "
        "the largest ssm_lr, paired by target, state size and seed",
        positive("diverged(none) − diverged(best)"),
    ),
)


def max_abs_Ab(trial: TrialOutcome) -> float | None:
    """max |Ā| over layers, channels and modes at the end (None without arrays)."""
    arrays = trial.arrays("end")
    if not arrays:
        return None
    values = [
        math.hypot(*pair)
        for layer in arrays
        for pair in np.asarray(layer["Ab"], dtype=float).reshape(-1, 2)
        if np.all(np.isfinite(pair))
    ]
    return max(values) if values else None


def stability_margin(trial: TrialOutcome) -> float | None:
    top = max_abs_Ab(trial)
    return None if top is None else 1.0 - top


def diverged(trial: TrialOutcome) -> float:
    """1 when the trial diverged (NaN loss) or ended unstable (max|Ā| > 1), else 0."""
    if trial.state == "diverged":
        return 1.0
    top = max_abs_Ab(trial)
    return 1.0 if top is not None and top > 1.0 else 0.0


def peak_ratio(trial: TrialOutcome) -> float | None:
    """log10 of the largest per-epoch mean gradient-over-weight ratio."""
    values = [e.get("grad_over_weight_mean") for e in trial.epochs]
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.log10(max(values)) if values else None


def _cell(trial: TrialOutcome) -> tuple:
    return (trial.config["task"]["name"], trial.get("model.d_state"), trial.get("optim.ssm_lr"), trial.seed)


# --- E(β): retrain, perturb w, measure -----------------------------------------------------------


def perturbation_errors(config: dict[str, Any], betas=BETAS, draws: int = PERTURBATION_DRAWS) -> list[float]:
    """E(β) for each β of the model the trial `config` trains (retrained here; see the module doc)."""
    import torch

    from ssm.config import TrialConfig
    from ssm.data import get_task
    from ssm.model import SequenceModel
    from ssm.train import CHECKPOINT_NAME, evaluate, train

    trial = TrialConfig.model_validate(config)
    task = get_task(trial.task.name, **trial.task.options)
    with tempfile.TemporaryDirectory() as folder:
        result = train(trial, checkpoint_dir=folder, task=task, device="cpu")
        if result.status != "completed":
            return [BLOWN_UP] * len(betas)
        state = torch.load(Path(folder) / CHECKPOINT_NAME, map_location="cpu", weights_only=False)["model"]
    model = SequenceModel(
        trial.model, task.d_input, task.n_classes, input_type=task.input_type, output=task.output,
        pooling=task.pooling, paired=task.paired, l_max=task.seq_len,
    )  # fmt: skip
    model.load_state_dict(state)
    layers = list(model.ssm_layers())
    weights = [layer.eig.w.detach().clone() for layer in layers]
    base = evaluate(model, task, "test", trial.optim.batch_size)["loss"]
    generator = torch.Generator().manual_seed(trial.seed)
    errors = []
    for beta in betas:
        worst = 0.0
        for _ in range(draws):
            with torch.no_grad():
                for layer, w in zip(layers, weights, strict=True):
                    signs = torch.randint(0, 2, w.shape, generator=generator).to(w.dtype) * 2 - 1
                    layer.eig.w.copy_(w + beta * signs)
            loss = evaluate(model, task, "test", trial.optim.batch_size)["loss"]
            worst = max(worst, loss - base if math.isfinite(loss) else BLOWN_UP)
        errors.append(min(worst, BLOWN_UP))
    with torch.no_grad():
        for layer, w in zip(layers, weights, strict=True):
            layer.eig.w.copy_(w)
    return errors


def perturbation_trials(results: StudyResults) -> list[TrialOutcome]:
    """The trials E(β) is measured on: polynomial target, the middle ssm_lr, the largest state size."""
    poly = [t for t in results.trials if t.config["task"]["name"] == "memory-poly"]
    if not poly:
        return []
    rates = sorted({t.get("optim.ssm_lr") for t in poly})
    sizes = sorted({t.get("model.d_state") for t in poly})
    rate, size = rates[len(rates) // 2], sizes[-1]
    return [t for t in poly if t.get("optim.ssm_lr") == rate and t.get("model.d_state") == size]


class ReparamStudy(Study):
    name = "reparam"
    paper = PAPER
    summary = "{none, exp, softplus, best} × ssm_lr × target decay × state size, with E(β)"
    question = (
        "Does a stable reparameterization keep the gradient-over-weight "
        "ratio bounded and approximate polynomially decaying memory?"
    )
    claims = CLAIMS
    time_per_scale: ClassVar[dict[str, str]] = wall_times(quick="10.4 min†", full="~1 day on 1 GPU")

    def __init__(self):
        self._perturbation: dict[int, dict[str, Any]] = {}

    def perturbation(self, results: StudyResults) -> list[dict[str, Any]]:
        """[{reparam, seed, betas, errors}] for `perturbation_trials` (computed once per results)."""
        key = id(results)
        if key not in self._perturbation:
            rows = []
            for trial in perturbation_trials(results):
                errors = perturbation_errors(trial.config)
                rows.append(
                    {
                        "reparam": trial.get("model.reparam"),
                        "seed": trial.seed,
                        "betas": list(BETAS),
                        "errors": errors,
                    }
                )
            self._perturbation = {key: rows}
        return self._perturbation[key]

    def judge(self, results: StudyResults, scale: str) -> list[dict[str, Any]]:
        out = []
        none = results.where(model__reparam="none")
        margins = paired_differences(
            [t for t in none if t.config["task"]["name"] == "memory-exp"],
            [t for t in none if t.config["task"]["name"] == "memory-poly"],
            stability_margin,
            lambda t: (t.get("model.d_state"), t.get("optim.ssm_lr"), t.seed),
        )
        out.append(judged(self.claim("curse-of-memory"), t_interval(margins), {"differences": margins}))

        rows = self.perturbation(results)
        at = BETAS.index(CLAIM_BETA)
        stable = [r["errors"][at] for r in rows if r["reparam"] in STABLE]
        out.append(judged(self.claim("stable-approximation"), t_interval(stable), {"values": stable}))
        gaps = []
        for seed in sorted({r["seed"] for r in rows}):
            mine = [r["errors"][at] for r in rows if r["seed"] == seed and r["reparam"] == "none"]
            others = [r["errors"][at] for r in rows if r["seed"] == seed and r["reparam"] in STABLE]
            if mine and others:
                gaps.append(math.log10(max(mine[0], 1e-12)) - math.log10(max(max(others), 1e-12)))
        out.append(judged(self.claim("none-unstable"), t_interval(gaps), {"differences": gaps}))

        ratios = paired_differences(
            results.where(model__reparam="best"), results.where(model__reparam="exp"), peak_ratio, _cell
        )
        out.append(judged(self.claim("best-bounded-ratio"), t_interval(ratios), {"differences": ratios}))

        rates = results.values("optim.ssm_lr")
        top = rates[-1] if rates else None
        flips = paired_differences(
            results.where(model__reparam="none", optim__ssm_lr=top),
            results.where(model__reparam="best", optim__ssm_lr=top),
            diverged,
            _cell,
        )
        out.append(judged(self.claim("divergence"), t_interval(flips), {"differences": flips, "ssm_lr": top}))
        return out

    def figures(self, results: StudyResults, scale: str) -> Iterator[StudyFigure]:
        yield from reparam_figures(self, results)


# --- reparam ---------------------------------------------------------------------------------------


def reparam_figures(study, results: StudyResults) -> Iterator[StudyFigure]:
    tasks = results.values("task.name")
    sizes = results.values("model.d_state")
    rates = results.values("optim.ssm_lr")
    middle_rate = rates[len(rates) // 2] if rates else None
    for task in tasks:
        yield StudyFigure(
            f"reparam-grad-over-weight-{task}",
            f"Gradient-over-weight ratio over training ({task})",
            f"Mean over steps of |∂L/∂w| / |w| per epoch; ssm_lr = {middle_rate}, largest state size; mean over seeds, min–max band.",
            curves_figure(
                [
                    epoch_curves(
                        r,
                        results.where(
                            task__name=task,
                            model__reparam=r,
                            optim__ssm_lr=middle_rate,
                            model__d_state=sizes[-1],
                        ),
                        "grad_over_weight_mean",
                        i,
                    )
                    for i, r in enumerate(REPARAMS)
                ],
                title=f"Gradient-over-weight ratio per epoch, {task} target",
                xlabel="epoch",
                ylabel="|∂L/∂w| / |w| (dimensionless, mean over eigenvalues)",
                log_y=True,
            ),
        )
        yield StudyFigure(
            f"reparam-error-vs-state-size-{task}",
            f"Approximation error vs state size ({task})",
            f"Test error 1 − r² (fraction of target variance) at ssm_lr = {middle_rate}; mean over seeds, min–max band; diverged trials have no point.",
            curves_figure(
                [
                    curves(
                        r,
                        by_seed(
                            results.where(task__name=task, model__reparam=r, optim__ssm_lr=middle_rate),
                            lambda t: t.get("model.d_state"),
                            lambda t: None if t.test_metric is None else max(1.0 - t.test_metric, 1e-6),
                        ),
                        i,
                    )
                    for i, r in enumerate(REPARAMS)
                ],
                title=f"Approximation error vs state size, {task} target",
                xlabel="state size N",
                ylabel="test error 1 − r² (fraction of variance)",
                log_x=True,
                log_y=True,
            ),
        )
    yield StudyFigure(
        "reparam-divergence-vs-ssm-lr",
        "Divergence rate vs the eigenvalues' learning rate",
        "Fraction of trials that diverged (NaN loss) or ended unstable (max|Ā| > 1), over targets, state sizes and seeds.",
        curves_figure(
            [
                curves(
                    r,
                    by_seed(
                        results.where(model__reparam=r),
                        lambda t: t.get("optim.ssm_lr"),
                        diverged,
                        key=lambda t: (t.config["task"]["name"], t.get("model.d_state"), t.seed),
                    ),
                    i,
                )
                for i, r in enumerate(REPARAMS)
            ],
            title="Divergence rate vs ssm_lr",
            xlabel="ssm_lr (learning rate of the eigenvalues)",
            ylabel="fraction diverged or unstable (mean; band: min–max = 0 or 1)",
            log_x=True,
        ),
    )
    rows = study.perturbation(results)
    if rows:
        trials = perturbation_trials(results)
        size = trials[0].get("model.d_state") if trials else None
        yield StudyFigure(
            "reparam-perturbation-error",
            "Perturbation error E(β), polynomial target",
            f"E(β): the largest test-MSE increase over random sign perturbations of w of size β (N = {size}, ssm_lr = {middle_rate}); "
            "1e6 marks a perturbed system that blew up.",
            curves_figure(
                [
                    curves(
                        r,
                        [
                            list(zip(row["betas"], [max(e, 1e-9) for e in row["errors"]], strict=True))
                            for row in rows
                            if row["reparam"] == r
                        ],
                        i,
                    )
                    for i, r in enumerate(REPARAMS)
                ],
                title="Perturbation error E(β) on the polynomial-memory target",
                xlabel="perturbation size β (sup-norm of w̃ − w)",
                ylabel="E(β): test MSE increase (target variance 1)",
                log_x=True,
                log_y=True,
            ),
        )
