"""The S4D convolution kernel in Triton (REFERENCE.md §1, the "Vandermonde" kernel).

    K[h, l] = 2 Re Σ_n CB[h, n] · exp(s[h, n] · l),   l = 0..L−1,   s = log Ab,   CB = C · Bb.

Discretization and the products CB, s = log Ab (dt·λ for ZOH) stay in PyTorch (complex128, (H, N2) — nothing next to
the (H, L) output), so autograd carries the gradients from (CB, s) back to λ, B, C and dt. The Triton
kernels do the O(H·N2·L) part: the forward sums over n for a tile of l, the backward sums over l for a
tile of n. Neither materializes the (H, N2, L) Vandermonde matrix.

Phase accuracy. exp(s·l) = exp(l·Re s) · (cos φ + i sin φ) with φ = l·Im s. Re s ≤ 0 for a stable
SSM, so the magnitude never overflows. The phase is the hard part in fp32: l·Im s reaches ~5·10⁴ rad
at L = 16384, where one fp32 ulp is 4·10⁻³ rad. So the phase is carried in turns, f = Im s / 2π, split
in float64 into f = f1 + f2 + f3 where f1 and f2 have few enough significant bits that l·f1 and l·f2
are exact in fp32 for every l < L; their integer parts (whole turns) are dropped exactly, and only the
small l·f3 is rounded. The phase error stays ~10⁻⁶ rad up to L ≈ 10⁵ (`_split_turns`).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ssm.kernels import reference

from .runtime import check_runnable, takes_fp32

BLOCK_N_MAX = 16  # state slots per tile
BLOCK_L_MAX = 128  # time steps per tile
TILES_PER_SPLIT = 8  # backward: l-tiles one program sums before writing its partial sums


@triton.jit
def _fractional_turns(l, f1, f2, f3):
    """l·(f1 + f2 + f3) modulo 1, in [−½, ½] turns. l·f1 and l·f2 are exact (see `_split_turns`),
    so dropping their whole turns (x − floor(x + ½)) is exact too; only l·f3, already small, rounds."""
    t1 = l * f1
    t1 = t1 - tl.floor(t1 + 0.5)
    t2 = l * f2
    t2 = t2 - tl.floor(t2 + 0.5)
    t = t1 + t2 + l * f3
    return t - tl.floor(t + 0.5)


@triton.jit
def _powers(l, s_re, f1, f2, f3):
    """exp(s·l) = exp(l·Re s) (cos φ + i sin φ), φ = 2π·frac(l·Im s / 2π) ∈ [−π, π]."""
    magnitude = tl.exp(l * s_re)
    phase = 6.283185307179586 * _fractional_turns(l, f1, f2, f3)
    return magnitude * tl.cos(phase), magnitude * tl.sin(phase)


@triton.jit
def _load_powers_operands(s_re_ptr, f1_ptr, f2_ptr, f3_ptr, at, in_n):
    """Re s and the split turns f1, f2, f3 of slots `at`, as (BLOCK_N, 1) columns; 0 in padded slots,
    where exp stays finite (and CB = 0 there in the forward)."""
    s_re = tl.load(s_re_ptr + at, mask=in_n, other=0.0)[:, None]
    f1 = tl.load(f1_ptr + at, mask=in_n, other=0.0)[:, None]
    f2 = tl.load(f2_ptr + at, mask=in_n, other=0.0)[:, None]
    f3 = tl.load(f3_ptr + at, mask=in_n, other=0.0)[:, None]
    return s_re, f1, f2, f3


@triton.jit
def _vandermonde_fwd_kernel(
    cb_re_ptr,  # (H, N2) Re CB
    cb_im_ptr,  # (H, N2) Im CB
    s_re_ptr,  # (H, N2) Re s
    f1_ptr,  # (H, N2) Im s / 2π = f1 + f2 + f3
    f2_ptr,
    f3_ptr,
    k_ptr,  # (H, L) out: K
    N2,
    L,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: K[h, l-tile] = 2 Σ_n (Re CB · Re V − Im CB · Im V), V = exp(s·l), n in BLOCK_N steps."""
    h = tl.program_id(0)
    ls = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)  # (BLOCK_L,)
    l = ls.to(tl.float32)[None, :]  # (1, BLOCK_L)
    acc = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for n0 in range(0, N2, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)
        in_n = ns < N2
        at = h * N2 + ns
        cb_re = tl.load(cb_re_ptr + at, mask=in_n, other=0.0)[:, None]  # (BLOCK_N, 1)
        cb_im = tl.load(cb_im_ptr + at, mask=in_n, other=0.0)[:, None]
        s_re, f1, f2, f3 = _load_powers_operands(s_re_ptr, f1_ptr, f2_ptr, f3_ptr, at, in_n)
        v_re, v_im = _powers(l, s_re, f1, f2, f3)  # (BLOCK_N, BLOCK_L)
        acc += tl.sum(cb_re * v_re - cb_im * v_im, axis=0)
    tl.store(k_ptr + h * L + ls, 2.0 * acc, mask=ls < L)


@triton.jit
def _vandermonde_bwd_kernel(
    g_ptr,  # (H, L) dLoss/dK
    s_re_ptr,  # (H, N2) Re s
    f1_ptr,  # (H, N2) Im s / 2π = f1 + f2 + f3
    f2_ptr,
    f3_ptr,
    s0_re_ptr,  # (splits, H, N2) out: partial Σ_l g[l] conj(V[l])
    s0_im_ptr,
    s1_re_ptr,  # (splits, H, N2) out: partial Σ_l g[l] · l · conj(V[l])
    s1_im_ptr,
    H,
    N2,
    L,
    TILES_PER_SPLIT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: the two sums over TILES_PER_SPLIT l-tiles for channel h and an n-tile.

    With P = CB·V, K = 2 Re Σ_n P and torch's gradient convention (grad z = ∂/∂Re z + i ∂/∂Im z):
        grad CB = 2 Σ_l g conj(V),   grad s = 2 Σ_l g · l · conj(CB V) = 2 conj(CB) Σ_l g · l · conj(V).
    The caller finishes both (sum over splits, the factor 2, conj(CB)) in PyTorch.
    """
    h = tl.program_id(0)
    ns = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    split = tl.program_id(2)
    in_n = ns < N2
    at = h * N2 + ns
    s_re, f1, f2, f3 = _load_powers_operands(s_re_ptr, f1_ptr, f2_ptr, f3_ptr, at, in_n)  # (BLOCK_N, 1)
    s0_re = tl.zeros((BLOCK_N,), dtype=tl.float32)
    s0_im = tl.zeros((BLOCK_N,), dtype=tl.float32)
    s1_re = tl.zeros((BLOCK_N,), dtype=tl.float32)
    s1_im = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for t in range(TILES_PER_SPLIT):
        ls = (split * TILES_PER_SPLIT + t) * BLOCK_L + tl.arange(0, BLOCK_L)
        g = tl.load(g_ptr + h * L + ls, mask=ls < L, other=0.0)[None, :]  # (1, BLOCK_L); 0 past L
        l = ls.to(tl.float32)[None, :]
        v_re, v_im = _powers(l, s_re, f1, f2, f3)  # (BLOCK_N, BLOCK_L)
        s0_re += tl.sum(g * v_re, axis=1)
        s0_im -= tl.sum(g * v_im, axis=1)
        gl = g * l
        s1_re += tl.sum(gl * v_re, axis=1)
        s1_im -= tl.sum(gl * v_im, axis=1)
    out = (split * H + h) * N2 + ns
    tl.store(s0_re_ptr + out, s0_re, mask=in_n)
    tl.store(s0_im_ptr + out, s0_im, mask=in_n)
    tl.store(s1_re_ptr + out, s1_re, mask=in_n)
    tl.store(s1_im_ptr + out, s1_im, mask=in_n)


def _round_to_bits(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x rounded to `bits` significant bits (float64)."""
    mantissa, exponent = torch.frexp(x)  # x = mantissa · 2^exponent, ½ ≤ |mantissa| < 1
    return torch.ldexp(torch.round(mantissa * 2.0**bits), exponent - bits)


def _split_turns(turns: torch.Tensor, L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f (float64) = f1 + f2 + f3 in fp32, where l·f1 and l·f2 are exact in fp32 for all l < L.

    l < 2^k needs k bits, so f1 and f2 keep 24 − k significant bits each; f3 is the rest, |f3| ≲
    |f|·2^(2k−48), and l·f3 is rounded once: error ≲ 2^(3k−73) turns (2⁻³¹ at L = 2¹⁴, 2⁻²² at 2¹⁷).
    """
    bits = max(24 - max(L - 1, 1).bit_length(), 1)
    f1 = _round_to_bits(turns, bits)
    f2 = _round_to_bits(turns - f1, bits)
    f3 = turns - f1 - f2
    return f1.float(), f2.float(), f3.float()


def _powers_operands(log_Ab: torch.Tensor, L: int) -> tuple[torch.Tensor, ...]:
    """The fp32 planes `_powers` reads: Re s and the split turns of Im s, each (H, N2) contiguous."""
    s = log_Ab.to(torch.complex128)
    turns = s.imag / (2 * math.pi)
    f1, f2, f3 = _split_turns(turns - torch.round(turns), L)  # whole turns dropped exactly
    return s.real.float().contiguous(), f1.contiguous(), f2.contiguous(), f3.contiguous()


def _block(size: int, cap: int) -> int:
    return min(triton.next_power_of_2(size), cap)


class _VandermondeKernel(torch.autograd.Function):
    """K = 2 Re Σ_n CB[:, n] exp(log_Ab[:, n] · l) (H, L) float32, from complex (H, N2) CB and log_Ab."""

    @staticmethod
    def forward(ctx, CB: torch.Tensor, log_Ab: torch.Tensor, L: int) -> torch.Tensor:
        H, N2 = CB.shape
        check_runnable(_vandermonde_fwd_kernel, CB)
        cb = CB.to(torch.complex64)
        cb_re, cb_im = cb.real.contiguous(), cb.imag.contiguous()
        s_re, f1, f2, f3 = _powers_operands(log_Ab, L)
        K = torch.empty(H, L, dtype=torch.float32, device=CB.device)
        BLOCK_N, BLOCK_L = _block(N2, BLOCK_N_MAX), _block(L, BLOCK_L_MAX)
        grid = (H, triton.cdiv(L, BLOCK_L))
        _vandermonde_fwd_kernel[grid](
            cb_re, cb_im, s_re, f1, f2, f3, K, N2, L, BLOCK_N=BLOCK_N, BLOCK_L=BLOCK_L
        )
        ctx.save_for_backward(CB, log_Ab)
        ctx.L = L
        return K

    @staticmethod
    def backward(ctx, grad_K: torch.Tensor):
        CB, log_Ab = ctx.saved_tensors
        L = ctx.L
        H, N2 = CB.shape
        s_re, f1, f2, f3 = _powers_operands(log_Ab, L)
        g = grad_K.float().contiguous()
        BLOCK_N, BLOCK_L = _block(N2, BLOCK_N_MAX), _block(L, BLOCK_L_MAX)
        tiles_per_split = min(TILES_PER_SPLIT, triton.cdiv(L, BLOCK_L))
        splits = triton.cdiv(triton.cdiv(L, BLOCK_L), tiles_per_split)
        s0_re, s0_im, s1_re, s1_im = torch.empty(4, splits, H, N2, dtype=torch.float32, device=CB.device)
        grid = (H, triton.cdiv(N2, BLOCK_N), splits)
        _vandermonde_bwd_kernel[grid](
            g, s_re, f1, f2, f3, s0_re, s0_im, s1_re, s1_im, H, N2, L,
            TILES_PER_SPLIT=tiles_per_split, BLOCK_N=BLOCK_N, BLOCK_L=BLOCK_L,
        )  # fmt: skip
        sum_g_conj_V = torch.complex(s0_re.sum(0), s0_im.sum(0)).to(CB.dtype)  # (H, N2)
        sum_gl_conj_V = torch.complex(s1_re.sum(0), s1_im.sum(0)).to(CB.dtype)
        grad_CB = 2 * sum_g_conj_V if ctx.needs_input_grad[0] else None
        grad_log_Ab = (2 * CB.conj() * sum_gl_conj_V).to(log_Ab.dtype) if ctx.needs_input_grad[1] else None
        return grad_CB, grad_log_Ab, None


def s4d_kernel(
    lam: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor, L: int, method: str = "zoh"
) -> torch.Tensor:
    """The S4D kernel (H, L) in C's real dtype; same contract as `ssm.kernels.reference.s4d_kernel`.

    lam, B, C complex (H, N2); dt real (H,). Float64 inputs are computed by the reference.
    """
    reference._check_diagonal(lam, B, C, dt)
    if L < 1:
        raise ValueError(f"kernel length L must be ≥ 1, got {L}")
    if not takes_fp32(lam, B, C, dt):
        return reference.s4d_kernel(lam, B, C, dt, L, method)
    # The (H, N2) preprocessing, in complex128 as in the reference; autograd differentiates it.
    Ab, Bb = reference.discretize(lam, B, dt[:, None], method)
    CB = C.to(torch.complex128) * Bb  # (H, N2)
    # log Ab (H, N2). For ZOH it is dt·λ, taken directly: log(exp(dt·λ)) is −inf where exp underflows
    # (dt·Re λ < −745), and −inf · l is NaN at l = 0.
    log_Ab = dt.to(torch.float64)[:, None] * lam.to(torch.complex128) if method == "zoh" else torch.log(Ab)
    return _VandermondeKernel.apply(CB, log_Ab, L).to(C.real.dtype)
