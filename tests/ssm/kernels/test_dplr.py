"""S4's fast DPLR kernel (ssm.kernels.dplr) against the float64 reference (Algorithm 1 as written).

Tolerances: float64 paths 1e-10; fp32 paths max |fast − reference| ≤ 1e-5 · max |reference| per
channel for values, 1e-4 for the gradients of the whole kernel (GRAD_RTOL). Gradients of the custom autograd.Function are checked with
torch.autograd.gradcheck in float64.
"""

import math

import pytest
import torch

import ssm.kernels
from ssm.init import hippo_legs_nplr, normal_part_eigen
from ssm.kernels import dplr, reference

RTOL = 1e-5


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max over rows of max |actual − expected| / max |expected|; rows index all but the last
    dimension (a 1-D tensor is one row)."""
    actual = actual.to(expected.dtype).reshape(-1, actual.shape[-1])
    expected = expected.reshape(-1, expected.shape[-1])
    return ((actual - expected).abs().amax(1) / expected.abs().amax(1)).max().item()


def s4_system(H: int, N: int, dtype=torch.complex64, seed: int = 0):
    """S4's initialization (HiPPO-LegS in the eigenbasis of its normal part), random C̃ and dt ∈ [1e-3, 1e-1]."""
    g = torch.Generator().manual_seed(seed)
    lam, V = normal_part_eigen(N)
    _, P, B = hippo_legs_nplr(N)
    to_slots = V.conj().T
    P, B = to_slots @ P.to(V.dtype), to_slots @ B.to(V.dtype)
    C = torch.randn(H, N, dtype=torch.float64, generator=g).to(V.dtype) @ V
    dt = torch.exp(torch.rand(H, dtype=torch.float64, generator=g) * math.log(100) + math.log(1e-3))
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return [
        lam.repeat(H, 1).to(dtype),
        P.repeat(H, 1).to(dtype),
        B.repeat(H, 1).to(dtype),
        C.to(dtype),
        dt.to(real),
    ]


def to_float64(tensors):
    return [t.detach().to(torch.complex128 if t.is_complex() else torch.float64) for t in tensors]


def random_sums_problem(M=3, J=4, N=5, Z=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(M, J, N, dtype=torch.complex128, generator=g)
    w = torch.complex(
        -torch.rand(M, N, dtype=torch.float64, generator=g) - 0.1,
        3 * torch.randn(M, N, dtype=torch.float64, generator=g),
    )
    y = 3 * torch.randn(Z, dtype=torch.float64, generator=g)
    return v, y, w


def sums_by_reference(v, y, w):
    """The same sums by the materializing reference Cauchy kernel, each of the J rows on its own."""
    return reference.cauchy(v, torch.complex(torch.zeros_like(y), y), w[:, None].expand_as(v))


@pytest.mark.parametrize("chunk", [1, 3, None])
def test_cauchy_sums_equal_the_reference_cauchy(chunk):
    v, y, w = random_sums_problem()
    torch.testing.assert_close(
        dplr.cauchy_sums(v, y, w, chunk), sums_by_reference(v, y, w), rtol=1e-12, atol=1e-12
    )


def test_cauchy_sums_gradcheck_float64():
    v, y, w = random_sums_problem(M=2, J=2, N=3, Z=5)
    v.requires_grad_(), w.requires_grad_()
    assert torch.autograd.gradcheck(lambda v, w: dplr.cauchy_sums(v, y, w, chunk=2), (v, w))


def test_cauchy_sums_fp32_values_and_gradients_match_float64():
    v, y, w = random_sums_problem(M=4, J=4, N=16, Z=37)
    weight = torch.randn(4, 4, 37, dtype=torch.complex128)
    grads = []
    fast = lambda v, y, w: dplr.cauchy_sums(v.to(torch.complex64), y, w, chunk=8)  # noqa: E731
    for compute in (fast, sums_by_reference):
        v_, w_ = v.clone().requires_grad_(), w.clone().requires_grad_()
        out = compute(v_, y, w_)
        grads.append((out, *torch.autograd.grad((out * weight).real.sum(), (v_, w_))))
    for fast, slow in zip(*grads, strict=True):
        assert max_rel_error(fast.detach(), slow.detach()) <= RTOL


def test_cauchy_sums_reject_bad_input():
    v, y, w = random_sums_problem()
    with pytest.raises(ValueError, match=r"expected v \(M, J, N\) and w \(M, N\)"):
        dplr.cauchy_sums(v, y, w[:, :2])
    with pytest.raises(ValueError, match="y must be real"):
        dplr.cauchy_sums(v, y.to(torch.complex128), w)
    with pytest.raises(ValueError, match="does not differentiate y"):
        dplr.cauchy_sums(v, y.requires_grad_(), w)


@pytest.mark.parametrize("L", [1, 2, 7, 64, 301])
def test_dplr_kernel_equals_the_reference(L):
    """Odd and even L (even L has the ω = −1 frequency, handled on its own), float64 and fp32."""
    system = s4_system(3, 16)
    expected = reference.dplr_kernel(*to_float64(system), L)
    torch.testing.assert_close(dplr.dplr_kernel(*to_float64(system), L), expected, rtol=1e-10, atol=1e-12)
    actual = dplr.dplr_kernel(*system, L)
    assert actual.dtype == torch.float32 and actual.shape == (3, L)
    assert max_rel_error(actual, expected) <= RTOL


def test_dplr_kernel_at_the_benchmark_size_matches_the_reference():
    """N = 64 (|Im λ| up to 1303) at L = 4096, the size of the issue's target, on a few channels."""
    system = s4_system(4, 64, seed=1)
    expected = reference.dplr_kernel(*to_float64(system), 4096)
    assert max_rel_error(dplr.dplr_kernel(*system, 4096), expected) <= RTOL


def test_slow_modes_need_the_compensated_difference():
    """Poles 5e-6 from the imaginary axis, up to 6.5 from 0: rounding i·t − w's operands to fp32 once
    loses ~2% at resonance; the hi + lo difference stays within 1e-5."""
    H, N2, L = 4, 32, 4096
    g = torch.Generator().manual_seed(2)
    lam = torch.complex(-1e-3 * torch.rand(H, N2, generator=g), 1300 * torch.rand(H, N2, generator=g))
    B, C = (torch.randn(H, N2, dtype=torch.complex64, generator=g) for _ in range(2))
    system = [lam.to(torch.complex64), torch.zeros_like(B), B, C, torch.full((H,), 0.01)]
    expected = reference.dplr_kernel(*to_float64(system), L)
    assert max_rel_error(dplr.dplr_kernel(*system, L), expected) <= RTOL

    def rounded_once(v, y, w):
        return dplr.cauchy_sums(v, y.float(), w.to(torch.complex64))

    assert max_rel_error(dplr.dplr_kernel(*system, L, rounded_once), expected) > 1e-3


@pytest.mark.parametrize("L", [6, 7])
def test_dplr_kernel_gradcheck_float64(L):
    system = [t.requires_grad_() for t in to_float64(s4_system(2, 6))]
    assert torch.autograd.gradcheck(lambda *x: dplr.dplr_kernel(*x, L), system)


# fp32 gradients: the backward's sums run over all L points in fp32 GEMMs and reach dt's gradient
# through w = λ dt/2 with |λ| up to ~100 here (1300 at N = 64): measured up to 7e-5 of dt's gradient
# and 3e-5 of λ's, against 4e-6 when the float64 reference's inputs are perturbed by one fp32 ulp.
GRAD_RTOL = 1e-4


def test_dplr_kernel_fp32_gradients_match_the_float64_reference():
    L = 200
    for seed in range(4):
        system32 = [t.requires_grad_() for t in s4_system(3, 16, seed=seed)]
        system64 = [t.requires_grad_() for t in to_float64(system32)]
        weight = torch.randn(3, L, dtype=torch.float64)
        fast = torch.autograd.grad((dplr.dplr_kernel(*system32, L) * weight).sum(), system32)
        slow = torch.autograd.grad((reference.dplr_kernel(*system64, L) * weight).sum(), system64)
        for name, a, b in zip(("lam", "P", "B", "C", "dt"), fast, slow, strict=True):
            assert max_rel_error(a, b) <= GRAD_RTOL, (seed, name)


def test_no_tensor_of_the_cauchy_matrix_size_is_kept_for_backward():
    """Autograd keeps (H, 4, N/2), (H, L/2 + 1)-sized tensors, never one of H · N/2 · (L/2 + 1)."""
    H, N, L = 2, 64, 256
    system = [t.requires_grad_() for t in s4_system(H, N)]
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        dplr.dplr_kernel(*system, L)
    assert saved and max(saved) < H * (N // 2) * (L // 2 + 1) / 4


def test_the_dispatcher_computes_the_fast_kernel(monkeypatch):
    monkeypatch.setenv("SSMBENCH_KERNELS", "torch")
    calls = []
    monkeypatch.setattr(dplr, "cauchy_sums", lambda *a: calls.append(1) or dplr._CauchySums.apply(*a, 64))
    system = s4_system(2, 8)
    torch.testing.assert_close(ssm.kernels.dplr_kernel(*system, 50), dplr.dplr_kernel(*system, 50))
    assert calls


def test_dplr_kernel_shape_errors():
    lam, P, B, C, dt = s4_system(2, 8)
    with pytest.raises(ValueError, match="P must have the shape of lam"):
        dplr.dplr_kernel(lam, P[:, :2], B, C, dt, 8)
    with pytest.raises(ValueError, match="L must be"):
        dplr.dplr_kernel(lam, P, B, C, dt, 0)
