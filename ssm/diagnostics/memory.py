"""The memory function and memory capacity of linear state systems (REFERENCE.md §4).

 One channel's discrete diagonal system x_k = Ab x_{k−1} + Bb u_k
keeps N/2 complex slots for a real state of size N (REFERENCE.md §1). Everything here works on the
*real* representation of that state: slot x = a + ib contributes the real coordinates (a, b), in
the order [Re x_0 … Re x_{N/2−1}, Im x_0 … Im x_{N/2−1}], so

    b_τ   = [Re(Ab^τ Bb), Im(Ab^τ Bb)] ∈ R^N   the state's loading on the input u_{k−τ}
    Σ     = Σ_τ b_τ b_τᵀ                       the state covariance under i.i.d. zero-mean
                                               unit-variance input: the solution of the discrete
                                               Lyapunov equation Σ = A Σ Aᵀ + b₀ b₀ᵀ
    MF(τ) = b_τᵀ Σ⁻¹ b_τ ∈ [0, 1]              R² of the best linear readout of u_{k−τ}
    MC    = Σ_τ MF(τ) = rank Σ                 N for a controllable state

where A, the real dynamics matrix, is block diagonal with 2×2 blocks [[Re Ab, −Im Ab], [Im Ab, Re Ab]].
Controllability needs the eigenvalues {Ab_n} ∪ {conj(Ab_n)} of A to be distinct. A slot with a real
Ab has two real coordinates with the same dynamics (its imaginary coordinate is excited only when Bb
is complex, and then moves in proportion to the real one): it adds 1 to the rank, not 2 — `lin`'s
λ_0 = −½ is such a slot. Two slots whose Ab are equal or conjugate (e.g. `lin` at a large dt, whose
rotation angles alias modulo 2π) also share their memory. Each coincidence lowers MC below N.
MF depends on Bb only through which slots it excites: b_τ = diag(Bb)·Ab^τ, and a Bb without zero
entries is an invertible change of basis. S5's channels, which share Ab, therefore share one MF;
S4D's channels differ through their dt (and their trained λ).

Σ comes in closed form: with c_i = Ab_i^τ Bb_i, the sums Σ_τ c_i c̄_j = Bb_i conj(Bb_j) / (1 − Ab_i conj(Ab_j))
and Σ_τ c_i c_j = Bb_i Bb_j / (1 − Ab_i Ab_j) are geometric series. That is the exact solution of the
Lyapunov equation (the tests check it against `scipy.linalg.solve_discrete_lyapunov` and against
the explicit sum), vectorized over channels and accurate entry by entry.

Ill-conditioned Σ. A state with eigenvalues close to 1 and close to 0 at once has coordinates whose
variances differ by many orders of magnitude, and nearly equal eigenvalues make coordinates nearly
collinear; cond(Σ) then reaches 1e12 … 1e20 and a plain Σ⁻¹ is rounding noise. Two steps:
1. Σ is scaled to its correlation matrix R = D^{-1/2} Σ D^{-1/2}, D = diag Σ. MF is invariant under a
   change of basis of the state, so this changes nothing mathematically and removes the scale
   disparity entirely (a coordinate of zero variance is dropped).
2. R's eigen-directions with eigenvalue ≤ `rcond` × its largest (default `DEFAULT_RCOND` = 1e-10)
   are dropped: MF(τ) = b_τᵀ Σ⁺ b_τ with the pseudo-inverse on the directions kept.
With the cutoff, MF(τ) is the R² of the readout from the r directions kept — still in [0, 1] — and
MC = r, the *numerical* rank of the state at relative precision `rcond`: a direction whose signal is
below 1e-10 of the strongest cannot be read out in float64 and does not count as memory. A smaller
`rcond` counts more nearly-collinear directions but makes MF noisier (rounding in R, ~1e-16, is
amplified by up to 1/rcond); at 1e-10, MF(τ) and MC are accurate to about 1e-6.

All the numerics run in float64/complex128 on the CPU. The linear algebra here is many small
matrices (N ≤ a few hundred): it runs on one thread (`one_thread`), which costs nothing on an idle
machine and avoids the spinning BLAS/LAPACK threads that made batched `eigh` up to 100× slower on a
shared, oversubscribed CPU in our measurements.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

DEFAULT_RCOND = 1e-10
# memory_capacity(max_lag=None) sums lags until the remaining tail is below DEFAULT_TAIL_TOL, or up
# to MAX_SUMMED_LAGS lags; the tail left (known in closed form) is then added.
DEFAULT_TAIL_TOL = 1e-9
MAX_SUMMED_LAGS = 2**16
# Impulse responses are built for at most this many (batch × state × lag) entries at once.
_CHUNK_ELEMENTS = 2**22

ArrayLike = np.ndarray | torch.Tensor | Sequence[complex]


# --- the memory function of one diagonal system (REFERENCE.md §4) --------------------------------


def state_covariance(Ab: ArrayLike, Bb: ArrayLike) -> np.ndarray:
    """Σ = Σ_τ b_τ b_τᵀ of the real state, the solution of Σ = A Σ Aᵀ + b₀ b₀ᵀ.

    Ab, Bb: complex (..., N/2), one discrete diagonal system per leading index, all |Ab| < 1.
    Returns float64 (..., N, N) in the coordinates [Re x, Im x] (module docstring).
    """
    return _covariance(*_diagonal_system(Ab, Bb)).numpy()


def memory_function(
    Ab: ArrayLike, Bb: ArrayLike, max_lag: int, *, rcond: float = DEFAULT_RCOND
) -> np.ndarray:
    """The analytic memory function MF(τ) = b_τᵀ Σ⁺ b_τ, τ = 0 … max_lag − 1 (REFERENCE.md §4).

    Ab, Bb: complex (N/2,), numpy arrays or tensors — one channel's discrete diagonal system
    (`ssm.kernels.discretize`); leading batch dimensions (..., N/2) are allowed and kept.
    Σ⁺: pseudo-inverse with the eigen-cutoff `rcond` on the correlation scale (module docstring).
    Returns float64 (max_lag,) — or (..., max_lag) — in [0, 1] up to rounding (~1e-9).
    Raises ValueError unless every |Ab| < 1: an unstable state has no stationary covariance.
    """
    check_max_lag(max_lag)
    Ab, Bb = _diagonal_system(Ab, Bb)
    with one_thread():
        readout, _ = _whitening(_covariance(Ab, Bb), rcond)
        return _diagonal_mf(Ab, Bb, readout, 0, max_lag).numpy()


def memory_capacity(
    Ab: ArrayLike,
    Bb: ArrayLike,
    max_lag: int | None = None,
    *,
    rcond: float = DEFAULT_RCOND,
    tail_tol: float = DEFAULT_TAIL_TOL,
) -> float | np.ndarray:
    """MC = Σ_τ MF(τ), how many past inputs the state holds (REFERENCE.md §4).

    With `max_lag`: the sum over τ < max_lag. With `max_lag=None`: the sum over all lags — lags are
    summed until the remaining tail Σ_{τ≥T} MF(τ) is below `tail_tol`, or up to `MAX_SUMMED_LAGS`
    lags, and that tail is added; it is known in closed form, trace(Σ⁺ A^T Σ (A^T)ᵀ), so the result
    is the infinite sum up to rounding. That sum is the numerical rank of the state (module
    docstring): the real state dimension N for a controllable state.
    Returns a float for one system (N/2,), a float64 array for a batch (..., N/2).
    """
    if max_lag is not None:
        check_max_lag(max_lag)
    Ab, Bb = _diagonal_system(Ab, Bb)
    with one_thread():
        readout, _ = _whitening(_covariance(Ab, Bb), rcond)
        if max_lag is not None:
            total = _diagonal_mf(Ab, Bb, readout, 0, max_lag).sum(-1)
        else:
            lags = 64
            tail = _diagonal_tail(Ab, Bb, readout, lags)
            while bool((tail > tail_tol).any()) and lags < MAX_SUMMED_LAGS:
                lags *= 2
                tail = _diagonal_tail(Ab, Bb, readout, lags)
            total = _diagonal_mf(Ab, Bb, readout, 0, lags).sum(-1) + tail
    return float(total) if total.dim() == 0 else total.numpy()


def empirical_memory_function(
    Ab: ArrayLike,
    Bb: ArrayLike,
    max_lag: int,
    n_steps: int = 20_000,
    washout: int | None = None,
    ridge: float = 1e-8,
    seed: int = 0,
    train_fraction: float = 0.5,
) -> np.ndarray:
    """The memory function measured on a simulation: held-out R² of ridge readouts (REFERENCE.md §4).

    Simulates x_k = Ab x_{k−1} + Bb u_k from x_{−1} = 0 for `n_steps` steps of i.i.d. standard
    normal u (drawn with `seed`), drops the first `washout` steps, splits the rest in time into a
    training part (`train_fraction`) and a held-out part, and for each lag τ < max_lag fits a ridge
    regression with intercept of u_{k−τ} on the real state [Re x_k, Im x_k], standardized on the
    training part; `ridge` is the penalty on that scale (α·n_train·I). Ab, Bb: complex (N/2,).
    Returns float64 (max_lag,): held-out R² per lag, ≈ MF(τ) (it can dip slightly below 0).

    washout=None: max_lag − 1 steps, so that every target u_{k−τ} exists, plus the steps the slowest
    mode needs for its start-up transient ρ^{2k} to fall below 1e-6 (at most n_steps // 4).
    With the defaults the R² of each lag is within about 0.02 of MF(τ) for N ≤ 16.
    """
    check_max_lag(max_lag)
    Ab, Bb = (x.numpy() for x in _diagonal_system(Ab, Bb))
    if Ab.ndim != 1:
        raise ValueError(f"empirical_memory_function takes one system of shape (N/2,), got {Ab.shape}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if washout is None:
        rho = float(np.abs(Ab).max(initial=0.0))
        transient = 0 if rho == 0 else math.ceil(math.log(1e-6) / (2 * math.log(rho)))
        washout = max_lag - 1 + min(transient, n_steps // 4)
    if washout < max_lag - 1:
        raise ValueError(f"washout={washout} must be ≥ max_lag − 1 = {max_lag - 1}")
    n_used = n_steps - washout
    n_train = int(n_used * train_fraction)
    if n_train < 2 * Ab.size + 2 or n_used - n_train < 2:
        raise ValueError(f"n_steps={n_steps} leaves too few steps after washout={washout} to fit and test")

    u = np.random.default_rng(seed).standard_normal(n_steps)
    # One first-order recursive filter per slot: x_n[k] = Ab_n x_n[k−1] + Bb_n u[k].
    import scipy.signal  # only this function needs scipy

    x = np.stack([scipy.signal.lfilter([b], [1.0, -a], u) for a, b in zip(Ab, Bb, strict=True)], -1)
    features = torch.from_numpy(np.concatenate([x.real, x.imag], -1)[washout:])  # (n_used, N)
    steps = torch.arange(washout, n_steps)
    targets = torch.from_numpy(u)[steps[:, None] - torch.arange(max_lag)]  # (n_used, max_lag): u_{k−τ}

    X_train, X_test = features[:n_train], features[n_train:]
    Y_train, Y_test = targets[:n_train], targets[n_train:]
    mean, std = X_train.mean(0), X_train.std(0)
    moving = std > 1e-12 * std.max()  # e.g. the imaginary coordinate of a real slot with real Bb
    X_train = (X_train[:, moving] - mean[moving]) / std[moving]
    X_test = (X_test[:, moving] - mean[moving]) / std[moving]
    y_mean = Y_train.mean(0)
    with one_thread():
        gram = X_train.T @ X_train + ridge * n_train * torch.eye(X_train.shape[1], dtype=X_train.dtype)
        weights = torch.linalg.solve(gram, X_train.T @ (Y_train - y_mean))
        residual = Y_test - (X_test @ weights + y_mean)
    spread = Y_test - Y_test.mean(0)
    return (1.0 - residual.square().sum(0) / spread.square().sum(0)).numpy()


# --- shared with the layer diagnostics, and internals --------------------------------------------


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's BLAS/LAPACK on one thread (module docstring: small matrices gain nothing from
    threads, and spinning threads on a busy CPU cost up to 100×). Restores the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_max_lag(max_lag: int) -> None:
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer) or max_lag < 1:
        raise ValueError(f"max_lag must be a positive integer, got {max_lag!r}")


def _diagonal_system(Ab: ArrayLike, Bb: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ab, Bb) as complex128 CPU tensors of one shape (..., N/2), checked to be strictly stable."""
    Ab, Bb = (
        x.detach().to("cpu").resolve_conj().to(torch.complex128)
        if isinstance(x, torch.Tensor)
        else torch.as_tensor(np.asarray(x, dtype=np.complex128))
        for x in (Ab, Bb)
    )
    if Ab.dim() == 0 and Bb.dim() == 0:
        raise ValueError("expected Ab and Bb of shape (N/2,), got scalars")
    Ab, Bb = torch.broadcast_tensors(Ab, Bb)
    radius = float(Ab.abs().max()) if Ab.numel() else 0.0
    if not radius < 1:
        raise ValueError(
            f"the memory function needs a stable system, all |Ab| < 1; got max |Ab| = {radius:g}"
        )
    return Ab, Bb


def _covariance(Ab: torch.Tensor, Bb: torch.Tensor) -> torch.Tensor:
    """Closed-form Σ (..., N, N) of the real state [Re x, Im x] (module docstring)."""
    # Re c_i Re c_j = ½ Re(c_i c̄_j + c_i c_j),  Im c_i Im c_j = ½ Re(c_i c̄_j − c_i c_j),
    # Re c_i Im c_j = ½ Im(c_i c_j − c_i c̄_j),  each summed over τ as a geometric series.
    a_i, a_j, b_i, b_j = Ab[..., :, None], Ab[..., None, :], Bb[..., :, None], Bb[..., None, :]
    hermitian = b_i * b_j.conj() / (1 - a_i * a_j.conj())
    symmetric = b_i * b_j / (1 - a_i * a_j)
    re_re = (hermitian.real + symmetric.real) / 2
    im_im = (hermitian.real - symmetric.real) / 2
    re_im = (symmetric.imag - hermitian.imag) / 2
    return torch.cat([torch.cat([re_re, re_im], -1), torch.cat([re_im.transpose(-1, -2), im_im], -1)], -2)


def _whitening(sigma: torch.Tensor, rcond: float) -> tuple[torch.Tensor, torch.Tensor]:
    """W (..., N, N) with Wᴴ W = Σ⁺ (cutoff on the correlation scale) and the rank kept (...,).

    MF(τ) = ‖W b_τ‖²; rows of W for dropped directions are zero. Σ real symmetric or Hermitian.
    """
    if not rcond >= 0:
        raise ValueError(f"rcond must be ≥ 0, got {rcond}")
    sigma = (sigma + sigma.mH) / 2
    variance = torch.diagonal(sigma, dim1=-2, dim2=-1).real
    scale = torch.where(variance > 0, variance.clamp_min(torch.finfo(variance.dtype).tiny).rsqrt(), 0.0)
    correlation = scale[..., :, None] * sigma * scale[..., None, :]
    values, vectors = torch.linalg.eigh(correlation)
    keep = values > rcond * values.amax(-1, keepdim=True)
    inv_sqrt = torch.where(keep, values.clamp_min(torch.finfo(values.dtype).tiny).rsqrt(), 0.0)
    W = inv_sqrt[..., :, None] * vectors.mH * scale.to(vectors.dtype)[..., None, :]
    return W, keep.sum(-1)


def _powers(a: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """a^τ for τ = start … start + count − 1, (..., count), as a^(start + jT) · a^i with T ≈ √count:
    two short cumulative products instead of `count` complex powers (and exact at a = 0)."""
    T = math.isqrt(count - 1) + 1
    n_blocks = -(-count // T)
    ones = torch.ones_like(a)[..., None]
    inner = torch.cumprod(torch.cat([ones, a[..., None].expand(*a.shape, T - 1)], -1), -1)  # a^i
    first = torch.pow(a, start) if start > 0 else torch.ones_like(a)
    step = inner[..., -1] * a  # a^T
    outer = torch.cumprod(
        torch.cat([first[..., None], step[..., None].expand(*a.shape, n_blocks - 1)], -1), -1
    )
    return (outer[..., :, None] * inner[..., None, :]).reshape(*a.shape, n_blocks * T)[..., :count]


def _diagonal_mf(Ab: torch.Tensor, Bb: torch.Tensor, W: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """MF(τ) = ‖W b_τ‖² for τ in [start, stop): (..., stop − start), built in chunks of lags."""
    chunk = max(1, _CHUNK_ELEMENTS // max(1, 2 * Ab.numel()))
    parts = []
    for lo in range(start, stop, chunk):
        c = Bb[..., None] * _powers(Ab, lo, min(chunk, stop - lo))  # (..., N/2, lags)
        b = torch.cat([c.real, c.imag], -2)  # (..., N, lags)
        parts.append((W @ b).square().sum(-2))
    return torch.cat(parts, -1)


def _diagonal_tail(Ab: torch.Tensor, Bb: torch.Tensor, W: torch.Tensor, lags: int) -> torch.Tensor:
    """Σ_{τ ≥ lags} MF(τ) = trace(W Σ' Wᵀ), Σ' the covariance of the system (Ab, Bb·Ab^lags)."""
    tail_sigma = _covariance(Ab, Bb * torch.pow(Ab, lags))
    return torch.einsum("...ij,...jk,...ik->...", W, tail_sigma, W)


def diagonal_memory(
    Ab: torch.Tensor, Bb: torch.Tensor, max_lag: int, rcond: float = DEFAULT_RCOND
) -> tuple[torch.Tensor, torch.Tensor]:
    """MF (H, max_lag) and MC (H,) of H diagonal systems Ab, Bb complex (H, N/2).

    MC = Σ_{τ<max_lag} MF(τ) + the tail Σ_{τ≥max_lag} MF(τ) in closed form (`_diagonal_tail`): the
    infinite sum, the numerical rank of the state. Rows of systems that are not strictly stable
    (possible under the `none` reparameterization) are NaN.
    """
    Ab, Bb = (x.detach().to("cpu", torch.complex128) for x in (Ab, Bb))
    mf = torch.full((Ab.shape[0], max_lag), math.nan, dtype=torch.float64)
    mc = torch.full((Ab.shape[0],), math.nan, dtype=torch.float64)
    stable = (Ab.abs() < 1).all(-1)
    if bool(stable.any()):
        Ab, Bb = Ab[stable], Bb[stable]
        W, _ = _whitening(_covariance(Ab, Bb), rcond)
        mf[stable] = _diagonal_mf(Ab, Bb, W, 0, max_lag)
        mc[stable] = mf[stable].sum(-1) + _diagonal_tail(Ab, Bb, W, max_lag)
    return mf, mc


def dense_memory(
    A: torch.Tensor, b: torch.Tensor, max_lag: int, rcond: float = DEFAULT_RCOND
) -> tuple[torch.Tensor, torch.Tensor]:
    """MF (H, max_lag) and MC (H,) of H dense systems A (H, N, N), b (H, N), complex, in any basis of
    the real state (MF does not depend on the basis). Σ by Smith's doubling iteration, batched over
    systems; MC adds the closed-form tail trace(W A^T Σ (A^T)ᴴ Wᴴ), T = max_lag. NaN rows for systems
    that are not strictly stable."""
    A, b = (x.detach().to("cpu", torch.complex128) for x in (A, b))
    # Smith's doubling: after k steps Σ holds the first 2^k terms of Σ_τ A^τ b bᴴ (A^τ)ᴴ and
    # power = A^(2^k); the tail left is power Σ powerᴴ, negligible once ‖power‖ < 1e-10.
    sigma, power = b[..., :, None] * b[..., None, :].conj(), A
    for _ in range(64):
        sigma = sigma + power @ sigma @ power.mH
        power = power @ power
        size = power.abs().amax((-2, -1))
        if bool(((size < 1e-10) | ~torch.isfinite(size)).all()):
            break
    stable = (size < 1e-10) & torch.isfinite(sigma).all(-1).all(-1)
    mf = torch.full((A.shape[0], max_lag), math.nan, dtype=torch.float64)
    mc = torch.full((A.shape[0],), math.nan, dtype=torch.float64)
    if bool(stable.any()):
        A, b, sigma = A[stable], b[stable], sigma[stable]
        W, _ = _whitening(sigma, rcond)
        responses, power = b[..., None], A  # b_τ = A^τ b for τ < m, doubling m: [b_τ, A^m b_τ]
        while responses.shape[-1] < max_lag:
            responses = torch.cat([responses, power @ responses], -1)
            power = power @ power
        mf[stable] = (W @ responses[..., :max_lag]).abs().square().sum(-2)
        shift = W @ torch.linalg.matrix_power(A, max_lag)
        mc[stable] = (
            mf[stable].sum(-1) + torch.einsum("...ij,...jk,...ik->...", shift, sigma, shift.conj()).real
        )
    return mf, mc
