"""The Cauchy kernel of S4 in Triton (REFERENCE.md §2, S4's DPLR kernel):

    out[m, l] = Σ_n v[m, n] / (z[l] − w[m, n]),   v, w complex (M, N) (leading dims flattened), z (L,).

The forward sums over n for a tile of l, the backward over l for a tile of n (the gradients of v and
w) and over n again for the gradient of z; the (M, N, L) matrix of 1/(z − w) is never materialized.

Complex tensors are passed as stacked real fp32 planes: v, out and the gradients as (re, im); z and w
as (re_hi, im_hi, re_lo, im_lo), the hi + lo split of `ssm.kernels.dplr.hi_lo`, so that z − w =
(z_hi − w_hi) + (z_lo − w_lo) keeps its accuracy where z is close to a pole (hi − hi is then exact).
That matters for S4, whose points i·tan(πk/L) pass within dt/4 of poles of size up to dt·650 (see
`ssm.kernels.dplr`); complex64 inputs have lo = 0. 1/d = conj(d)/|d|².
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ssm.kernels import dplr, reference

from .runtime import check_runnable, takes_fp32

BLOCK_N_MAX = 32
BLOCK_L_MAX = 64


@triton.jit
def _load_complex(ptr, at, plane, mask):
    """(re, im) at offsets `at` of a complex tensor stored as [re, im] planes `plane` elements apart."""
    return tl.load(ptr + at, mask=mask, other=0.0), tl.load(ptr + plane + at, mask=mask, other=0.0)


@triton.jit
def _store_complex(ptr, at, plane, re, im, mask):
    tl.store(ptr + at, re, mask=mask)
    tl.store(ptr + plane + at, im, mask=mask)


@triton.jit
def _inverse_differences(z_ptr, ls, in_l, L, w_ptr, at, in_n, MN):
    """r = 1/(z[l] − w[n]) on a (BLOCK_N, BLOCK_L) tile; z (L,) and w (M·N,) are hi/lo planes.

    r is 0 outside the valid (n, l) pairs: a padded pair may sit at a pole (z = w = 0 from the masked
    loads), and 0·inf would poison the sums."""
    z_re, z_im = _load_complex(z_ptr, ls, L, in_l)
    z_re_lo, z_im_lo = _load_complex(z_ptr + 2 * L, ls, L, in_l)
    w_re, w_im = _load_complex(w_ptr, at, MN, in_n)
    w_re_lo, w_im_lo = _load_complex(w_ptr + 2 * MN, at, MN, in_n)
    d_re = (z_re[None, :] - w_re[:, None]) + (z_re_lo[None, :] - w_re_lo[:, None])
    d_im = (z_im[None, :] - w_im[:, None]) + (z_im_lo[None, :] - w_im_lo[:, None])
    valid = in_n[:, None] & in_l[None, :]
    norm = tl.where(valid, d_re * d_re + d_im * d_im, 1.0)
    scale = tl.where(valid, 1.0 / norm, 0.0)
    return d_re * scale, -d_im * scale


@triton.jit
def _cauchy_sum_kernel(
    v_ptr,  # (2, M, N)
    w_ptr,  # (4, M, N)
    z_ptr,  # (4, L)
    out_ptr,  # (2, M, L) out
    M,
    N,
    L,
    SQUARED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: out[m, l-tile] = Σ_n v[m, n] · r^p, r = 1/(z[l] − w[m, n]), p = 2 if SQUARED else 1.

    p = 1 is the forward; p = 2 gives ∂out/∂z = −Σ_n v r² for the backward."""
    m = tl.program_id(0)
    ls = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    in_l = ls < L
    acc_re = tl.zeros((BLOCK_L,), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)
        in_n = ns < N
        at = m * N + ns
        v_re, v_im = _load_complex(v_ptr, at, M * N, in_n)
        r_re, r_im = _inverse_differences(z_ptr, ls, in_l, L, w_ptr, at, in_n, M * N)  # (BLOCK_N, BLOCK_L)
        if SQUARED:
            r_re, r_im = r_re * r_re - r_im * r_im, 2.0 * r_re * r_im
        acc_re += tl.sum(v_re[:, None] * r_re - v_im[:, None] * r_im, axis=0)
        acc_im += tl.sum(v_re[:, None] * r_im + v_im[:, None] * r_re, axis=0)
    _store_complex(out_ptr, m * L + ls, M * L, acc_re, acc_im, in_l)


@triton.jit
def _cauchy_bwd_vw_kernel(
    g_ptr,  # (2, M, L) dLoss/dout
    w_ptr,  # (4, M, N)
    z_ptr,  # (4, L)
    q_ptr,  # (2, M, N) out: Σ_l g conj(r)  = grad v
    p_ptr,  # (2, M, N) out: Σ_l g conj(r²) (grad w = conj(v) · this)
    M,
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
    q_re = tl.zeros((BLOCK_N,), dtype=tl.float32)
    q_im = tl.zeros((BLOCK_N,), dtype=tl.float32)
    p_re = tl.zeros((BLOCK_N,), dtype=tl.float32)
    p_im = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for l0 in range(0, L, BLOCK_L):
        ls = l0 + tl.arange(0, BLOCK_L)
        in_l = ls < L
        g_re, g_im = _load_complex(g_ptr, m * L + ls, M * L, in_l)
        g_re, g_im = g_re[None, :], g_im[None, :]  # (1, BLOCK_L)
        r_re, r_im = _inverse_differences(z_ptr, ls, in_l, L, w_ptr, at, in_n, M * N)  # (BLOCK_N, BLOCK_L)
        # g · conj(r) and g · conj(r²), r² = (r_re² − r_im², 2 r_re r_im)
        q_re += tl.sum(g_re * r_re + g_im * r_im, axis=1)
        q_im += tl.sum(g_im * r_re - g_re * r_im, axis=1)
        r2_re = r_re * r_re - r_im * r_im
        r2_im = 2.0 * r_re * r_im
        p_re += tl.sum(g_re * r2_re + g_im * r2_im, axis=1)
        p_im += tl.sum(g_im * r2_re - g_re * r2_im, axis=1)
    _store_complex(q_ptr, at, M * N, q_re, q_im, in_n)
    _store_complex(p_ptr, at, M * N, p_re, p_im, in_n)


def _planes(x: torch.Tensor) -> torch.Tensor:
    """(re, im) fp32 planes (2, *x.shape), contiguous."""
    return torch.view_as_real(x.to(torch.complex64)).movedim(-1, 0).contiguous()


def _hi_lo_planes(x: torch.Tensor) -> torch.Tensor:
    """(re_hi, im_hi, re_lo, im_lo) fp32 planes (4, *x.shape), contiguous."""
    return torch.cat(dplr.hi_lo(x, torch.float32)).contiguous()


def _complex(planes: torch.Tensor) -> torch.Tensor:
    return torch.complex(planes[0], planes[1])


def _like(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A complex gradient in x's dtype: its real part where x is real (torch's convention)."""
    return grad.to(x.dtype) if x.is_complex() else grad.real.to(x.dtype)


def _blocks(N: int, L: int) -> tuple[int, int]:
    return min(triton.next_power_of_2(N), BLOCK_N_MAX), min(triton.next_power_of_2(L), BLOCK_L_MAX)


class _Cauchy(torch.autograd.Function):
    """out (M, L) complex64 = Σ_n v[:, n] / (z − w[:, n]) for v, w (M, N) and z (L,); z and w may be
    complex128 (their difference is then compensated), the arithmetic is fp32."""

    @staticmethod
    def _sums(v, z, w, squared: bool) -> torch.Tensor:
        """Σ_n v r (squared=False) or Σ_n v r² (squared=True), (M, L) complex64."""
        (M, N), L = v.shape, z.shape[0]
        out = torch.empty(2, M, L, dtype=torch.float32, device=v.device)
        BLOCK_N, BLOCK_L = _blocks(N, L)
        _cauchy_sum_kernel[(M, triton.cdiv(L, BLOCK_L))](
            _planes(v), _hi_lo_planes(w), _hi_lo_planes(z), out, M, N, L,
            SQUARED=squared, BLOCK_N=BLOCK_N, BLOCK_L=BLOCK_L,
        )  # fmt: skip
        return _complex(out)

    @staticmethod
    def forward(ctx, v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        check_runnable(_cauchy_sum_kernel, v)
        ctx.save_for_backward(v, z, w)
        return _Cauchy._sums(v, z, w, squared=False)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        v, z, w = ctx.saved_tensors
        (M, N), L = v.shape, z.shape[0]
        g = _planes(grad_out)
        grad_v = grad_z = grad_w = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            q, p = torch.empty(2, 2, M, N, dtype=torch.float32, device=v.device)
            BLOCK_N, BLOCK_L = _blocks(N, L)
            _cauchy_bwd_vw_kernel[(M, triton.cdiv(N, BLOCK_N))](
                g, _hi_lo_planes(w), _hi_lo_planes(z), q, p, M, N, L, BLOCK_N=BLOCK_N, BLOCK_L=BLOCK_L
            )
            grad_v = _like(_complex(q), v) if ctx.needs_input_grad[0] else None
            grad_w = _like(v.conj().to(torch.complex64) * _complex(p), w) if ctx.needs_input_grad[2] else None
        if ctx.needs_input_grad[1]:
            # ∂out/∂z = −Σ_n v r², so grad z = Σ_m g · conj(−Σ_n v r²).
            grad_z = _like(-(grad_out.to(torch.complex64) * _Cauchy._sums(v, z, w, True).conj()).sum(0), z)
        return grad_v, grad_z, grad_w


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


def cauchy_sums(v: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """out[m, j, k] = Σ_n v[m, j, n] / (i y[k] − w[m, n]); same contract as `ssm.kernels.dplr.cauchy_sums`.

    v complex (M, J, N), y real (Z,), w complex (M, N), y and w best in float64 (compensated
    differences). Complex128 v is computed by the PyTorch version.
    """
    dplr.check_cauchy_sums(v, y, w)
    if not takes_fp32(v):
        return dplr.cauchy_sums(v, y, w)
    M, J, N = v.shape
    z = torch.complex(torch.zeros_like(y, dtype=torch.float64), y.to(torch.float64))
    out = _Cauchy.apply(v.reshape(M * J, N), z, w[:, None].expand(M, J, N).reshape(M * J, N))
    return out.reshape(M, J, -1)
