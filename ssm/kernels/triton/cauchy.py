"""The Cauchy kernel of S4 in Triton (REFERENCE.md §2, S4's DPLR kernel):

    out[m, l] = Σ_n v[m, n] / (z[l] − w[m, n]),   v, w complex (M, N) (leading dims flattened), z (L,).

The forward sums over n for a tile of l; the (M, N, L) matrix of 1/(z − w) is never materialized.
Complex numbers are real/imaginary planes: 1/d = conj(d)/|d|².
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ssm.kernels import reference

from .runtime import check_runnable, takes_fp32

BLOCK_N_MAX = 32
BLOCK_L_MAX = 64


@triton.jit
def _reciprocal(d_re, d_im, valid):
    """1/d = conj(d) / |d|² where `valid`, 0 elsewhere: a padded (n, l) pair may sit at a pole
    (z = w = 0 from the masked loads), and 0·inf would poison the sums."""
    norm = tl.where(valid, d_re * d_re + d_im * d_im, 1.0)
    scale = tl.where(valid, 1.0 / norm, 0.0)
    return d_re * scale, -d_im * scale


@triton.jit
def _cauchy_fwd_kernel(
    v_re_ptr,  # (M, N)
    v_im_ptr,
    w_re_ptr,  # (M, N)
    w_im_ptr,
    z_re_ptr,  # (L,)
    z_im_ptr,
    out_re_ptr,  # (M, L) out
    out_im_ptr,
    N,
    L,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: out[m, l-tile] = Σ_n v[m, n] · r[n, l], r = 1/(z[l] − w[m, n]), n in BLOCK_N steps."""
    m = tl.program_id(0)
    ls = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    in_l = ls < L
    z_re = tl.load(z_re_ptr + ls, mask=in_l, other=0.0)[None, :]  # (1, BLOCK_L)
    z_im = tl.load(z_im_ptr + ls, mask=in_l, other=0.0)[None, :]
    acc_re = tl.zeros((BLOCK_L,), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)
        in_n = ns < N
        at = m * N + ns
        v_re = tl.load(v_re_ptr + at, mask=in_n, other=0.0)[:, None]  # (BLOCK_N, 1)
        v_im = tl.load(v_im_ptr + at, mask=in_n, other=0.0)[:, None]
        w_re = tl.load(w_re_ptr + at, mask=in_n, other=0.0)[:, None]
        w_im = tl.load(w_im_ptr + at, mask=in_n, other=0.0)[:, None]
        r_re, r_im = _reciprocal(z_re - w_re, z_im - w_im, in_n[:, None])  # (BLOCK_N, BLOCK_L)
        acc_re += tl.sum(v_re * r_re - v_im * r_im, axis=0)
        acc_im += tl.sum(v_re * r_im + v_im * r_re, axis=0)
    tl.store(out_re_ptr + m * L + ls, acc_re, mask=in_l)
    tl.store(out_im_ptr + m * L + ls, acc_im, mask=in_l)


@triton.jit
def _cauchy_bwd_vw_kernel(
    g_re_ptr,  # (M, L) dLoss/dout
    g_im_ptr,
    w_re_ptr,  # (M, N)
    w_im_ptr,
    z_re_ptr,  # (L,)
    z_im_ptr,
    q_re_ptr,  # (M, N) out: Σ_l g conj(r)  = grad v
    q_im_ptr,
    p_re_ptr,  # (M, N) out: Σ_l g conj(r²) (grad w = conj(v) · this)
    p_im_ptr,
    N,
    L,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: sums over all l for row m and an n-tile.

    out is holomorphic in v and w: ∂out/∂v = r, ∂out/∂w = v r², r = 1/(z − w); torch's convention
    for a holomorphic map gives grad = Σ_l g · conj(∂out/∂·).
    """
    m = tl.program_id(0)
    ns = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    in_n = ns < N
    at = m * N + ns
    w_re = tl.load(w_re_ptr + at, mask=in_n, other=0.0)[:, None]  # (BLOCK_N, 1)
    w_im = tl.load(w_im_ptr + at, mask=in_n, other=0.0)[:, None]
    q_re = tl.zeros((BLOCK_N,), dtype=tl.float32)
    q_im = tl.zeros((BLOCK_N,), dtype=tl.float32)
    p_re = tl.zeros((BLOCK_N,), dtype=tl.float32)
    p_im = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for l0 in range(0, L, BLOCK_L):
        ls = l0 + tl.arange(0, BLOCK_L)
        in_l = ls < L
        z_re = tl.load(z_re_ptr + ls, mask=in_l, other=0.0)[None, :]  # (1, BLOCK_L)
        z_im = tl.load(z_im_ptr + ls, mask=in_l, other=0.0)[None, :]
        g_re = tl.load(g_re_ptr + m * L + ls, mask=in_l, other=0.0)[None, :]
        g_im = tl.load(g_im_ptr + m * L + ls, mask=in_l, other=0.0)[None, :]
        r_re, r_im = _reciprocal(z_re - w_re, z_im - w_im, in_l[None, :])  # (BLOCK_N, BLOCK_L)
        # g · conj(r) and g · conj(r²), r² = (r_re² − r_im², 2 r_re r_im)
        q_re += tl.sum(g_re * r_re + g_im * r_im, axis=1)
        q_im += tl.sum(g_im * r_re - g_re * r_im, axis=1)
        r2_re = r_re * r_re - r_im * r_im
        r2_im = 2.0 * r_re * r_im
        p_re += tl.sum(g_re * r2_re + g_im * r2_im, axis=1)
        p_im += tl.sum(g_im * r2_re - g_re * r2_im, axis=1)
    tl.store(q_re_ptr + at, q_re, mask=in_n)
    tl.store(q_im_ptr + at, q_im, mask=in_n)
    tl.store(p_re_ptr + at, p_re, mask=in_n)
    tl.store(p_im_ptr + at, p_im, mask=in_n)


@triton.jit
def _cauchy_bwd_z_kernel(
    g_re_ptr,  # (M, L) dLoss/dout
    g_im_ptr,
    v_re_ptr,  # (M, N)
    v_im_ptr,
    w_re_ptr,
    w_im_ptr,
    z_re_ptr,  # (L,)
    z_im_ptr,
    gz_re_ptr,  # (M, L) out: row m's share of grad z
    gz_im_ptr,
    N,
    L,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: grad z[l] from row m = g[m, l] · conj(−Σ_n v r²) for an l-tile (∂out/∂z = −Σ_n v r²)."""
    m = tl.program_id(0)
    ls = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    in_l = ls < L
    z_re = tl.load(z_re_ptr + ls, mask=in_l, other=0.0)[None, :]  # (1, BLOCK_L)
    z_im = tl.load(z_im_ptr + ls, mask=in_l, other=0.0)[None, :]
    s_re = tl.zeros((BLOCK_L,), dtype=tl.float32)
    s_im = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)
        in_n = ns < N
        at = m * N + ns
        v_re = tl.load(v_re_ptr + at, mask=in_n, other=0.0)[:, None]  # (BLOCK_N, 1)
        v_im = tl.load(v_im_ptr + at, mask=in_n, other=0.0)[:, None]
        w_re = tl.load(w_re_ptr + at, mask=in_n, other=0.0)[:, None]
        w_im = tl.load(w_im_ptr + at, mask=in_n, other=0.0)[:, None]
        r_re, r_im = _reciprocal(z_re - w_re, z_im - w_im, in_n[:, None])  # (BLOCK_N, BLOCK_L)
        r2_re = r_re * r_re - r_im * r_im
        r2_im = 2.0 * r_re * r_im
        s_re += tl.sum(v_re * r2_re - v_im * r2_im, axis=0)
        s_im += tl.sum(v_re * r2_im + v_im * r2_re, axis=0)
    g_re = tl.load(g_re_ptr + m * L + ls, mask=in_l, other=0.0)
    g_im = tl.load(g_im_ptr + m * L + ls, mask=in_l, other=0.0)
    # g · conj(−s) = −(g_re s_re + g_im s_im) − i (g_im s_re − g_re s_im)
    tl.store(gz_re_ptr + m * L + ls, -(g_re * s_re + g_im * s_im), mask=in_l)
    tl.store(gz_im_ptr + m * L + ls, -(g_im * s_re - g_re * s_im), mask=in_l)


def _planes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.to(torch.complex64)
    return x.real.contiguous(), x.imag.contiguous()


def _like(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A complex gradient in x's dtype: its real part where x is real (torch's convention)."""
    return grad.to(x.dtype) if x.is_complex() else grad.real.to(x.dtype)


def _blocks(N: int, L: int) -> tuple[int, int]:
    return min(triton.next_power_of_2(N), BLOCK_N_MAX), min(triton.next_power_of_2(L), BLOCK_L_MAX)


class _Cauchy(torch.autograd.Function):
    """out (M, L) = Σ_n v[:, n] / (z − w[:, n]) for v, w (M, N) and z (L,), complex64."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        check_runnable(_cauchy_fwd_kernel, v)
        (M, N), L = v.shape, z.shape[0]
        out_re, out_im = torch.empty(2, M, L, dtype=torch.float32, device=v.device)
        BLOCK_N, BLOCK_L = _blocks(N, L)
        grid = (M, triton.cdiv(L, BLOCK_L))
        _cauchy_fwd_kernel[grid](
            *_planes(v), *_planes(w), *_planes(z), out_re, out_im, N, L, BLOCK_N=BLOCK_N, BLOCK_L=BLOCK_L
        )
        ctx.save_for_backward(v, z, w)
        return torch.complex(out_re, out_im)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        v, z, w = ctx.saved_tensors
        (M, N), L = v.shape, z.shape[0]
        g_re, g_im = _planes(grad_out)
        BLOCK_N, BLOCK_L = _blocks(N, L)
        grad_v = grad_z = grad_w = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            q_re, q_im, p_re, p_im = torch.empty(4, M, N, dtype=torch.float32, device=v.device)
            _cauchy_bwd_vw_kernel[(M, triton.cdiv(N, BLOCK_N))](
                g_re, g_im, *_planes(w), *_planes(z), q_re, q_im, p_re, p_im, N, L,
                BLOCK_N=BLOCK_N, BLOCK_L=BLOCK_L,
            )  # fmt: skip
            grad_v = _like(torch.complex(q_re, q_im), v)
            grad_w = _like(v.conj().to(torch.complex64) * torch.complex(p_re, p_im), w)
        if ctx.needs_input_grad[1]:
            gz_re, gz_im = torch.empty(2, M, L, dtype=torch.float32, device=v.device)
            _cauchy_bwd_z_kernel[(M, triton.cdiv(L, BLOCK_L))](
                g_re, g_im, *_planes(v), *_planes(w), *_planes(z), gz_re, gz_im, N, L,
                BLOCK_N=BLOCK_N, BLOCK_L=BLOCK_L,
            )  # fmt: skip
            grad_z = _like(torch.complex(gz_re.sum(0), gz_im.sum(0)), z)
        return (
            grad_v if ctx.needs_input_grad[0] else None,
            grad_z,
            grad_w if ctx.needs_input_grad[2] else None,
        )


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """out[..., l] = Σ_n v[..., n] / (z[l] − w[..., n]); same contract as `ssm.kernels.reference.cauchy`.

    v, w complex (..., N); z complex (L,). Complex128 inputs are computed by the reference.
    """
    if v.shape != w.shape:
        raise ValueError(f"v and w must have the same shape, got {tuple(v.shape)} and {tuple(w.shape)}")
    if z.dim() != 1:
        raise ValueError(f"z must be 1-D (L,), got shape {tuple(z.shape)}")
    if v.dim() == 0 or not takes_fp32(v, z, w):
        return reference.cauchy(v, z, w)
    lead, N = v.shape[:-1], v.shape[-1]
    out = _Cauchy.apply(v.reshape(-1, N), z, w.reshape(-1, N))
    return out.reshape(*lead, z.shape[0])
