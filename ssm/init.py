"""Initial state matrices: HiPPO-LegS and the diagonal initializations of REFERENCE.md §2.

Everything here is float64/complex128 numpy-backed torch tensors: initializations are computed once,
in double precision, and cast by the layers.

Conjugate pairs (REFERENCE.md §1): a real state of size N with complex eigenvalues is stored as N/2
complex "slots", one per conjugate pair, and outputs take 2·Re. A diagonal initialization therefore
returns N/2 eigenvalues, plus — for the initializations that come from a real matrix (`legs`,
`ptd`) — the change of basis that carries a real input vector B and a real output row C into the
slots, so that the slot system has exactly the transfer function of the real system it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DIAGONAL_INITS = ("legs", "inv", "lin", "real", "rand", "ptd")


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


@dataclass(frozen=True)
class DiagonalInit:
    """A diagonal initial system in conjugate-pair slots.

    lam: complex128 (N//2,) — the eigenvalues kept, one per slot.
    to_slots: complex128 (N//2, M) or None — maps a real input vector b (M,) into the slots, b̃ = to_slots @ b.
    from_slots: complex128 (M, N//2) or None — maps a real output row c (M,) into the slots, c̃ = c @ from_slots.
    For a system (A, b, c) of real dimension M that was diagonalized, the slot system (lam, b̃, c̃) with
    outputs 2·Re has the same transfer function (REFERENCE.md §1). None for inits that are defined
    by their eigenvalues alone (`inv`, `lin`, `real`, `rand`).
    B: complex128 (N//2,) — the input vector the init prescribes (the transformed HiPPO B for
    `legs` and `ptd`, ones otherwise, as in the S4D paper).
    """

    lam: torch.Tensor
    B: torch.Tensor
    to_slots: torch.Tensor | None = None
    from_slots: torch.Tensor | None = None


def diag_eigenvalues(name: str, N: int, **options) -> torch.Tensor:
    """Eigenvalues of a named diagonal initialization: complex128 (N//2,). See `diag_init`."""
    return diag_init(name, N, **options).lam


def diag_init(name: str, N: int, *, eps: float = 0.1, seed: int = 0) -> DiagonalInit:
    """A named diagonal initialization of state size N (REFERENCE.md §2).

    legs  eigenvalues of the normal part S of HiPPO-LegS (real part −½); B = V*·(B_legs/2), the
          scaling under which the S4D-LegS kernel converges to HiPPO-LegS's as N → ∞ (S4D paper).
    inv   λ_n = −½ + i (N/π)(N/(2n+1) − 1)
    lin   λ_n = −½ + i π n
    real  λ_n = −(n+1)
    rand  real part −½, imaginary part uniform on [0, π N/2) (the span of `lin`), drawn with `seed`.
    ptd   perturb-then-diagonalize (S4-PTD / S5-PTD): see `ptd_decomposition`; `eps` = ‖E‖₂,
          `seed` draws E.
    """
    _check_size(N, even=True)
    half = N // 2
    n = np.arange(half)
    ones = torch.ones(half, dtype=torch.complex128)
    if name == "legs":
        lam, V = _normal_part_eigen(N)
        _, _, B = hippo_legs_nplr(N)
        to_slots = V.conj().T.resolve_conj()
        return DiagonalInit(lam, to_slots @ (B.to(torch.complex128) / 2), to_slots, V)
    if name == "inv":
        lam = -0.5 + 1j * (N / math.pi) * (N / (2 * n + 1) - 1)
    elif name == "lin":
        lam = -0.5 + 1j * math.pi * n
    elif name == "real":
        lam = -(n + 1.0) + 0j
    elif name == "rand":
        rng = np.random.default_rng(seed)
        lam = -0.5 + 1j * np.sort(rng.uniform(0.0, math.pi * half, size=half))
    elif name == "ptd":
        return _ptd_init(N, eps=eps, seed=seed)
    else:
        raise ValueError(f"unknown diagonal init {name!r}; valid: {', '.join(DIAGONAL_INITS)}")
    return DiagonalInit(torch.as_tensor(lam, dtype=torch.complex128), ones)


def _normal_part_eigen(N: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def _real_eigenvalues(lam: np.ndarray) -> np.ndarray:
    return np.abs(lam.imag) <= 1e-10 * np.maximum(np.abs(lam), 1.0)


def ptd_decomposition(M: int, *, eps: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perturb-then-diagonalize HiPPO-LegS of size M (Yu, Erichson, Mahoney et al., ICLR 2024).

    E is a real Gaussian matrix rescaled to spectral norm ‖E‖₂ = eps, drawn from `seed` — the random
    perturbation that the paper uses as its baseline (the paper's optimized E, which also minimizes
    the eigenvector condition number, is not implemented). A + E is real and diagonalizable with
    probability one: A + E = V Λ V⁻¹. Returns (Λ (M,), V (M, M), V⁻¹ (M, M)), complex128.
    """
    A, _ = hippo_legs(M)
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((M, M))
    E *= eps / np.linalg.norm(E, 2)
    lam, V = np.linalg.eig(A.numpy() + E)
    return lam, V, np.linalg.inv(V)


def _ptd_init(N: int, *, eps: float, seed: int) -> DiagonalInit:
    """PTD in N/2 slots.

    A real perturbed matrix has complex eigenvalues in conjugate pairs (one slot per pair) and usually
    a few real eigenvalues (one slot each, with half the residue, since outputs take 2·Re). To fill
    exactly N/2 slots, the HiPPO-LegS matrix that is perturbed has size M = N − r, where r is the
    number of real eigenvalues of the perturbed matrix; the draw is repeated with the next seeds
    (deterministically) until M + r = N.
    """
    for attempt in range(64):
        for M in range(N, 1, -2):
            lam, V, Vinv = ptd_decomposition(M, eps=eps, seed=seed + 1000 * attempt + M)
            real = _real_eigenvalues(lam)
            if M + int(real.sum()) == N:
                break
        else:
            continue
        keep = real | (lam.imag > 0)
        weight = np.where(real[keep], 0.5, 1.0)  # a real mode is counted once by 2·Re(½ r)
        lam_kept = np.where(real[keep], lam[keep].real + 0j, lam[keep])
        to_slots = Vinv[keep] * weight[:, None]
        from_slots = V[:, keep]
        _, B = hippo_legs(M)
        to_slots_t = torch.from_numpy(to_slots.astype(np.complex128))
        return DiagonalInit(
            torch.from_numpy(lam_kept.astype(np.complex128)),
            to_slots_t @ B.to(torch.complex128),
            to_slots_t,
            torch.from_numpy(from_slots.astype(np.complex128)),
        )
    raise RuntimeError(f"PTD found no perturbation of HiPPO-LegS that fills {N // 2} slots (eps={eps})")


def _check_size(N: int, *, even: bool) -> None:
    if not isinstance(N, int) or (2 if even else 1) > N:
        raise ValueError(f"state size must be a positive integer, got {N!r}")
    if even and N % 2:
        raise ValueError(
            f"state size N={N} must be even: complex eigenvalues are stored one per conjugate pair (N/2 slots)"
        )
