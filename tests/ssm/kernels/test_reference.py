"""The PyTorch reference kernels against explicit float64 numpy loops (REFERENCE.md §1–§2)."""

import math

import numpy as np
import pytest
import torch

from ssm.init import diag_init, hippo_legs, hippo_legs_nplr, normal_part_eigen
from ssm.kernels import cauchy, dplr_kernel, fft_conv, linear_scan, reference, s4d_kernel, vandermonde_kernel
from ssm.kernels.reference import s4d_kernel as s4d_kernel_blocked


def recurrence_kernel(lam, B, C, dt, L, method):
    """Impulse response of x_k = Ab x_{k−1} + Bb u_k, y_k = 2 Re(C x_k), in float64."""
    lam, B, C = (np.asarray(x, dtype=np.complex128) for x in (lam, B, C))
    dt = np.asarray(dt, dtype=np.float64)[:, None]
    if method == "zoh":
        Ab = np.exp(dt * lam)
        Bb = (Ab - 1) / lam * B
    else:
        Ab = (1 + dt * lam / 2) / (1 - dt * lam / 2)
        Bb = dt * B / (1 - dt * lam / 2)
    x, out = np.zeros_like(Bb), []
    for l in range(L):
        x = Ab * x + (Bb if l == 0 else 0)
        out.append(2 * (C * x).sum(-1).real)
    return np.stack(out, -1)


def random_system(H, N2, dtype, init="inv", seed=0):
    g = torch.Generator().manual_seed(seed)
    lam = diag_init(init, 2 * N2).lam.repeat(H, 1)
    B = torch.randn(H, N2, dtype=torch.complex128, generator=g)
    C = torch.randn(H, N2, dtype=torch.complex128, generator=g)
    dt = torch.exp(torch.rand(H, dtype=torch.float64, generator=g) * math.log(100) + math.log(1e-3))
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return lam.to(dtype), B.to(dtype), C.to(dtype), dt.to(real)


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
@pytest.mark.parametrize(("H", "N2", "L"), [(1, 1, 1), (3, 4, 7), (4, 16, 1000), (2, 32, 4096)])
@pytest.mark.parametrize("init", ["inv", "lin", "legs"])
def test_s4d_kernel_equals_recurrence(method, H, N2, L, init):
    for dtype, tol in [(torch.complex128, 1e-10), (torch.complex64, 1e-5)]:
        lam, B, C, dt = random_system(H, N2, dtype, init)
        K = s4d_kernel(lam, B, C, dt, L, method)
        assert K.shape == (H, L) and K.dtype == dt.dtype
        ref = recurrence_kernel(lam.numpy(), B.numpy(), C.numpy(), dt.numpy(), L, method)
        assert rel_err(K.numpy(), ref) <= tol


@pytest.mark.parametrize("L", [1, 5, 64, 999])
def test_blocking_does_not_change_the_kernel(L):
    lam, B, C, dt = random_system(3, 8, torch.complex128)
    whole = s4d_kernel_blocked(lam, B, C, dt, L, block=L)  # one block: the plain Vandermonde product
    for block in [1, 3, 32, None]:
        torch.testing.assert_close(
            s4d_kernel_blocked(lam, B, C, dt, L, block=block), whole, rtol=1e-12, atol=1e-12
        )
    torch.testing.assert_close(vandermonde_kernel(lam, B, C, dt, L), whole, rtol=1e-10, atol=1e-12)


def test_s4d_kernel_gradients_match_the_materialized_formulation():
    lam, B, C, dt = random_system(2, 4, torch.complex128)
    for x in (lam, B, C, dt):
        x.requires_grad_(True)
    g1 = torch.autograd.grad(s4d_kernel(lam, B, C, dt, 50).pow(2).sum(), (lam, B, C, dt))
    g2 = torch.autograd.grad(vandermonde_kernel(lam, B, C, dt, 50).pow(2).sum(), (lam, B, C, dt))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_zoh_handles_a_zero_eigenvalue():
    lam = torch.zeros(1, 1, dtype=torch.complex128)
    K = s4d_kernel(
        lam, torch.ones_like(lam), torch.ones_like(lam), torch.tensor([0.1], dtype=torch.float64), 4
    )
    torch.testing.assert_close(K, torch.full((1, 4), 0.2, dtype=torch.float64))  # 2·Re(dt·1·1)


def test_a_fully_decayed_mode_gives_zeros_not_nan():
    lam = torch.tensor([[-1e4 + 1j]], dtype=torch.complex128)  # dt·|Re λ| = 1000: exp underflows
    ones = torch.ones_like(lam)
    K = s4d_kernel(lam, ones, ones, torch.tensor([0.1], dtype=torch.float64), 6)
    assert torch.isfinite(K).all() and K[0, 1:].abs().max() == 0


@pytest.mark.parametrize("kernel", [reference.dplr_kernel, dplr_kernel], ids=["reference", "dispatched"])
def test_dplr_kernel_equals_dense_hippo_bilinear(kernel):
    """S4's Cauchy/Woodbury kernel = the dense HiPPO-LegS system discretized bilinearly (numpy loop),
    as Algorithm 1 is written (reference) and as `ssm.kernels.dplr_kernel` computes it."""
    N, L = 16, 300
    A, Bh = (x.numpy() for x in hippo_legs(N))
    _, P, _ = hippo_legs_nplr(N)
    lam, V = normal_part_eigen(N)
    V = V.numpy()
    rng = np.random.default_rng(0)
    dts = np.array([0.01, 0.05, 0.3])
    C_real = rng.standard_normal((3, N))
    I = np.eye(N)
    refs, C_tilde = [], []
    for dt, c in zip(dts, C_real, strict=True):
        Ad = np.linalg.solve(I - dt / 2 * A, I + dt / 2 * A)
        x, out = np.linalg.solve(I - dt / 2 * A, dt * Bh), []
        for _ in range(L):
            out.append(c @ x)
            x = Ad @ x
        refs.append(out)
        C_tilde.append(c @ (I - np.linalg.matrix_power(Ad, L)) @ V)  # S4's C̃ in the slots
    to_slots = V.conj().T
    for dtype, tol in [(torch.complex128, 1e-9), (torch.complex64, 1e-5)]:

        def rep(x, dtype=dtype):
            return torch.as_tensor(np.asarray(x)).to(dtype).expand(3, -1)

        K = kernel(
            rep(lam.numpy()),
            rep(to_slots @ P.numpy()),
            rep(to_slots @ Bh),
            torch.tensor(np.array(C_tilde)).to(dtype),
            torch.tensor(dts),
            L,
        )
        assert rel_err(K.numpy(), np.array(refs)) <= tol


def direct_conv(u, k, k_rev=None):
    B, L, H = u.shape
    y = np.zeros((B, L, H))
    for t in range(L):
        for s in range(t + 1):
            y[:, t] += k[:, s] * u[:, t - s]
        if k_rev is not None:
            for s in range(L - t):
                y[:, t] += k_rev[:, s] * u[:, t + s]
    return y


@pytest.mark.parametrize("L", [1, 6, 33])
def test_fft_conv_is_causal_linear_convolution(L):
    rng = np.random.default_rng(L)
    u, k, k_rev = rng.standard_normal((2, L, 3)), rng.standard_normal((3, L)), rng.standard_normal((3, L))
    y = fft_conv(torch.tensor(u), torch.tensor(k))
    np.testing.assert_allclose(y.numpy(), direct_conv(u, k), atol=1e-10)
    y2 = fft_conv(torch.tensor(u), torch.tensor(k), torch.tensor(k_rev))
    np.testing.assert_allclose(y2.numpy(), direct_conv(u, k, k_rev), atol=1e-10)
    # "applied to the reversed sequence": the anti-causal half equals a causal conv of flip(u), flipped
    flipped = fft_conv(torch.tensor(u).flip(1), torch.tensor(k_rev)).flip(1)
    np.testing.assert_allclose(y2.numpy(), y.numpy() + flipped.numpy(), atol=1e-10)


def scan_loop(a, b):
    x, out = np.zeros(b.shape[::2][:1] + b.shape[2:], dtype=np.complex128), []
    a = np.broadcast_to(a, b.shape)
    for k in range(b.shape[1]):
        x = a[:, k] * x + b[:, k]
        out.append(x)
    return np.stack(out, 1)


@pytest.mark.parametrize("L", [1, 2, 3, 1000, 16384])
def test_linear_scan_equals_sequential_loop(L):
    rng = np.random.default_rng(L)
    mag = rng.uniform(0.5, 1.0, (2, L, 3))
    a = mag * np.exp(1j * rng.uniform(-np.pi, np.pi, (2, L, 3)))
    b = rng.standard_normal((2, L, 3)) + 1j * rng.standard_normal((2, L, 3))
    ref = scan_loop(a, b)
    x = linear_scan(torch.tensor(a).to(torch.complex64), torch.tensor(b).to(torch.complex64))
    assert torch.isfinite(x).all()
    assert rel_err(x.numpy(), ref) < 1e-5
    x64 = linear_scan(torch.tensor(a), torch.tensor(b))
    assert rel_err(x64.numpy(), ref) < 1e-12


def test_linear_scan_time_invariant_a():
    rng = np.random.default_rng(0)
    a = 0.99 * np.exp(1j * rng.uniform(-1, 1, 4))
    b = rng.standard_normal((2, 777, 4)) + 0j
    ref = scan_loop(a[None, None, :], b)
    np.testing.assert_allclose(
        linear_scan(torch.tensor(a), torch.tensor(b)).numpy(), ref, rtol=1e-10, atol=1e-12
    )


def test_cauchy_equals_loop():
    rng = np.random.default_rng(0)
    v, w = rng.standard_normal((2, 3, 5)) + 1j * rng.standard_normal((2, 3, 5))
    z = np.exp(-2j * np.pi * np.arange(7) / 7)
    ref = np.array([[sum(v[h, n] / (z[l] - w[h, n]) for n in range(5)) for l in range(7)] for h in range(3)])
    np.testing.assert_allclose(
        cauchy(torch.tensor(v), torch.tensor(z), torch.tensor(w)).numpy(), ref, rtol=1e-12
    )


def test_shape_errors_name_expected_and_given():
    lam, B, C, dt = random_system(2, 3, torch.complex64)
    with pytest.raises(ValueError, match=r"expected B of shape \(H, N/2\) = \(2, 3\), got \(2, 4\)"):
        s4d_kernel(lam, torch.zeros(2, 4, dtype=B.dtype), C, dt, 8)
    with pytest.raises(ValueError, match=r"expected dt of shape \(H,\)"):
        s4d_kernel(lam, B, C, dt[:1], 8)
    with pytest.raises(ValueError, match="unknown discretization 'euler'"):
        s4d_kernel(lam, B, C, dt, 8, method="euler")
    with pytest.raises(ValueError, match=r"expected input of shape \(B, L, H\)"):
        fft_conv(torch.zeros(4, 5), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="does not broadcast"):
        linear_scan(torch.zeros(2, 3, 5), torch.zeros(2, 4, 5))
