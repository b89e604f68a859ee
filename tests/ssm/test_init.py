"""Initializations against independent float64 computations (REFERENCE.md §2)."""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg as sla

from ssm.init import (
    DIAGONAL_INITS,
    diag_eigenvalues,
    diag_init,
    hippo_legs,
    hippo_legs_nplr,
    ptd_decomposition,
)


def hippo_loop(N):
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                A[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    return A, np.array([math.sqrt(2 * n + 1) for n in range(N)])


def transfer(lam, b, c, s):
    """2·Re-slot transfer function Σ_n c_n b_n/(s − λ_n) + conj terms, at complex points s."""
    lam, b, c = (np.asarray(x, dtype=np.complex128) for x in (lam, b, c))
    r = c * b
    return (r / (s[:, None] - lam) + r.conj() / (s[:, None] - lam.conj())).sum(-1)


def dense_transfer(A, b, c, s):
    return np.array([c @ np.linalg.solve(si * np.eye(len(b)) - A, b) for si in s])


@pytest.mark.parametrize("N", [1, 2, 7, 16])
def test_hippo_legs_entries(N):
    A, B = hippo_legs(N)
    A_ref, B_ref = hippo_loop(N)
    np.testing.assert_array_equal(A.numpy(), A_ref)
    np.testing.assert_array_equal(B.numpy(), B_ref)


@pytest.mark.parametrize("N", [4, 16, 64])
def test_normal_part_has_real_part_minus_half(N):
    S, P, _ = hippo_legs_nplr(N)
    A, _ = hippo_loop(N)
    np.testing.assert_allclose(S.numpy() - np.outer(P, P), A, atol=1e-12)
    skew = S.numpy() + 0.5 * np.eye(N)
    np.testing.assert_allclose(skew, -skew.T, atol=1e-12)
    eig = np.linalg.eigvals(S.numpy())
    np.testing.assert_allclose(eig.real, -0.5, atol=1e-9)


def test_closed_form_inits():
    N = 32
    n = np.arange(N // 2)
    np.testing.assert_allclose(diag_eigenvalues("inv", N), -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1))
    np.testing.assert_allclose(diag_eigenvalues("lin", N), -0.5 + 1j * np.pi * n)
    np.testing.assert_allclose(diag_eigenvalues("real", N), -(n + 1.0))
    rand = diag_eigenvalues("rand", N, seed=3).numpy()
    assert np.all(rand.real == -0.5) and np.all((rand.imag >= 0) & (rand.imag < np.pi * N / 2))
    np.testing.assert_array_equal(rand, diag_eigenvalues("rand", N, seed=3).numpy())
    assert not np.array_equal(rand, diag_eigenvalues("rand", N, seed=4).numpy())


@pytest.mark.parametrize("name", DIAGONAL_INITS)
def test_every_init_gives_half_the_state(name):
    lam = diag_eigenvalues(name, 16)
    assert lam.shape == (8,) and lam.dtype.is_complex


def test_legs_eigenvalues_are_the_normal_part_spectrum():
    N = 24
    S, _, _ = hippo_legs_nplr(N)
    eig = np.linalg.eigvals(S.numpy())
    upper = eig[eig.imag > 0]
    ours = diag_eigenvalues("legs", N).numpy()
    np.testing.assert_allclose(np.sort(ours.imag), np.sort(upper.imag), rtol=1e-9)
    np.testing.assert_allclose(ours.real, -0.5, atol=1e-12)


@pytest.mark.parametrize("name", ["legs", "ptd"])
def test_slot_system_keeps_the_transfer_function(name):
    """The N/2-slot system (λ, b̃, c̃) with 2·Re outputs has the transfer function of the real system."""
    N = 16
    init = diag_init(name, N, eps=1e-2, seed=1)
    M = init.to_slots.shape[1]
    c = np.random.default_rng(0).standard_normal(M)
    b = np.random.default_rng(1).standard_normal(M)
    s = 1j * np.linspace(-50, 50, 41) + 0.1
    got = transfer(init.lam.numpy(), init.to_slots.numpy() @ b, c @ init.from_slots.numpy(), s)
    if name == "legs":
        S, _, _ = hippo_legs_nplr(N)
        A = S.numpy()
    else:
        # rebuild the real matrix from the full eigen-system the slots were cut from: it must be real
        # and within ‖E‖₂ = eps of HiPPO-LegS of its size
        lam_full, V_full = _unfold(init.lam.numpy(), init.from_slots.numpy())
        A_rec = (V_full * lam_full) @ np.linalg.inv(V_full)
        assert np.abs(A_rec.imag).max() < 1e-6 * np.abs(A_rec).max()
        A_h, _ = hippo_loop(M)
        assert np.linalg.norm(A_rec.real - A_h, 2) < 1e-2 * 1.01
        A = A_rec.real
    np.testing.assert_allclose(got, dense_transfer(A, b, c, s), rtol=1e-6)


def _unfold(lam, V):
    """Full eigen-system from slots: complex slots contribute (λ, v) and (λ̄, v̄); real slots once."""
    real = np.abs(lam.imag) < 1e-12
    lam_full = np.concatenate([lam, lam[~real].conj()])
    V_full = np.concatenate([V, V[:, ~real].conj()], axis=1)
    return lam_full, V_full


def test_ptd_converges_strongly_and_legs_does_not():
    """REFERENCE.md §2: sup over the imaginary axis of |G_ptd − G_hippo| → 0 as ε → 0 (strong
    convergence); for S4D-LegS the sup stays large as N grows (only weak convergence), because the
    error sits at frequencies that grow with N — so its grid spans the whole spectrum of each N."""
    M = 16
    A, B = hippo_loop(M)
    c = np.random.default_rng(0).standard_normal(M)
    s = 1j * np.concatenate([np.linspace(-200, 200, 801), np.geomspace(200, 1e5, 200)])
    G = dense_transfer(A, B, c, s)
    errors = []
    for eps in [1e-1, 1e-2, 1e-3, 1e-4]:
        lam, V, Vinv = ptd_decomposition(M, eps=eps, seed=0)
        G_ptd = ((c @ V) * (Vinv @ B) / (s[:, None] - lam)).sum(-1)
        errors.append(np.abs(G_ptd - G).max() / np.abs(G).max())
    assert all(e2 < e1 for e1, e2 in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-3
    # S4D-LegS: the normal part with B/2, N/2 slots; its transfer-function error does not shrink with N
    legs_errors = []
    for N in [16, 64, 256]:
        A_n, B_n = hippo_loop(N)
        c_n = np.zeros(N)
        c_n[:4] = [1.0, -0.5, 0.3, 0.2]
        init = diag_init("legs", N)
        top = float(init.lam.imag.abs().max())
        s = 1j * np.linspace(-top, top, 801)
        G_n = dense_transfer(A_n, B_n, c_n, s)
        G_legs = transfer(init.lam.numpy(), init.B.numpy(), c_n @ init.from_slots.numpy(), s)
        legs_errors.append(np.abs(G_legs - G_n).max() / np.abs(G_n).max())
    assert min(legs_errors) > 0.5, legs_errors


def test_legs_kernel_converges_weakly_to_hippo():
    """S4D paper: the S4D-LegS kernel approaches the HiPPO-LegS kernel as N grows, in the weak sense
    (tested against smooth inputs; pointwise the kernels stay apart, see the PTD test).

    For test functions e^{μt} on [0, T] both inner products have closed forms:
    ∫ e^{μt} c e^{At} B dt = c (A + μI)⁻¹ (e^{(A+μI)T} − I) B, and per slot (e^{(λ+μ)T} − 1)/(λ + μ).
    """
    T = 4.0
    mus = [0.0, -1.0, 1j, -1j, 2j, -2j, -0.5 + 3j]
    errors = []
    for N in [16, 64, 256]:
        A, B = hippo_loop(N)
        c = np.zeros(N)
        c[:4] = [1.0, -0.5, 0.3, 0.2]
        init = diag_init("legs", N)
        lam, r = init.lam.numpy(), (c @ init.from_slots.numpy()) * init.B.numpy()
        worst = 0.0
        for mu in mus:
            M = A + mu * np.eye(N)
            hippo = c @ np.linalg.solve(M, (sla.expm(M * T) - np.eye(N)) @ B)
            z, zc = lam + mu, lam.conj() + mu
            legs = (r * np.expm1(z * T) / z).sum() + (r.conj() * np.expm1(zc * T) / zc).sum()
            worst = max(worst, abs(hippo - legs) / abs(hippo))
        errors.append(worst)
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 5e-3, errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: diag_eigenvalues("nope", 8), "valid: legs, inv, lin, real, rand, ptd"),
        (lambda: diag_eigenvalues("lin", 7), "must be even"),
        (lambda: diag_eigenvalues("lin", 0), "positive integer"),
        (lambda: hippo_legs(-1), "positive integer"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
