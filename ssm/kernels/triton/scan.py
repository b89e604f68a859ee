"""S5's linear scan in Triton (REFERENCE.md §2): x_k = a_k x_{k−1} + b_k along time, x_{−1} = 0.

b, x: complex (B, L, P); a: complex, broadcast to (B, L, P) by strides (a time-invariant a of shape (P,)
is read with stride 0 and never expanded in memory).

Each step is the affine map x ↦ a_k x + b_k; composing maps is associative,
    (a2, b2) ∘ (a1, b1) = (a2 a1, a2 b1 + b2),
so the scan runs as a reduce-then-scan over chunks of BLOCK_L steps:
  1. `_chunk_totals_kernel`, one program per (batch, P-tile, chunk): a tree scan in registers
     (`tl.associative_scan`) of the chunk's maps; its last row is the chunk's total map (A_c, B_c).
  2. `_chunk_carries_kernel`, one program per (batch, P-tile): the same recurrence over chunk totals,
     X_c = A_c X_{c−1} + B_c, gives each chunk the state it starts from (carry[c] = X_{c−1}).
  3. `_chunk_apply_kernel`, one program per (batch, P-tile, chunk): the tree scan again, then
     x = A_local · carry[c] + B_local.
Only products of |a| ≤ 1 factors and sums appear, as in the reference: nothing overflows at any L.

Backward (torch's convention, grad z = ∂/∂Re z + i ∂/∂Im z; for y = a x: grad x = conj(a) grad y,
grad a = grad y · conj(x)). With g_k the incoming gradient of x_k, the total gradient of x_k is
    G_k = g_k + conj(a_{k+1}) G_{k+1},   G_{L−1} = g_{L−1}:
the same scan run backwards in time with conj(a) shifted by one step (`REVERSE`). Then
grad b_k = G_k and grad a_k = G_k conj(x_{k−1}), summed over the dimensions along which a broadcasts.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ssm.kernels import reference

from .runtime import check_runnable, takes_fp32

BLOCK_L_MAX = 64  # steps per chunk
BLOCK_P_MAX = 32  # channels per program
BLOCK_C_MAX = 64  # chunks per tile in phase 2
NUM_WARPS = 8  # a (64, 32) tile with 4 warps spills registers in the backward (ptxas, sm_90)


@triton.jit
def _compose(a1_re, a1_im, b1_re, b1_im, a2_re, a2_im, b2_re, b2_im):
    """(a2, b2) ∘ (a1, b1) — map 1 first: x ↦ a2 (a1 x + b1) + b2 = (a2 a1) x + (a2 b1 + b2)."""
    a_re = a2_re * a1_re - a2_im * a1_im
    a_im = a2_re * a1_im + a2_im * a1_re
    b_re = a2_re * b1_re - a2_im * b1_im + b2_re
    b_im = a2_re * b1_im + a2_im * b1_re + b2_im
    return a_re, a_im, b_re, b_im


@triton.jit
def _scan_steps(a_ptr, a_sb, a_sl, a_sp, v_ptr, batch, js, ps, L, P, REVERSE: tl.constexpr):
    """The maps x ↦ coef·x + v of scan steps js (BLOCK, BLOCK_P tile), composed from the first step on:
    (A, B) with x_j = A_j x_start + B_j; and the steps' memory offsets and mask.

    Forward: step j is time k = j, coef = a_k, v = b_k.
    REVERSE: step j is time k = L−1−j, coef = conj(a_{k+1}) (1 at k = L−1: it multiplies the zero
    start), v = g_k. Steps past the end are identity maps, so a chunk's last row is its total.
    a: (B, L, P, 2) by strides a_sb, a_sl, a_sp (in floats); v: contiguous (B, L, P, 2).
    """
    if REVERSE:
        ks = L - 1 - js
        ka = ks + 1
    else:
        ks = js
        ka = js
    valid = (js < L)[:, None] & (ps < P)[None, :]
    has_coef = valid & (ka < L)[:, None]
    a_at = batch * a_sb + ka[:, None] * a_sl + ps[None, :] * a_sp
    coef_re = tl.load(a_ptr + a_at, mask=has_coef, other=1.0)
    coef_im = tl.load(a_ptr + a_at + 1, mask=has_coef, other=0.0)
    if REVERSE:
        coef_im = -coef_im
    at = ((batch * L + ks[:, None]) * P + ps[None, :]) * 2
    v_re = tl.load(v_ptr + at, mask=valid, other=0.0)
    v_im = tl.load(v_ptr + at + 1, mask=valid, other=0.0)
    A_re, A_im, B_re, B_im = tl.associative_scan((coef_re, coef_im, v_re, v_im), 0, _compose)
    return A_re, A_im, B_re, B_im, at, valid


@triton.jit
def _last_row(x, BLOCK: tl.constexpr):
    """x[BLOCK − 1, :] of a (BLOCK, BLOCK_P) tile."""
    return tl.sum(tl.where((tl.arange(0, BLOCK) == BLOCK - 1)[:, None], x, 0.0), axis=0)


@triton.jit
def _chunk_tile(BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr):
    """This program's tile of a chunked scan, grid (B, P tiles, C): its batch row (int64: offsets may
    pass 2³¹), channels ps, chunk c and that chunk's steps js."""
    batch = tl.program_id(0).to(tl.int64)
    ps = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(2)
    js = c * BLOCK_L + tl.arange(0, BLOCK_L)
    return batch, ps, c, js


@triton.jit
def _chunk_totals_kernel(
    a_ptr,  # (B, L, P, 2) by strides
    a_sb,
    a_sl,
    a_sp,
    v_ptr,  # (B, L, P, 2)
    tot_a_ptr,  # (B, C, P, 2) out: A_c, the product of the chunk's coefficients
    tot_b_ptr,  # (B, C, P, 2) out: B_c, the chunk's state from a zero start
    L,
    P,
    C,
    REVERSE: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """Phase 1: chunk c's total map (A_c, B_c), in scan order."""
    batch, ps, c, js = _chunk_tile(BLOCK_L, BLOCK_P)
    A_re, A_im, B_re, B_im, _, _ = _scan_steps(a_ptr, a_sb, a_sl, a_sp, v_ptr, batch, js, ps, L, P, REVERSE)
    out = ((batch * C + c) * P + ps) * 2
    in_p = ps < P
    tl.store(tot_a_ptr + out, _last_row(A_re, BLOCK_L), mask=in_p)
    tl.store(tot_a_ptr + out + 1, _last_row(A_im, BLOCK_L), mask=in_p)
    tl.store(tot_b_ptr + out, _last_row(B_re, BLOCK_L), mask=in_p)
    tl.store(tot_b_ptr + out + 1, _last_row(B_im, BLOCK_L), mask=in_p)


@triton.jit
def _chunk_carries_kernel(
    tot_a_ptr,  # (B, C, P, 2)
    tot_b_ptr,  # (B, C, P, 2)
    carry_ptr,  # (B, C + 1, P, 2) out: carry[c + 1] = X_c; carry[0] = 0 is set by the caller
    C,
    P,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """Phase 2: X_c = A_c X_{c−1} + B_c, X_{−1} = 0, over tiles of BLOCK_C chunks with a running carry."""
    batch = tl.program_id(0).to(tl.int64)
    ps = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    carry_re = tl.zeros((BLOCK_P,), dtype=tl.float32)
    carry_im = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        # The totals are a (B, C, P) scan of the same form, stored contiguously.
        A_re, A_im, B_re, B_im, _, valid = _scan_steps(
            tot_a_ptr, C * P * 2, P * 2, 2, tot_b_ptr, batch, cs, ps, C, P, False
        )
        X_re = A_re * carry_re[None, :] - A_im * carry_im[None, :] + B_re
        X_im = A_re * carry_im[None, :] + A_im * carry_re[None, :] + B_im
        out = ((batch * (C + 1) + cs[:, None] + 1) * P + ps[None, :]) * 2
        tl.store(carry_ptr + out, X_re, mask=valid)
        tl.store(carry_ptr + out + 1, X_im, mask=valid)
        carry_re = _last_row(X_re, BLOCK_C)
        carry_im = _last_row(X_im, BLOCK_C)


@triton.jit
def _chunk_apply_kernel(
    a_ptr,  # (B, L, P, 2) by strides
    a_sb,
    a_sl,
    a_sp,
    v_ptr,  # (B, L, P, 2): b, or g (REVERSE)
    carry_ptr,  # (B, C + 1, P, 2): the state each chunk starts from
    out_ptr,  # (B, L, P, 2) out: x, or G = grad b (REVERSE)
    x_ptr,  # (B, L, P, 2): the forward's x, read when GRAD_A
    ga_ptr,  # out when GRAD_A: grad a (B, L, P, 2), or per-chunk sums (B, C, P, 2) when SUM_A_OVER_L
    L,
    P,
    C,
    REVERSE: tl.constexpr,
    GRAD_A: tl.constexpr,
    SUM_A_OVER_L: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """Phase 3: out = A_local · carry[c] + B_local for chunk c; REVERSE with GRAD_A also grad a_k = G_k conj(x_{k−1})."""
    batch, ps, c, js = _chunk_tile(BLOCK_L, BLOCK_P)
    A_re, A_im, B_re, B_im, at, valid = _scan_steps(
        a_ptr, a_sb, a_sl, a_sp, v_ptr, batch, js, ps, L, P, REVERSE
    )
    start = ((batch * (C + 1) + c) * P + ps) * 2
    carry_re = tl.load(carry_ptr + start, mask=ps < P, other=0.0)[None, :]  # (1, BLOCK_P)
    carry_im = tl.load(carry_ptr + start + 1, mask=ps < P, other=0.0)[None, :]
    out_re = A_re * carry_re - A_im * carry_im + B_re
    out_im = A_re * carry_im + A_im * carry_re + B_im
    tl.store(out_ptr + at, out_re, mask=valid)
    tl.store(out_ptr + at + 1, out_im, mask=valid)
    if GRAD_A:
        # grad a_k = G_k conj(x_{k−1}); x_{−1} = 0. The tile's rows run backwards in time (REVERSE).
        ks = L - 1 - js
        has_prev = valid & (ks >= 1)[:, None]
        prev = at - 2 * P
        x_re = tl.load(x_ptr + prev, mask=has_prev, other=0.0)
        x_im = tl.load(x_ptr + prev + 1, mask=has_prev, other=0.0)
        ga_re = out_re * x_re + out_im * x_im
        ga_im = out_im * x_re - out_re * x_im
        if SUM_A_OVER_L:
            total = ((batch * C + c) * P + ps) * 2
            tl.store(ga_ptr + total, tl.sum(ga_re, axis=0), mask=ps < P)
            tl.store(ga_ptr + total + 1, tl.sum(ga_im, axis=0), mask=ps < P)
        else:
            tl.store(ga_ptr + at, ga_re, mask=valid)
            tl.store(ga_ptr + at + 1, ga_im, mask=valid)


def _scan(
    a: torch.Tensor, v: torch.Tensor, reverse: bool, x: torch.Tensor | None = None, grad_a: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the three phases. a: complex64 broadcastable to v (B, L, P) complex64 contiguous.

    Forward (reverse=False): returns (x, None). Backward (reverse=True, v = g): returns (G, grad a) with
    grad a of shape (B, L, P), or (B, 1, P) summed over time when a does not vary in time; None unless
    `grad_a` (which needs the forward's x).
    """
    batch, L, P = v.shape
    a_planes = torch.view_as_real(a.expand(batch, L, P))  # stride 0 along broadcast dims: no copy
    a_strides = a_planes.stride()[:3]
    BLOCK_L = min(triton.next_power_of_2(L), BLOCK_L_MAX)
    BLOCK_P = min(triton.next_power_of_2(P), BLOCK_P_MAX)
    C = triton.cdiv(L, BLOCK_L)
    BLOCK_C = min(triton.next_power_of_2(C), BLOCK_C_MAX)
    p_tiles = triton.cdiv(P, BLOCK_P)
    v_planes = torch.view_as_real(v)
    tot_a, tot_b = torch.empty(2, batch, C, P, 2, dtype=torch.float32, device=v.device)
    _chunk_totals_kernel[(batch, p_tiles, C)](
        a_planes, *a_strides, v_planes, tot_a, tot_b, L, P, C,
        REVERSE=reverse, BLOCK_L=BLOCK_L, BLOCK_P=BLOCK_P, num_warps=NUM_WARPS,
    )  # fmt: skip
    carry = torch.empty(batch, C + 1, P, 2, dtype=torch.float32, device=v.device)
    carry[:, 0] = 0
    _chunk_carries_kernel[(batch, p_tiles)](
        tot_a, tot_b, carry, C, P, BLOCK_C=BLOCK_C, BLOCK_P=BLOCK_P, num_warps=NUM_WARPS
    )
    out = torch.empty_like(v)
    sum_a_over_l = a.shape[1] == 1
    ga = None
    if grad_a:
        ga = torch.empty(batch, C if sum_a_over_l else L, P, dtype=torch.complex64, device=v.device)
    out_planes = torch.view_as_real(out)
    _chunk_apply_kernel[(batch, p_tiles, C)](
        a_planes, *a_strides, v_planes, carry, out_planes,
        torch.view_as_real(x) if grad_a else out_planes, torch.view_as_real(ga) if grad_a else out_planes,
        L, P, C,
        REVERSE=reverse, GRAD_A=grad_a, SUM_A_OVER_L=sum_a_over_l, BLOCK_L=BLOCK_L, BLOCK_P=BLOCK_P,
        num_warps=NUM_WARPS,
    )  # fmt: skip
    if ga is not None and sum_a_over_l:
        ga = ga.sum(1, keepdim=True)
    return out, ga


class _LinearScan(torch.autograd.Function):
    """x = scan(a, b) for complex64 a (B|1, L|1, P) and b (B, L, P)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        check_runnable(_chunk_apply_kernel, b)
        x, _ = _scan(a, b.contiguous(), reverse=False)
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, grad_x: torch.Tensor):
        a, x = ctx.saved_tensors
        g = grad_x.resolve_conj().to(torch.complex64).contiguous()
        G, grad_a = _scan(a, g, reverse=True, x=x, grad_a=ctx.needs_input_grad[0])
        if grad_a is not None:
            grad_a = grad_a.sum_to_size(a.shape)
        return grad_a, G if ctx.needs_input_grad[1] else None


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_k = a_k x_{k−1} + b_k along dim 1 of b (B, L, P); same contract as `reference.linear_scan`.

    a broadcasts to b: (B, L, P), or (P,) / (1, 1, P) / (B, 1, P) for a time-invariant a. Real inputs
    run as complex ones with zero imaginary part; float64/complex128 inputs are computed by the reference.
    """
    if b.dim() != 3:
        raise ValueError(f"expected b of shape (B, L, P), got {tuple(b.shape)}")
    mismatch = f"a of shape {tuple(a.shape)} does not broadcast to b of shape {tuple(b.shape)}"
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError as err:
        raise ValueError(mismatch) from err
    if shape != b.shape:
        raise ValueError(mismatch)
    a3 = a.reshape((1,) * (3 - a.dim()) + a.shape)  # (B|1, L|1, P)
    if not takes_fp32(a, b):
        return reference.linear_scan(a, b)
    dtype = torch.result_type(a, b)
    a_c = a3.resolve_conj().to(torch.complex64)
    x = _LinearScan.apply(a_c, b.resolve_conj().to(torch.complex64))
    return x.to(dtype) if dtype.is_complex else x.real.to(dtype)
