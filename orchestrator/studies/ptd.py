"""Study `ptd`: Gu, Gupta, Goel, Ré — S4D; Yu, Nigmetov, Morozov, Mahoney, Erichson — "Robustifying
state-space models for long sequences via approximate diagonalization" (CLAIMS.md §4, REFERENCE.md §2).

Two parts. Computed directly from `ssm.init`, no training:
- the transfer function G(iω) = c (iωI − A)⁻¹ b of HiPPO-LegS against those of its diagonal
  stand-ins (the slot systems of `ssm.init.diag_init`, outputs 2·Re), for a fixed real Gaussian
  readout c (seed 0, unit norm): S4D-LegS at state size N against HiPPO-LegS of size N, S4-PTD at N
  against HiPPO-LegS of size N/2 (the paper's construction, `ssm.init.ptd_init`);
- the relative sup-norm error sup_ω |G − G_HiPPO| / sup_ω |G_HiPPO| over a log grid of ω, vs N for
  S4D-LegS and vs ε for PTD; the relative L2 error of the impulse responses (kernels) on t ∈ [0, 10]
  vs N for S4D-LegS (weak convergence is convergence of the kernel, not of G uniformly);
- κ(V) of A + E vs ε for the optimized and the random perturbation (`ssm.init.ptd_conditioning`).
From a sweep: S4 (HiPPO-LegS, the reference arm), S4D-LegS, S4-PTD, S5, S5-PTD trained on a task,
then tested under sinusoidal input noise per frequency; accuracy normalized by clean accuracy.

What the quick scale can show: the analytic convergence statements at moderate N (up to 128) and ε
(down to 1e-4), exactly as at any scale; and on 8×8 digits (64 steps, 5 epochs, 3 seeds) whether
PTD models keep more of their accuracy under high-frequency input noise than S4D-LegS / S5. What it
cannot show: the LRA accuracies (S4D ≈ 85% average, S5-PTD 87.6%) — `--scale full` trains on sCIFAR.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from .base import Study, StudyFigure, wall_times
from .claims import ClaimDefinition, direct, judged, positive, t_interval, threshold
from .figures import complex_pairs, curves, curves_figure, drawing_module
from .results import StudyResults, TrialOutcome, paired_differences

PAPER_S4D = "Gu, Gupta, Goel, Ré — On the parameterization and initialization of diagonal SSMs (S4D)"
PAPER_PTD = (
    "Yu, Nigmetov, Morozov, Mahoney, Erichson — Robustifying SSMs via approximate diagonalization (PTD)"
)
HIGH_FREQUENCY = 0.25  # cycles per step: the noise frequencies the robustness claims average over (≥)

# Per scale: the state sizes of the sweep over N, the ε grid (at state size EPS_N) and the ω grid.
DIRECT_SIZES = {"smoke": (8, 16), "quick": (8, 16, 32, 64, 128), "full": (16, 32, 64, 128, 256)}
DIRECT_EPS = {
    "smoke": (1e-1, 1e-2),
    "quick": (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4),
    "full": (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4),
}
EPS_N = {"smoke": 8, "quick": 64, "full": 128}
OMEGA = np.logspace(-2, 3, 400)  # rad per unit time

CLAIMS = (
    ClaimDefinition(
        "legs-weak-convergence",
        PAPER_S4D,
        "S4D-LegS recovers the S4 (HiPPO-LegS) kernel in the limit of infinite state dimension",
        "weak kernel error — the largest relative error of ∫₀ᵀ e^{μt} k(t) dt over smooth test functions "
        "e^{μt} (T = 4), readout c fixed on the first four LegS coefficients — at the largest N divided by "
        "at the smallest N (direct computation)",
        threshold(
            lambda v: v < 0.5, "holds if the error at the largest N is below half of that at the smallest N"
        ),
    ),
    ClaimDefinition(
        "legs-not-strong",
        PAPER_PTD,
        "S4D-LegS converges to HiPPO only weakly: its transfer function is not uniformly close",
        "relative sup-norm transfer-function error sup_ω|G − G_HiPPO| / sup_ω|G_HiPPO| of S4D-LegS at the "
        "largest N (direct computation)",
        threshold(lambda v: v >= 0.1, "holds if the error stays at or above 0.1; fails below"),
    ),
    ClaimDefinition(
        "ptd-strong",
        PAPER_PTD,
        "S4-PTD converges strongly to HiPPO: its transfer function is uniformly close as ε → 0",
        "relative sup-norm transfer-function error of S4-PTD (optimized E) at the smallest ε (direct "
        "computation)",
        threshold(lambda v: v < 0.05, "holds if the error at the smallest ε is below 0.05; fails otherwise"),
    ),
    ClaimDefinition(
        "ptd-conditioning",
        PAPER_PTD,
        "The optimized perturbation keeps the eigenvector condition number small (backward stability)",
        "max over ε of log10(κ(V) optimized / κ(V) random) (direct computation)",
        threshold(lambda v: v <= 0.0, "holds if the optimized κ(V) is at most the random one at every ε"),
    ),
    ClaimDefinition(
        "ptd-robust-s4d",
        PAPER_PTD,
        "S4-PTD is robust to Fourier-mode input noise where S4D-LegS is not",
        f"test accuracy under noise ÷ clean accuracy, mean over noise frequencies ≥ {HIGH_FREQUENCY} "
        "cycles/step, S4-PTD − S4D-LegS, paired by seed",
        positive("S4-PTD − S4D-LegS"),
    ),
    ClaimDefinition(
        "ptd-robust-s5",
        PAPER_PTD,
        "S5-PTD is robust to Fourier-mode input noise where S5 is not",
        f"test accuracy under noise ÷ clean accuracy, mean over noise frequencies ≥ {HIGH_FREQUENCY} "
        "cycles/step, S5-PTD − S5, paired by seed",
        positive("S5-PTD − S5"),
    ),
)


# --- direct computations ---------------------------------------------------------------------------


def readout(M: int) -> np.ndarray:
    """The fixed real readout c (M,): Gaussian, seed 0, unit norm."""
    c = np.random.default_rng(0).standard_normal(M)
    return c / np.linalg.norm(c)


def hippo_transfer(M: int, c: np.ndarray, omega: np.ndarray = OMEGA) -> np.ndarray:
    """G(iω) = c (iωI − A)⁻¹ b of HiPPO-LegS of size M (REFERENCE.md §2), complex (len(omega),)."""
    from ssm.init import hippo_legs

    A, b = (x.numpy() for x in hippo_legs(M))
    eye = np.eye(M)
    return np.array([c @ np.linalg.solve(1j * w * eye - A, b) for w in omega])


def slot_transfer(init: Any, c: np.ndarray, omega: np.ndarray = OMEGA) -> np.ndarray:
    """G(iω) of a diagonal slot system (λ, b̃, c̃ = c·from_slots) with outputs 2·Re (REFERENCE.md §1):
    Σ_n c̃_n b̃_n / (iω − λ_n) + conj(c̃_n b̃_n) / (iω − conj λ_n)."""
    lam = init.lam.numpy()
    weight = (c @ init.from_slots.numpy()) * init.B.numpy()
    s = 1j * omega[:, None]
    return (weight / (s - lam) + weight.conj() / (s - lam.conj())).sum(axis=1)


WEAK_T = 4.0
TEST_EXPONENTS = (0.0, -1.0, 1j, -1j, 2j, -2j, -0.5 + 3j)  # μ of the test functions e^{μt} on [0, T]
LOW_ORDER_READOUT = (1.0, -0.5, 0.3, 0.2)  # c on the first LegS coefficients, the same at every N


def weak_kernel_error(N: int) -> float:
    """max over the test functions e^{μt} of |⟨e^{μt}, k_legs⟩ − ⟨e^{μt}, k_HiPPO⟩| / |⟨e^{μt}, k_HiPPO⟩|
    on [0, WEAK_T], readout LOW_ORDER_READOUT: weak convergence is convergence against smooth test
    functions, not pointwise. Closed forms: ∫ e^{μt} c e^{At} b dt = c (A + μI)⁻¹ (e^{(A+μI)T} − I) b,
    and per slot (e^{(λ+μ)T} − 1)/(λ + μ)."""
    from scipy.linalg import expm

    from ssm.init import diag_init, hippo_legs

    A, b = (x.numpy() for x in hippo_legs(N))
    c = np.zeros(N)
    c[: len(LOW_ORDER_READOUT)] = LOW_ORDER_READOUT[:N]
    init = diag_init("legs", N)
    lam, weight = init.lam.numpy(), (c @ init.from_slots.numpy()) * init.B.numpy()
    worst = 0.0
    for mu in TEST_EXPONENTS:
        M = A + mu * np.eye(N)
        hippo = c @ np.linalg.solve(M, (expm(M * WEAK_T) - np.eye(N)) @ b)
        z, zc = lam + mu, lam.conj() + mu
        legs = (weight * np.expm1(z * WEAK_T) / z).sum() + (weight.conj() * np.expm1(zc * WEAK_T) / zc).sum()
        worst = max(worst, float(abs(hippo - legs) / abs(hippo)))
    return worst


def sup_error(G: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(G - reference)) / np.max(np.abs(reference)))


def direct_results(scale: str) -> dict[str, Any]:
    """Every directly computed curve of the study at `scale` (plain lists, JSON-able)."""
    from ssm.init import diag_init, ptd_conditioning

    out: dict[str, Any] = {"omega": OMEGA.tolist(), "legs": [], "ptd": []}
    for N in DIRECT_SIZES[scale]:
        c = readout(N)
        init = diag_init("legs", N)
        G, reference = slot_transfer(init, c), hippo_transfer(N, c)
        out["legs"].append(
            {
                "N": N,
                "sup_error": sup_error(G, reference),
                "kernel_error": weak_kernel_error(N),
                "error_vs_omega": (np.abs(G - reference) / np.max(np.abs(reference))).tolist(),
            }
        )
    N = EPS_N[scale]
    c = readout(N // 2)
    reference = hippo_transfer(N // 2, c)
    for eps in DIRECT_EPS[scale]:
        init = diag_init("ptd", N, eps=eps)
        G = slot_transfer(init, c)
        optimized = ptd_conditioning(N, eps, perturbation="optimized")
        random = ptd_conditioning(N, eps, perturbation="random")
        out["ptd"].append(
            {
                "eps": eps,
                "N": N,
                "sup_error": sup_error(G, reference),
                "error_vs_omega": (np.abs(G - reference) / np.max(np.abs(reference))).tolist(),
                "kappa_optimized": optimized.kappa_V,
                "kappa_random": random.kappa_V,
                "eigenvalues": [[z.real, z.imag] for z in init.lam.numpy()],
            }
        )
    out["legs_eigenvalues"] = [[z.real, z.imag] for z in diag_init("legs", N).lam.numpy()]
    return out


# --- from the sweep ------------------------------------------------------------------------------


def fourier_curve(trial: TrialOutcome) -> list[tuple[float, float]]:
    """[(frequency in cycles per step, accuracy under noise ÷ clean accuracy)] of a trial, from its
    stored Fourier table (`ssm.diagnostics.fourier_noise_robustness`: the clean row has frequency
    None); [] without one or with a clean accuracy of 0."""
    if trial.result is None:
        return []
    rows = (trial.result.get("diagnostics") or {}).get("fourier") or []
    clean = next((r.get("accuracy") for r in rows if r.get("frequency") is None), None)
    if not clean:
        return []
    return [
        (float(r["frequency"]), r["accuracy"] / clean)
        for r in rows
        if r.get("frequency") is not None and r.get("accuracy") is not None
    ]


def normalized_noise_accuracy(trial: TrialOutcome, at_least: float = HIGH_FREQUENCY) -> float | None:
    """Mean over noise frequencies ≥ `at_least` of accuracy under noise ÷ clean accuracy."""
    values = [v for f, v in fourier_curve(trial) if f >= at_least]
    return float(np.mean(values)) if values else None


MODELS = {  # label → (layer, init)
    "S4 (HiPPO-LegS)": ("s4", "legs"),
    "S4D-LegS": ("s4d", "legs"),
    "S4-PTD": ("s4d", "ptd"),
    "S5": ("s5", "legs"),
    "S5-PTD": ("s5", "ptd"),
}


def model_trials(results: StudyResults, label: str) -> list[TrialOutcome]:
    layer, init = MODELS[label]
    return results.where(model__layer=layer, model__init=init)


class PtdStudy(Study):
    name = "ptd"
    paper = f"{PAPER_S4D}; {PAPER_PTD}"
    summary = "transfer-function error vs ω, N and ε; κ(V) vs ε; accuracy under Fourier-mode noise"
    question = "Do PTD initializations converge strongly to HiPPO and resist Fourier-mode input noise?"
    claims = CLAIMS
    time_per_scale: ClassVar[dict[str, str]] = wall_times(quick="18.1 min†", full="~days on 1 GPU")

    def __init__(self):
        self._direct: dict[str, dict[str, Any]] = {}

    def direct(self, scale: str) -> dict[str, Any]:
        if scale not in self._direct:
            self._direct[scale] = direct_results(scale)
        return self._direct[scale]

    def judge(self, results: StudyResults, scale: str) -> list[dict[str, Any]]:
        d = self.direct(scale)
        legs, ptd = d["legs"], d["ptd"]
        out = []
        ratio = legs[-1]["kernel_error"] / legs[0]["kernel_error"] if legs[0]["kernel_error"] > 0 else None
        out.append(
            judged(
                self.claim("legs-weak-convergence"),
                direct(ratio),
                {"N": [r["N"] for r in legs], "kernel_error": [r["kernel_error"] for r in legs]},
            )
        )
        out.append(
            judged(
                self.claim("legs-not-strong"),
                direct(legs[-1]["sup_error"]),
                {"N": [r["N"] for r in legs], "sup_error": [r["sup_error"] for r in legs]},
            )
        )
        smallest = min(ptd, key=lambda r: r["eps"])
        out.append(
            judged(
                self.claim("ptd-strong"),
                direct(smallest["sup_error"]),
                {"eps": [r["eps"] for r in ptd], "sup_error": [r["sup_error"] for r in ptd]},
            )
        )
        logs = [float(np.log10(r["kappa_optimized"] / r["kappa_random"])) for r in ptd]
        out.append(
            judged(
                self.claim("ptd-conditioning"),
                direct(max(logs)),
                {
                    "eps": [r["eps"] for r in ptd],
                    "kappa_optimized": [r["kappa_optimized"] for r in ptd],
                    "kappa_random": [r["kappa_random"] for r in ptd],
                },
            )
        )
        for claim_id, (robust, plain) in {
            "ptd-robust-s4d": ("S4-PTD", "S4D-LegS"),
            "ptd-robust-s5": ("S5-PTD", "S5"),
        }.items():
            diffs = paired_differences(
                model_trials(results, robust), model_trials(results, plain), normalized_noise_accuracy
            )
            out.append(judged(self.claim(claim_id), t_interval(diffs), {"differences": diffs}))
        return out

    def figures(self, results: StudyResults, scale: str) -> Iterator[StudyFigure]:
        yield from ptd_figures(self, results, scale)


# --- ptd ---------------------------------------------------------------------------------------------


def ptd_figures(study, results: StudyResults, scale: str) -> Iterator[StudyFigure]:
    drawing = drawing_module()
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
    legs = complex_pairs(d["legs_eigenvalues"])
    shown = d["ptd"][:: max(1, len(d["ptd"]) // 4)][:4]
    yield StudyFigure(
        "ptd-eigenvalues",
        "PTD eigenvalues per ε against S4D-LegS's",
        "Grey circles: S4D-LegS (normal part of HiPPO-LegS) eigenvalues; dots: the PTD eigenvalues of A + E.",
        drawing.eigenvalue_plane_figure(
            [(f"ε = {r['eps']:g}", legs, complex_pairs(r["eigenvalues"])) for r in shown],
            title="PTD eigenvalues (dots) against S4D-LegS's (circles)",
            note="grey circles: S4D-LegS (the normal part of HiPPO-LegS) · coloured dots: PTD, eigenvalues of A + E",
        ),
    )
    noise = [  # labelled with the configuration too: the sweep report's own noise figure names groups so
        curves(
            f"{label} · {' · '.join(MODELS[label])}",
            [fourier_curve(t) for t in model_trials(results, label)],
            i,
        )
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
