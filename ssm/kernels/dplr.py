"""S4's DPLR kernel, fast: Cauchy sums on the imaginary axis in fp32 with compensated differences.

`reference.dplr_kernel` evaluates Algorithm 1 of Gu et al. (2022) as written, materializing four
(H, N, L/2+1) complex128 Cauchy matrices that autograd keeps. This module computes the same kernel
(and is tested against it) in less time and memory:

Rewriting at the roots of unity. With ω = e^{−iθ}, θ = 2πk/L: 1 − ω = 2i sin(θ/2) e^{−iθ/2} and
1 + ω = 2 cos(θ/2) e^{−iθ/2}. So with t = tan(θ/2) and the scaled poles w_n = λ_n dt/2,
    R̃_n(ω) = 2 / ((2/dt)(1 − ω) − λ_n (1 + ω)) = φ · (dt/2) / (i t − w_n),    φ = 1 + i t,
and g = (1 + ω)/2 = 1/φ. Hence k_xy = φ S_xy with S_xy = Σ_n x_n y_n (dt/2) / (i t − w_n) (full
vectors), and the Woodbury step K̂ = k00 − k01 k10 g / (1 + g k11) becomes
    K̂ = φ · (S00 − S01 S10 / (1 + S11)).
At ω = −1 (k = L/2, L even) t = ∞: there R̃_n = dt/2 for every n and g = 0, so K̂ = (dt/2) Σ_n C_n B_n.
The conjugate half of a sum is the first half at −it, conjugated: Σ x̄ȳ/(it − w̄) = conj(Σ xy/(−it − w)).
So one Cauchy sum over the N/2 slots at the 2·(L/2 + 1) points ±it covers the whole vector.

Accuracy in fp32. The poles sit |Re w| = dt/4 from the imaginary axis (HiPPO-LegS: Re λ = −½) while
|Im w| reaches dt·650 (N = 64): near resonance, t ≈ Im w, the difference t − Im w cancels, and fp32
operands rounded once would leave a relative error ε·|Im λ / Re λ| ≈ 1.6e-4 in the largest terms.
So z − w is taken on hi + lo fp32 pairs of the float64 values (hi − hi is exact where the two are
close, by Sterbenz's lemma); what remains is rounding relative to the difference itself.

Time and memory. The four sums share their poles: 1/(z − w) is computed once per (h, n, z) and the
sums over n are real batched matrix products. It is computed a chunk of z at a time and recomputed in the
backward pass (a custom autograd.Function), so no (H, N, L) tensor outlives its chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from . import reference

# (M, N, chunk) reciprocals per chunk: 2 MB as fp32 (re, im) planes, 4 MB with the backward's squares,
# so a chunk's elementwise passes stay in cache: at (H, N, L) = (256, 64, 4096) on the CPU 2**18 took
# 17-23% less CPU time per S4 forward+backward than 2**21 (16 MB), and 2**16 was 1.7x slower.
CHUNK_ELEMENTS = 2**18
_FP64 = (torch.float64, torch.complex128)

CauchySums = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def hi_lo(x: torch.Tensor, real_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """x (real or complex) split into hi + lo in `real_dtype`, hi = x rounded and lo = the rounding
    error rounded, as (re, im) planes (2, *x.shape) for a complex x. For float64 lo is 0."""
    x = torch.view_as_real(x.to(torch.complex128)).movedim(-1, 0) if x.is_complex() else x.double()
    hi = x.to(real_dtype)
    return hi, (x - hi).to(real_dtype)


def _reciprocal_planes(
    y: torch.Tensor, w: torch.Tensor, real_dtype: torch.dtype, chunk: int, squares: bool = False
) -> Iterator[tuple[slice, torch.Tensor]]:
    """(span, R) for consecutive spans of y, R = [Re r; Im r] (M, 2N, span) of r = 1/(i y[span] − w),
    in `real_dtype`; with `squares`, R = [Re r; Im r; Re r²; Im r²] (M, 4N, span).

    With d = i y − w: Re d = −Re w does not depend on y, and −Im d = Im w − y is taken as
    (Im w_hi − y_hi) + Im w_lo − y_lo: compensated in fp32, plain in float64 (lo = 0).
    Real planes keep every step a contiguous real operation and the sums over n real GEMMs."""
    (y_hi, y_lo), ((w_re, w_im), (_, w_im_lo)) = hi_lo(y, real_dtype), hi_lo(w, real_dtype)
    w_re, w_im, w_im_lo = w_re[..., None], w_im[..., None], w_im_lo[..., None]  # (M, N, 1)
    w_re_squared, minus_w_re = w_re * w_re, -w_re
    M, N = w.shape
    for start in range(0, y.shape[0], chunk):
        span = slice(start, start + chunk)
        minus_d_im = w_im - y_hi[span]  # (M, N, chunk)
        minus_d_im += w_im_lo
        minus_d_im -= y_lo[span]
        inverse_norm = torch.addcmul(w_re_squared, minus_d_im, minus_d_im).reciprocal_()  # 1/|d|²
        R = torch.empty(M, (4 if squares else 2) * N, minus_d_im.shape[-1], dtype=real_dtype, device=w.device)
        r_re, r_im = R[:, :N], R[:, N : 2 * N]
        torch.mul(inverse_norm, minus_w_re, out=r_re)  # 1/d = conj(d)/|d|² = (−Re w − i Im d)/|d|²
        torch.mul(inverse_norm, minus_d_im, out=r_im)
        if squares:  # r² = (Re r² − Im r², 2 Re r Im r)
            torch.mul(r_re, r_re, out=R[:, 2 * N : 3 * N]).addcmul_(r_im, r_im, value=-1)
            torch.mul(r_re, r_im, out=R[:, 3 * N :]).mul_(2)
        yield span, R


class _CauchySums(torch.autograd.Function):
    """out (M, J, Z) = Σ_n v[:, :, n] / (i y − w[:, None, n]); see `cauchy_sums`."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, y: torch.Tensor, w: torch.Tensor, chunk: int) -> torch.Tensor:
        # v r = (Re v Re r − Im v Im r) + i (Im v Re r + Re v Im r): one real product with R = [Re r; Im r].
        v_planes = torch.cat(
            [torch.cat([v.real, -v.imag], -1), torch.cat([v.imag, v.real], -1)], 1
        )  # (M, 2J, 2N)
        out = v_planes.new_empty(v.shape[0], 2 * v.shape[1], y.shape[0])  # (M, [Re; Im] × J, Z)
        for span, R in _reciprocal_planes(y, w, v.real.dtype, chunk):
            out[..., span] = v_planes @ R
        ctx.save_for_backward(v, y, w)
        ctx.chunk = chunk
        return torch.complex(*out.unflatten(1, (2, -1)).unbind(1))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        # out is holomorphic in v and w: ∂out/∂v = r, ∂out/∂w = v r², r = 1/(i y − w). Torch's convention
        # for a holomorphic map is grad = Σ g · conj(∂out/∂·): grad v = Σ_k g conj(r) and
        # grad w = Σ_j conj(v_j) Σ_k g_j conj(r²). r is recomputed as in the forward; each chunk's sums
        # are one real GEMM in that precision, accumulated over chunks in float64.
        v, y, w = ctx.saved_tensors
        J, N = v.shape[1:]
        g_planes = torch.cat([grad_out.real, grad_out.imag], 1).to(v.real.dtype)  # (M, 2J, Z)
        sums = torch.zeros(v.shape[0], 2 * J, 4 * N, dtype=torch.float64, device=v.device)
        for span, R in _reciprocal_planes(y, w, v.real.dtype, ctx.chunk, squares=True):
            sums += g_planes[..., span] @ R.mT
        # sums[:, (g_re, g_im), :, (r_re, r_im, r²_re, r²_im), :]; g conj(x) = (g_re x_re + g_im x_im) + i (g_im x_re − g_re x_im)
        (gr_r, gr_i, gr_r2, gr_i2), (gi_r, gi_i, gi_r2, gi_i2) = (
            s.unbind(2) for s in sums.unflatten(1, (2, J)).unflatten(-1, (4, N)).unbind(1)
        )
        grad_v = torch.complex(gr_r + gi_i, gi_r - gr_i)
        g_conj_r2 = torch.complex(gr_r2 + gi_i2, gi_r2 - gr_i2)
        grad_w = (v.conj() * g_conj_r2).sum(1).to(w.dtype)
        return grad_v.to(v.dtype), None, grad_w, None


def check_cauchy_sums(v: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
    """Raise ValueError where v, y, w do not fit `cauchy_sums`' contract."""
    if v.dim() != 3 or w.shape != (v.shape[0], v.shape[2]):
        raise ValueError(f"expected v (M, J, N) and w (M, N), got {tuple(v.shape)} and {tuple(w.shape)}")
    if y.dim() != 1 or y.is_complex():
        raise ValueError(f"y must be real and 1-D (Z,), got {y.dtype} of shape {tuple(y.shape)}")
    if y.requires_grad:
        raise ValueError("cauchy_sums does not differentiate y; pass a constant (y.detach())")
    if not (v.is_complex() and w.is_complex()):
        raise ValueError("v and w must be complex")


def cauchy_sums(v: torch.Tensor, y: torch.Tensor, w: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """out[m, j, k] = Σ_n v[m, j, n] / (i y[k] − w[m, n]): J Cauchy sums per row m sharing the poles w,
    at points i·y of the imaginary axis.

    v complex (M, J, N) sets the precision: complex64 computes in fp32, complex128 in float64, and the
    result has v's dtype. y real (Z,) and w complex (M, N), best given in float64/complex128: their
    difference is taken on hi + lo fp32 parts (compensated). y is a constant (no gradient flows to it).
    1/(i y − w) is computed `chunk` points at a time (default: CHUNK_ELEMENTS per chunk), again in the
    backward pass.
    """
    check_cauchy_sums(v, y, w)
    chunk = chunk or max(1, CHUNK_ELEMENTS // max(1, w.numel()))
    return _CauchySums.apply(v, y, w, chunk)


def dplr_kernel(
    lam: torch.Tensor,
    P: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    dt: torch.Tensor,
    L: int,
    sums: CauchySums = cauchy_sums,
) -> torch.Tensor:
    """S4's kernel (H, L), the contract of `reference.dplr_kernel`, computed as the module docstring says.

    lam, P, B, C complex (H, N2) (conjugate-pair slots, C = S4's C̃), dt real (H,); returns real (H, L)
    in lam's real dtype. Float64/complex128 inputs are computed in float64, otherwise the Cauchy sums
    run in fp32 (the (H, N2) and (H, L) steps around them stay complex128). `sums` computes the sums
    (`cauchy_sums`' contract; the Triton version on CUDA, see `ssm.kernels.dplr_kernel`).
    """
    reference._check_dplr(lam, P, B, C, dt)
    if L < 1:
        raise ValueError(f"kernel length L must be ≥ 1, got {L}")
    fp64 = any(x.dtype in _FP64 for x in (lam, P, B, C, dt))
    out_dtype = lam.real.dtype
    lam, P, B, C = (x.to(torch.complex128) for x in (lam, P, B, C))
    half_dt = dt.to(torch.float64)[:, None] / 2  # (H, 1)
    # The weights x_n y_n dt/2 of S00, S01, S10, S11 (H, 4, N2) and the scaled poles w = λ dt/2.
    weights = torch.stack([C * B, C * P, P.conj() * B, P.conj() * P], 1) * half_dt[..., None]
    poles = lam * half_dt
    n_finite = L // 2 + 1 - (L % 2 == 0)  # frequencies k < L/2; t = tan(πk/L) is ∞ at k = L/2
    t = torch.tan(math.pi / L * torch.arange(n_finite, dtype=torch.float64, device=lam.device))
    T = sums(weights.to(torch.complex128 if fp64 else torch.complex64), torch.cat([t, -t]), poles)
    T = T.to(torch.complex128)
    S00, S01, S10, S11 = (T[..., :n_finite] + T[..., n_finite:].conj()).unbind(1)  # (H, n_finite) each
    K_hat = torch.complex(torch.ones_like(t), t) * (S00 - S01 * S10 / (1 + S11))
    if L % 2 == 0:  # ω = −1: K̂ = (dt/2) Σ over the full vectors = dt · Re Σ_slots C B
        nyquist = 2 * half_dt * (C * B).sum(-1, keepdim=True).real
        K_hat = torch.cat([K_hat, nyquist.to(K_hat.dtype)], -1)
    return torch.fft.irfft(K_hat, n=L).to(out_dtype)
