"""PyTorch reference implementations of the SSM kernels (REFERENCE.md §1–§2).

These are the ground truth: readable, differentiable by autograd, tested against float64 numpy
loops. Faster versions (Triton, `ssm.kernels.triton`) are tested against these.

Shapes: H channels, N2 = N/2 conjugate-pair slots, L sequence length, B batch, P scan width.
Small per-(H, N2) quantities (discretization, exponents) are computed in complex128 and cast back:
they cost nothing next to the O(H·N2·L) work and keep fp32 kernels within 1e-5 of float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DISCRETIZATIONS = ("zoh", "bilinear")


def discretize(
    lam: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str = "zoh"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretize a diagonal SSM (REFERENCE.md §1), broadcasting lam, B and dt elementwise.

    zoh:      Ab = exp(dt λ),                     Bb = (Ab − 1)/λ · B
    bilinear: Ab = (1 + dt λ/2) / (1 − dt λ/2),   Bb = dt B / (1 − dt λ/2)
    Returns (Ab, Bb) in complex128.
    """
    lam, B, dt = lam.to(torch.complex128), B.to(torch.complex128), dt.to(torch.float64)
    x = dt * lam
    if method == "zoh":
        # (exp(x) − 1)/λ = dt·expm1(x)/x, written so that λ = 0 (possible with reparam "none") is finite.
        small = x.abs() < 1e-12
        ratio = torch.where(
            small, torch.ones_like(x), torch.expm1(x) / torch.where(small, torch.ones_like(x), x)
        )
        return torch.exp(x), dt * ratio * B
    if method == "bilinear":
        return (1 + x / 2) / (1 - x / 2), dt * B / (1 - x / 2)
    raise ValueError(f"unknown discretization {method!r}; valid: {', '.join(DISCRETIZATIONS)}")


def s4d_kernel(
    lam: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    dt: torch.Tensor,
    L: int,
    method: str = "zoh",
    block: int | None = None,
) -> torch.Tensor:
    """The S4D convolution kernel K[h, l] = 2 Re Σ_n C[h,n] Bb[h,n] Ab[h,n]^l, l = 0..L−1.

    lam, B, C: complex (H, N2); dt: real (H,). Returns real (H, L) in C's real dtype.

    The Vandermonde matrix Ab^l (H, N2, L) is never materialized: writing l = j·T + i with
    T = `block` (default ⌈√L⌉), Ab^l = Ab^(jT) · Ab^i, so K is one batched matrix product of an
    (H, L/T, N2) factor with an (H, N2, T) factor — O(H·N2·√L) exponentials and memory instead of
    O(H·N2·L), and the sum over n runs as a GEMM. `block=L` gives the plain Vandermonde product.
    """
    H, _N2 = _check_diagonal(lam, B, C, dt)
    if L < 1:
        raise ValueError(f"kernel length L must be ≥ 1, got {L}")
    T = block or math.isqrt(L - 1) + 1
    n_blocks = -(-L // T)
    Ab, Bb = discretize(lam, B, dt[:, None], method)
    log_Ab = _log_Ab(lam, dt, Ab, method)
    CB = C.to(torch.complex128) * Bb
    steps = torch.arange(T, dtype=torch.float64, device=lam.device)
    starts = torch.arange(n_blocks, dtype=torch.float64, device=lam.device) * T
    inner = torch.exp(log_Ab[..., None] * steps)  # (H, N2, T): Ab^i
    outer = CB[..., None] * torch.exp(log_Ab[..., None] * starts)  # (H, N2, n_blocks): CB·Ab^(jT)
    inner, outer = inner.to(C.dtype), outer.to(C.dtype)
    # 2 Re(outerᵀ inner) = 2 (Re·Re − Im·Im): one real GEMM over the stacked (2·N2) dimension.
    left = torch.cat([outer.real, -outer.imag], dim=1).transpose(1, 2)  # (H, n_blocks, 2·N2)
    right = torch.cat([inner.real, inner.imag], dim=1)  # (H, 2·N2, T)
    K = 2 * torch.bmm(left, right)  # (H, n_blocks, T)
    return K.reshape(H, n_blocks * T)[:, :L]


def vandermonde_kernel(
    lam: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor, L: int, method: str = "zoh"
) -> torch.Tensor:
    """The materialized-Vandermonde formulation (as in state-spaces/s4's reference code).

    Builds exp(dtλ·l) as an (H, N2, L) complex tensor in the input precision. Kept as the baseline
    that `bench/ssm_layers.py` measures `s4d_kernel` against; same result, more time and memory.
    """
    _check_diagonal(lam, B, C, dt)
    Ab, Bb = discretize(lam, B, dt[:, None], method)
    log_Ab = _log_Ab(lam, dt, Ab, method).to(C.dtype)
    CB = (C.to(torch.complex128) * Bb).to(C.dtype)
    l = torch.arange(L, device=lam.device, dtype=C.real.dtype)
    V = torch.exp(log_Ab[..., None] * l)  # (H, N2, L)
    return 2 * torch.einsum("hn,hnl->hl", CB, V).real


def fft_conv(u: torch.Tensor, k: torch.Tensor, k_reverse: torch.Tensor | None = None) -> torch.Tensor:
    """y = k * u along time (causal), zero-padded to 2L so the FFT's circular convolution is linear.

    u: (B, L, H); k: (H, L). With `k_reverse` (H, L) the layer is bidirectional: k_reverse is
    applied causally to the time-reversed input and the result reversed back and added, i.e.
    y_t += Σ_{s≥0} k_reverse[s] u_{t+s} — both folded into one two-sided kernel and one FFT.
    """
    if u.dim() != 3:
        raise ValueError(f"expected input of shape (B, L, H), got {tuple(u.shape)}")
    _, L, H = u.shape
    if k.shape != (H, L):
        raise ValueError(f"expected kernel of shape (H, L) = {(H, L)}, got {tuple(k.shape)}")
    kk = F.pad(k, (0, L))
    if k_reverse is not None:
        if k_reverse.shape != (H, L):
            raise ValueError(f"expected reverse kernel of shape {(H, L)}, got {tuple(k_reverse.shape)}")
        # lag −s sits at index 2L − s of the circular buffer; lag 0 is shared with the causal part.
        kk = kk + torch.cat([k_reverse[:, :1], k.new_zeros(H, L), k_reverse[:, 1:].flip(-1)], dim=-1)
    u_f = torch.fft.rfft(u.transpose(1, 2), n=2 * L)  # (B, H, L+1)
    k_f = torch.fft.rfft(kk, n=2 * L)
    y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]
    return y.transpose(1, 2)


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_k = a_k x_{k−1} + b_k along dim 1 (x_{−1} = 0), as a parallel (Hillis–Steele) scan.

    b: (B, L, P); a broadcastable to b — (B, L, P), or (P,) / (1, 1, P) for a time-invariant a.
    ⌈log₂ L⌉ vectorized steps, each combining element k with element k − d:
        b_k ← b_k + A_k · b_{k−d},   A_k ← A_k · A_{k−d},
    where A_k is the product of the a's that b_k already spans. Only products of |a| ≤ 1 factors and
    sums appear — no division by cumulative products, so nothing overflows for |a| < 1 at any L.
    A time-invariant a needs no per-position products: A = a^d for every k ≥ d.
    """
    if b.dim() != 3:
        raise ValueError(f"expected b of shape (B, L, P), got {tuple(b.shape)}")
    L = b.shape[1]
    if a.dim() == 1:
        a = a.view(1, 1, -1)
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError as err:
        raise ValueError(
            f"a of shape {tuple(a.shape)} does not broadcast to b of shape {tuple(b.shape)}"
        ) from err
    invariant = a.shape[1] == 1
    if not invariant:
        a = a.expand_as(b)
    d = 1
    while d < L:
        if invariant:
            b = torch.cat([b[:, :d], b[:, d:] + a * b[:, :-d]], 1)
            a = a * a
        else:
            b = torch.cat([b[:, :d], b[:, d:] + a[:, d:] * b[:, :-d]], 1)
            a = torch.cat([a[:, :d], a[:, d:] * a[:, :-d]], 1)
        d *= 2
    return b


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Cauchy kernel: out[..., l] = Σ_n v[..., n] / (z[l] − w[..., n]).

    v, w: complex (..., N); z: complex (L,). Returns complex (..., L). Materializes (..., N, L).
    """
    if v.shape != w.shape:
        raise ValueError(f"v and w must have the same shape, got {tuple(v.shape)} and {tuple(w.shape)}")
    if z.dim() != 1:
        raise ValueError(f"z must be 1-D (L,), got shape {tuple(z.shape)}")
    return (v[..., None] / (z - w[..., None])).sum(dim=-2)


def dplr_kernel(
    lam: torch.Tensor,
    P: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    dt: torch.Tensor,
    L: int,
) -> torch.Tensor:
    """S4's kernel for A = Λ − P P* discretized bilinearly (Gu et al. 2022, Algorithm 1).

    lam, P, B, C: complex (H, N2) in conjugate-pair slots (the full vectors are [x, x̄]); dt (H,).
    C is S4's C̃ = C (I − Ā^L): the generating function truncated to length L. Returns real (H, L).

    The generating function at the roots of unity ω_k = exp(−2πik/L) is
        K̂(ω) = k00 − k01 k10 g / (1 + g k11),   g = (1 + ω)/2,
        k_xy(ω) = Σ_n x_n y_n R̃_n(ω),   R̃_n(ω) = 2 / ((2/dt)(1 − ω) − λ_n (1 + ω)),
    (Woodbury for the rank-one term) and K = IFFT(K̂). R̃ = −2/(2/dt + λ) / (ω − 1/Āb) is a Cauchy
    kernel in ω with poles at 1/Āb, so ω = −1 needs no special case.
    """
    _check_dplr(lam, P, B, C, dt)
    lam128, P, B, C = (x.to(torch.complex128) for x in (lam, P, B, C))
    d = dt.to(torch.float64)[:, None]
    poles = (1 - d * lam128 / 2) / (1 + d * lam128 / 2)  # 1/Āb
    scale = -2 / (2 / d + lam128)
    k = torch.arange(L // 2 + 1, device=lam.device, dtype=torch.float64)
    omega = torch.exp(-2j * math.pi * k / L)

    def pairs_sum(x: torch.Tensor) -> torch.Tensor:
        v = x * scale
        return cauchy(torch.cat([v, v.conj()], -1), omega, torch.cat([poles, poles.conj()], -1))

    k00, k01 = pairs_sum(C * B), pairs_sum(C * P)
    k10, k11 = pairs_sum(P.conj() * B), pairs_sum(P.conj() * P)
    g = (1 + omega) / 2
    K_hat = k00 - k01 * k10 * g / (1 + g * k11)
    return torch.fft.irfft(K_hat, n=L).to(lam.real.dtype)


def _log_Ab(lam: torch.Tensor, dt: torch.Tensor, Ab: torch.Tensor, method: str) -> torch.Tensor:
    """log Ab, so that Ab^l = exp(l·log Ab). For zoh it is dt·λ itself: log(exp(dt·λ)) would be −inf
    once exp underflows (dt·|Re λ| > ~745), and −inf·0 at l = 0 is NaN."""
    if method == "zoh":
        return dt.to(torch.float64)[:, None] * lam.to(torch.complex128)
    return torch.log(Ab)


def _check_dplr(lam, P, B, C, dt) -> None:
    """`dplr_kernel`'s inputs (this one's and `ssm.kernels.dplr`'s): the diagonal ones, and P like lam."""
    _check_diagonal(lam, B, C, dt)
    if P.shape != lam.shape:
        raise ValueError(f"P must have the shape of lam {tuple(lam.shape)}, got {tuple(P.shape)}")


def _check_diagonal(lam, B, C, dt) -> tuple[int, int]:
    if lam.dim() != 2:
        raise ValueError(f"expected eigenvalues of shape (H, N/2), got {tuple(lam.shape)}")
    for name, x in (("B", B), ("C", C)):
        if x.shape != lam.shape:
            raise ValueError(f"expected {name} of shape (H, N/2) = {tuple(lam.shape)}, got {tuple(x.shape)}")
    if dt.shape != lam.shape[:1]:
        raise ValueError(f"expected dt of shape (H,) = ({lam.shape[0]},), got {tuple(dt.shape)}")
    return lam.shape
