"""Initial state matrices: HiPPO-LegS and the diagonal initializations of REFERENCE.md §2.

Everything here is float64/complex128 numpy-backed torch tensors: initializations are computed once,
in double precision, and cast by the layers.

Conjugate pairs (REFERENCE.md §1): a real state of size N with complex eigenvalues is stored as N/2
complex "slots", one per conjugate pair, and outputs take 2·Re. A diagonal initialization therefore
returns N/2 eigenvalues, plus — for the initializations that come from a real matrix (`legs`,
`ptd`) — the change of basis that carries a real input vector B and a real output row C into the
slots, so that the slot system has the transfer function of the real system it came from (for
`ptd`, that of the perturbed system; see `ptd_init`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

PTD_PERTURBATIONS = ("optimized", "random")

# The optimizer of the PTD perturbation (see `ptd_perturbation`): Adam steps on log κ(V). Measured on
# HiPPO-LegS of sizes 16 to 64: κ(V) stops falling after ~300 steps (1000 steps gain < 2%).
PTD_STEPS = 300
PTD_LEARNING_RATE = 0.05


def hippo_legs(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The HiPPO-LegS matrices (the S4 matrix), REFERENCE.md §2.

    A[n, k] = −sqrt(2n+1)·sqrt(2k+1) for n > k, −(n+1) for n = k, 0 for n < k; B[n] = sqrt(2n+1).
    Returns float64 tensors A (N, N) and B (N,).
    """
    _check_size(N, even=False)
    q = np.sqrt(2.0 * np.arange(N) + 1.0)
    A = -np.tril(np.outer(q, q), k=-1) - np.diag(np.arange(N) + 1.0)
    return torch.from_numpy(A), torch.from_numpy(q.copy())


def hippo_legs_nplr(N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normal-plus-low-rank split of HiPPO-LegS: A = S − P Pᵀ.

    P[n] = sqrt(n + 1/2); S = A + P Pᵀ is −½·I plus a skew-symmetric matrix, so its eigenvalues all
    have real part −½. Returns float64 (S (N, N), P (N,), B (N,)).
    """
    A, B = hippo_legs(N)
    P = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    return A + torch.outer(P, P), P, B


def normal_part_eigen(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of the normal part S = −½ I + skew of HiPPO-LegS.

    Returns the N/2 eigenvalues with positive imaginary part and their orthonormal eigenvectors
    V (N, N/2). Computed with `eigh` on the Hermitian matrix −i·skew, which is exact and stable
    (S is normal, so its eigenvectors are orthonormal).
    """
    S, _, _ = hippo_legs_nplr(N)
    skew = S + 0.5 * torch.eye(N, dtype=torch.float64)
    mu, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))  # skew = V diag(i·mu) V*
    keep = torch.argsort(mu, descending=True)[: N // 2]  # mu > 0: one of each ± pair
    return -0.5 + 1j * mu[keep].to(torch.complex128), V[:, keep]


@dataclass(frozen=True)
class DiagonalInit:
    """A diagonal initial system in N/2 complex slots, outputs 2·Re (REFERENCE.md §1).

    lam: complex128 (N//2,) — the eigenvalues, one per slot.
    to_slots: complex128 (N//2, M) or None — maps a real input vector b (M,) into the slots, b̃ = to_slots @ b.
    from_slots: complex128 (M, N//2) or None — maps a real output row c (M,) into the slots, c̃ = c @ from_slots.
    For `legs` the slot system (lam, b̃, c̃) has exactly the transfer function of the real system
    (normal part of HiPPO-LegS, size M = N) it was cut from; for `ptd` it has that of the real
    system equivalent to the perturbed complex HiPPO-LegS (size M = N/2), which is within the
    perturbation's error of HiPPO-LegS's (see `ptd_init`). None for inits that are defined by their
    eigenvalues alone (`inv`, `lin`, `real`, `rand`).
    B: complex128 (N//2,) — the input vector the init prescribes (the transformed HiPPO B for
    `legs` and `ptd`, ones otherwise, as in the S4D paper).
    """

    lam: torch.Tensor
    B: torch.Tensor
    to_slots: torch.Tensor | None = None
    from_slots: torch.Tensor | None = None


@dataclass(frozen=True)
class InitOptions:
    """What the initializations other than their size depend on: `rand` and the `random` PTD
    perturbation draw from `seed`; `ptd` perturbs by a matrix of spectral norm `eps`, chosen as
    `perturbation` (one of PTD_PERTURBATIONS)."""

    eps: float = 0.1
    seed: int = 0
    perturbation: str = "optimized"


def diag_eigenvalues(name: str, N: int, **options) -> torch.Tensor:
    """Eigenvalues of a named diagonal initialization: complex128 (N//2,). See `diag_init`."""
    return diag_init(name, N, **options).lam


def diag_init(
    name: str, N: int, *, eps: float = 0.1, seed: int = 0, perturbation: str = "optimized"
) -> DiagonalInit:
    """A named diagonal initialization of state size N (REFERENCE.md §2).

    legs  eigenvalues of the normal part S of HiPPO-LegS (real part −½); B = V*·(B_legs/2), the
          scaling under which the S4D-LegS kernel converges to HiPPO-LegS's as N → ∞ (S4D paper).
    inv   λ_n = −½ + i (N/π)(N/(2n+1) − 1)
    lin   λ_n = −½ + i π n
    real  λ_n = −(n+1)
    rand  real part −½, imaginary part uniform on [0, π N/2) (the span of `lin`), drawn with `seed`.
    ptd   perturb-then-diagonalize (S4-PTD / S5-PTD): see `ptd_init`; `eps` = ‖E‖₂,
          `perturbation` = "optimized" (the paper's) or "random" (the control, drawn with `seed`).
    """
    _check_size(N, even=True)
    builder = _INIT_BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown diagonal init {name!r}; valid: {', '.join(DIAGONAL_INITS)}")
    return builder(N, InitOptions(eps=eps, seed=seed, perturbation=perturbation))


def _legs_init(N: int, options: InitOptions) -> DiagonalInit:
    lam, V = normal_part_eigen(N)
    _, _, B = hippo_legs_nplr(N)
    to_slots = V.conj().T.resolve_conj()
    return DiagonalInit(lam, to_slots @ (B.to(torch.complex128) / 2), to_slots, V)


def _eigenvalues_only(lam: np.ndarray) -> DiagonalInit:
    lam_t = torch.as_tensor(lam, dtype=torch.complex128)
    return DiagonalInit(lam_t, torch.ones(lam_t.shape[0], dtype=torch.complex128))


def _inv_init(N: int, options: InitOptions) -> DiagonalInit:
    n = np.arange(N // 2)
    return _eigenvalues_only(-0.5 + 1j * (N / math.pi) * (N / (2 * n + 1) - 1))


def _lin_init(N: int, options: InitOptions) -> DiagonalInit:
    return _eigenvalues_only(-0.5 + 1j * math.pi * np.arange(N // 2))


def _real_init(N: int, options: InitOptions) -> DiagonalInit:
    return _eigenvalues_only(-(np.arange(N // 2) + 1.0) + 0j)


def _rand_init(N: int, options: InitOptions) -> DiagonalInit:
    half = N // 2
    rng = np.random.default_rng(options.seed)
    return _eigenvalues_only(-0.5 + 1j * np.sort(rng.uniform(0.0, math.pi * half, size=half)))


# --- perturb-then-diagonalize ----------------------------------------------------------------------


def ptd_perturbation(M: int, *, eps: float, perturbation: str = "optimized", seed: int = 0) -> np.ndarray:
    """The perturbation E (complex128 (M, M), ‖E‖₂ = eps) that PTD adds to HiPPO-LegS A of size M.

    random     E = eps·G/‖G‖₂, G a complex Gaussian matrix drawn from `seed`: the control.
    optimized  the perturbation of the PTD paper (Yu, Nigmetov, Morozov, Mahoney, Erichson, ICLR
               2024): E chosen to make the eigenvector condition number κ(V) of A + E small for its
               norm. The paper poses min κ(V) + γ‖E‖ and solves it by gradient descent (its public
               code, github.com/AnnanYu/Approximate_Diagonal: Adam on a complex E through
               `torch.linalg.eig`, penalty on ‖E‖_F). Here the norm is a constraint rather than a
               penalty, so that `eps` means ‖E‖₂ for both kinds: E = eps·D/‖D‖₂ and Adam moves D
               to minimize log κ(V) (unit eigenvector columns, 2-norm condition number), starting
               from the `random` draw of seed 0, for PTD_STEPS steps; the best iterate whose
               eigenvalues stay in the left half-plane is kept (at eps = 10 and M = 16 even the
               start is not stable). It is one fixed matrix per (M, eps), cached: `seed` does not
               change it (the paper, too, computes one perturbation per size and reuses it in every
               layer).
    """
    _check_size(M, even=False)
    if not eps > 0:
        raise ValueError(f"the PTD perturbation size eps must be > 0, got {eps!r}")
    if perturbation == "random":
        return _random_perturbation(M, float(eps), seed)
    if perturbation == "optimized":
        return _optimized_perturbation(M, float(eps)).copy()
    raise ValueError(f"unknown PTD perturbation {perturbation!r}; valid: {', '.join(PTD_PERTURBATIONS)}")


def _random_perturbation(M: int, eps: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((M, M)) + 1j * rng.standard_normal((M, M))
    return G * (eps / np.linalg.norm(G, 2))


def _unit_column_condition(V: torch.Tensor) -> torch.Tensor:
    """κ₂ of V with its columns scaled to unit norm (the eigenvector normalization of `eig`)."""
    s = torch.linalg.svdvals(V / torch.linalg.vector_norm(V, dim=0))
    return s[0] / s[-1]


@functools.lru_cache(maxsize=64)
def _optimized_perturbation(M: int, eps: float) -> np.ndarray:
    # Matrices this small gain nothing from torch's thread pool, and on a loaded machine its
    # spin-waits made the optimization 20× slower (measured: 36 s instead of 1.5 s at M = 32).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _minimize_eigenvector_condition(M, eps)
    finally:
        torch.set_num_threads(threads)


def _minimize_eigenvector_condition(M: int, eps: float) -> np.ndarray:
    A = hippo_legs(M)[0].to(torch.complex128)
    direction = torch.from_numpy(_random_perturbation(M, 1.0, seed=0))
    D = torch.nn.Parameter(torch.view_as_real(direction).clone())
    optimizer = torch.optim.Adam([D], lr=PTD_LEARNING_RATE)
    best_kappa, best = math.inf, direction * eps
    with torch.enable_grad():
        for _ in range(PTD_STEPS + 1):  # the last pass only evaluates the last step
            Dc = torch.view_as_complex(D)
            E = eps * Dc / torch.linalg.matrix_norm(Dc, ord=2)
            lam, V = torch.linalg.eig(A + E)
            log_kappa = torch.log(_unit_column_condition(V))
            if not torch.isfinite(log_kappa):
                break
            # HiPPO-LegS is stable; an iterate whose eigenvalues reach the right half-plane (large eps
            # allows it) is not kept, so the result stays stable whenever the start is
            if log_kappa.item() < best_kappa and lam.real.max().item() < 0:
                best_kappa, best = log_kappa.item(), E.detach().clone()
            optimizer.zero_grad()
            log_kappa.backward()
            optimizer.step()
    return best.numpy()


def ptd_decomposition(
    M: int, *, eps: float, seed: int = 0, perturbation: str = "optimized"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perturb-then-diagonalize HiPPO-LegS of size M: A + E = V Λ V⁻¹ (E from `ptd_perturbation`).

    Returns (Λ (M,), V (M, M) with unit-norm columns, V⁻¹ (M, M)), complex128. A complex E makes
    the M eigenvalues distinct with probability one and, unlike a real E, leaves no conjugate pairs
    or real eigenvalues to account for.
    """
    A, _ = hippo_legs(M)
    E = ptd_perturbation(M, eps=eps, perturbation=perturbation, seed=seed)
    lam, V = np.linalg.eig(A.numpy() + E)
    return lam, V, np.linalg.inv(V)


def ptd_init(N: int, *, eps: float, seed: int = 0, perturbation: str = "optimized") -> DiagonalInit:
    """S4-PTD / S5-PTD in N/2 slots, as the paper builds it: HiPPO-LegS of size M = N/2, perturbed
    by a complex E and diagonalized, one slot per eigenvalue.

    The slot system (λ, b̃ = ½V⁻¹b, c̃ = cV) with outputs 2·Re has the transfer function
    ½[G_E(s) + conj G_E(s̄)], G_E(s) = c (sI − A − E)⁻¹ b: for real b, c its distance to HiPPO-LegS's
    G(s) = c (sI − A)⁻¹ b is at most sup|G_E − G| — the strong convergence of the paper (the ½ is
    what the 2·Re of the outputs counts twice). Each eigenvector is rescaled so that its column of V
    and its row of V⁻¹ have equal norms: only the products c̃_n b̃_n enter the kernel, and the balance
    keeps |b̃| and |c̃| at the square root of each eigenvalue's condition number instead of one of them
    carrying all of it.
    """
    _check_size(N, even=True)
    M = N // 2
    lam, V, Vinv = ptd_decomposition(M, eps=eps, seed=seed, perturbation=perturbation)
    scale = np.sqrt(np.linalg.norm(Vinv, axis=1) / np.linalg.norm(V, axis=0))
    to_slots = torch.from_numpy(0.5 * Vinv / scale[:, None])
    from_slots = torch.from_numpy(V * scale)
    _, B = hippo_legs(M)
    return DiagonalInit(torch.from_numpy(lam), to_slots @ B.to(torch.complex128), to_slots, from_slots)


def _ptd_init(N: int, options: InitOptions) -> DiagonalInit:
    return ptd_init(N, eps=options.eps, seed=options.seed, perturbation=options.perturbation)


@dataclass(frozen=True)
class PTDConditioning:
    """How well-posed a PTD initialization is (see `ptd_conditioning`)."""

    kappa_V: float  # 2-norm condition number of the eigenvectors (unit columns) of A + E
    max_abs_B: float  # largest |b̃_n| of the init's input vector (HiPPO B carried into the slots)
    norm_E: float  # ‖E‖₂
    real_min: float  # smallest Re λ: `best` needs b < −1/real_min to represent it
    real_max: float  # largest Re λ: exp and softplus need it < 0


def ptd_conditioning(
    N: int, eps: float, *, perturbation: str = "optimized", seed: int = 0
) -> PTDConditioning:
    """κ(V), max|b̃|, ‖E‖₂ and the range of Re λ of the PTD initialization of state size N."""
    _check_size(N, even=True)
    E = ptd_perturbation(N // 2, eps=eps, perturbation=perturbation, seed=seed)
    lam, V, _ = ptd_decomposition(N // 2, eps=eps, perturbation=perturbation, seed=seed)
    init = ptd_init(N, eps=eps, seed=seed, perturbation=perturbation)
    return PTDConditioning(
        kappa_V=float(np.linalg.cond(V)),  # `ptd_decomposition`'s V has unit columns
        max_abs_B=float(init.B.abs().max()),
        norm_E=float(np.linalg.norm(E, 2)),
        real_min=float(lam.real.min()),
        real_max=float(lam.real.max()),
    )


_INIT_BUILDERS: dict[str, Callable[[int, InitOptions], DiagonalInit]] = {
    "legs": _legs_init,
    "inv": _inv_init,
    "lin": _lin_init,
    "real": _real_init,
    "rand": _rand_init,
    "ptd": _ptd_init,
}
DIAGONAL_INITS = tuple(_INIT_BUILDERS)


def _check_size(N: int, *, even: bool) -> None:
    if not isinstance(N, int) or (2 if even else 1) > N:
        raise ValueError(f"state size must be a positive integer, got {N!r}")
    if even and N % 2:
        raise ValueError(
            f"state size N={N} must be even: complex eigenvalues are stored one per conjugate pair (N/2 slots)"
        )
