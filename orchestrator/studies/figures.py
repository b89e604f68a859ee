"""Which data each study figure shows (CLAIMS.md, "Draw: …"). The drawing itself is the report's one
figure module, `orchestrator.report.figures` (curves over seeds, seed points, eigenvalue planes,
memory functions): a study figure is one of those figures fed with the study's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .base import StudyFigure
from .results import StudyResults, TrialOutcome


def _drawing():
    from ..report import figures

    return figures


def curves(label: str, runs: Sequence[Sequence[tuple[float, float]]], color_index: int | None = None):
    """A `SeedCurves` from per-seed (x, y) points (NaN/None y left out of the mean)."""
    return _drawing().SeedCurves.from_runs(label, [list(r) for r in runs if r], color_index)


def curves_figure(
    series: Sequence[Any],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_x: bool = False,
    log_y: bool = False,
    scale: float = 1.0,
    note: str | None = None,
):
    """`seed_curves_figure` of the report's module, with a logarithmic x axis when asked."""
    figure = _drawing().seed_curves_figure(
        [s for s in series if s.x.size],
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        scale=scale,
        log_y=log_y,
        note=note,
    )
    if log_x:
        axis = figure.axes[0]
        axis.set_xscale("log")
        xs = sorted({float(x) for s in series for x in s.x})
        if len(xs) <= 12:  # a few settings (N, ε, ssm_lr): label each one as written, not 2×10⁰
            axis.set_xticks(xs, [f"{x:g}" for x in xs])
            axis.minorticks_off()
    return figure


def _complex(pairs: Any) -> np.ndarray:
    values = np.asarray(pairs, dtype=float)
    return values[..., 0] + 1j * values[..., 1] if values.size else np.zeros(0, dtype=complex)


def _layers_complex(per_layer: list[dict[str, Any]] | None, key: str) -> np.ndarray:
    if not per_layer:
        return np.zeros(0, dtype=complex)
    return np.concatenate([_complex(layer[key]).ravel() for layer in per_layer])


def _mean_mf(per_layer: list[dict[str, Any]] | None) -> np.ndarray | None:
    """MF(τ) averaged over channels (unstable ones left out) and layers."""
    if not per_layer:
        return None
    rows = []
    for layer in per_layer:
        mf = np.asarray(
            [[np.nan if v is None else v for v in row] for row in layer["memory_function"]], dtype=float
        )
        rows.append(np.nanmean(mf.reshape(-1, mf.shape[-1]), axis=0))
    return np.nanmean(np.asarray(rows), axis=0)


def _seed_values(label: str, trials: Sequence[TrialOutcome], value) -> Any:
    pairs = [(t.seed, value(t)) for t in trials]
    pairs = [(s, v) for s, v in pairs if v is not None and math.isfinite(v)]
    return _drawing().SeedValues(label, np.asarray([v for _, v in pairs], dtype=float), [s for s, _ in pairs])


# --- memory ----------------------------------------------------------------------------------------


def memory_figures(study, results: StudyResults) -> Iterator[StudyFigure]:
    from .memory import LONG, SHORT, epochs_to_converge, overfitting_gap

    drawing = _drawing()
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

    yield StudyFigure(
        "memory-validation",
        "Validation accuracy per epoch: trained vs frozen eigenvalues",
        "Mean over seeds (line) and min–max (band) of the validation accuracy after each epoch.",
        curves_figure(
            [
                curves(
                    label,
                    [
                        [(e["epoch"] + 1, e.get("val_metric")) for e in t.epochs]
                        for t in arm(part, init, trained)
                    ],
                    i,
                )
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
            [
                _seed_values(label, arm(part, init, trained), lambda t: t.test_metric)
                for label, part, init, trained in configs
            ],
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
            [
                _seed_values(label, arm(part, init, trained), epochs_to_converge)
                for label, part, init, trained in configs
            ],
            title="Epochs to reach 95% of the best validation accuracy",
            xlabel="epochs (counted from 1)",
        ),
    )
    yield StudyFigure(
        "memory-train-val-gap",
        "Train–validation loss gap at the best epoch",
        "Validation loss − training loss at the best epoch (nats); per seed (dots), mean ± 1 std (bar).",
        drawing.seed_points_figure(
            [
                _seed_values(label, arm(part, init, trained), overfitting_gap)
                for label, part, init, trained in configs
            ],
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
                    curves(
                        label,
                        [[(e["epoch"] + 1, e.get(key)) for e in t.epochs] for t in arm(part, init, trained)],
                        i,
                    )
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
        mf0, mf1 = _mean_mf(before), _mean_mf(after)
        if mf0 is not None and mf1 is not None:
            mf_series.append((f"{label} (seed {first.seed})", mf0, mf1))
        if before and after and part == LONG:
            plane.append(
                (label, _layers_complex(before, "eigenvalues"), _layers_complex(after, "eigenvalues"))
            )
            plane_discrete.append((label, _layers_complex(before, "Ab"), _layers_complex(after, "Ab")))
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


# --- reparam ---------------------------------------------------------------------------------------


def reparam_figures(study, results: StudyResults) -> Iterator[StudyFigure]:
    from .reparam import REPARAMS, diverged, perturbation_trials

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
                    curves(
                        r,
                        [
                            [(e["epoch"] + 1, e.get("grad_over_weight_mean")) for e in t.epochs]
                            for t in results.where(
                                task__name=task,
                                model__reparam=r,
                                optim__ssm_lr=middle_rate,
                                model__d_state=sizes[-1],
                            )
                        ],
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
                        _by_seed(
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
                    _by_seed(
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


def _by_seed(trials, x_of, y_of, key=lambda t: t.seed) -> list[list[tuple[float, float]]]:
    """Per `key` (default the seed) the (x, y) points of its trials."""
    runs: dict[Any, list[tuple[float, float]]] = {}
    for t in trials:
        y = y_of(t)
        runs.setdefault(key(t), []).append((x_of(t), np.nan if y is None else y))
    return list(runs.values())


# --- state size --------------------------------------------------------------------------------------


def state_size_figures(study, results: StudyResults) -> Iterator[StudyFigure]:
    from .state_size import one_dimensional_dynamics, steps_to_threshold

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
                    _by_seed(
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
    drawing = _drawing()
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


# --- ptd ---------------------------------------------------------------------------------------------


def ptd_figures(study, results: StudyResults, scale: str) -> Iterator[StudyFigure]:
    from .ptd import MODELS, fourier_curve, model_trials

    drawing = _drawing()
    d = study.direct(scale)
    omega = np.asarray(d["omega"])
    series = [
        drawing.SeedCurves(
            f"S4D-LegS, N = {r['N']}", omega, np.maximum(np.asarray(r["error_vs_omega"]), 1e-16)[None, :], i
        )
        for i, r in enumerate(d["legs"])
    ]
    series += [
        drawing.SeedCurves(
            f"S4-PTD, N = {r['N']}, ε = {r['eps']:g}",
            omega,
            np.maximum(np.asarray(r["error_vs_omega"]), 1e-16)[None, :],
            len(d["legs"]) + i,
        )
        for i, r in enumerate(d["ptd"])
    ]
    yield StudyFigure(
        "ptd-transfer-error-vs-omega",
        "Transfer-function error vs frequency",
        "|G(iω) − G_HiPPO(iω)| / sup|G_HiPPO| for a fixed real readout c; S4D-LegS against HiPPO-LegS of size N, S4-PTD against size N/2.",
        curves_figure(
            series,
            title="Transfer-function error against HiPPO-LegS vs ω",
            xlabel="ω (rad per unit time)",
            ylabel="relative error |G − G_HiPPO| / sup|G_HiPPO|",
            log_x=True,
            log_y=True,
        ),
    )
    yield StudyFigure(
        "ptd-sup-error-vs-n",
        "Sup-norm and kernel error of S4D-LegS vs N",
        "Relative sup over ω of the transfer-function error (strong convergence) and the weak kernel error: relative error of the kernel against smooth test functions e^{μt} on [0, 4] (weak convergence).",
        curves_figure(
            [
                drawing.SeedCurves(
                    "sup-norm transfer-function error",
                    np.asarray([r["N"] for r in d["legs"]], float),
                    np.asarray([[r["sup_error"] for r in d["legs"]]]),
                    0,
                ),
                drawing.SeedCurves(
                    "weak kernel error (smooth test functions)",
                    np.asarray([r["N"] for r in d["legs"]], float),
                    np.asarray([[r["kernel_error"] for r in d["legs"]]]),
                    1,
                ),
            ],
            title="S4D-LegS against HiPPO-LegS vs state size N",
            xlabel="state size N",
            ylabel="relative error",
            log_x=True,
            log_y=True,
        ),
    )
    eps = np.asarray([r["eps"] for r in d["ptd"]], float)
    yield StudyFigure(
        "ptd-sup-error-vs-eps",
        "Sup-norm transfer-function error of S4-PTD vs ε",
        f"Relative sup over ω of |G_PTD − G_HiPPO|, N = {d['ptd'][0]['N']} (HiPPO size N/2), optimized perturbation.",
        curves_figure(
            [
                drawing.SeedCurves(
                    "S4-PTD (optimized E)", eps, np.asarray([[r["sup_error"] for r in d["ptd"]]]), 0
                )
            ],
            title="S4-PTD against HiPPO-LegS vs perturbation size ε",
            xlabel="ε = ‖E‖₂",
            ylabel="relative sup-norm error",
            log_x=True,
            log_y=True,
        ),
    )
    yield StudyFigure(
        "ptd-kappa-vs-eps",
        "Eigenvector condition number κ(V) vs ε",
        "κ₂ of the unit-column eigenvector matrix of A + E for the optimized and a random E of the same norm.",
        curves_figure(
            [
                drawing.SeedCurves(
                    "optimized E", eps, np.asarray([[r["kappa_optimized"] for r in d["ptd"]]]), 0
                ),
                drawing.SeedCurves("random E", eps, np.asarray([[r["kappa_random"] for r in d["ptd"]]]), 1),
            ],
            title="κ(V) of the PTD diagonalization vs ε",
            xlabel="ε = ‖E‖₂",
            ylabel="κ(V) (2-norm condition number)",
            log_x=True,
            log_y=True,
        ),
    )
    legs = _complex(d["legs_eigenvalues"])
    shown = d["ptd"][:: max(1, len(d["ptd"]) // 4)][:4]
    yield StudyFigure(
        "ptd-eigenvalues",
        "PTD eigenvalues per ε against S4D-LegS's",
        "Grey circles: S4D-LegS (normal part of HiPPO-LegS) eigenvalues; dots: the PTD eigenvalues of A + E.",
        drawing.eigenvalue_plane_figure(
            [(f"ε = {r['eps']:g}", legs, _complex(r["eigenvalues"])) for r in shown],
            title="PTD eigenvalues (dots) against S4D-LegS's (circles)",
        ),
    )
    noise = [
        curves(label, [fourier_curve(t) for t in model_trials(results, label)], i)
        for i, label in enumerate(MODELS)
    ]
    yield StudyFigure(
        "ptd-fourier-noise",
        "Accuracy under Fourier-mode input noise, normalized by clean accuracy",
        "Test accuracy with a sinusoid of the given frequency added to every input ÷ clean accuracy; mean over seeds, min–max band.",
        curves_figure(
            noise,
            title="Accuracy under Fourier-mode noise ÷ clean accuracy",
            xlabel="noise frequency (cycles per step; 0.5 = Nyquist)",
            ylabel="noisy / clean accuracy (fraction)",
        ),
    )
