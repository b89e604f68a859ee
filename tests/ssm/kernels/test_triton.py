"""The Triton kernels equal their PyTorch references (ssm.kernels.reference), values and gradients.

Tolerance (fp32): max |triton − reference| ≤ 1e-5 · max |reference| for every output and gradient;
the long-L phase test compares with a float64 evaluation at 2e-6. Without a CUDA device the kernels
run under Triton's interpreter, which this module selects (TRITON_INTERPRET=1) before Triton is
imported. The interpreter is slow, so the shapes are tiny, and the kernels' tile caps are lowered
(`small_tiles`) so that tiny shapes still cross every tile, split and chunk boundary.
"""

import copy
import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="Triton is not installed")

from triton.runtime.interpreter import InterpretedFunction

import ssm.kernels
from ssm.kernels import dplr, reference
from ssm.kernels import triton as tk
from ssm.layers import S4, S4D, S5

# The modules, not the functions of the same name that the package exports.
vandermonde_module = importlib.import_module("ssm.kernels.triton.vandermonde")
cauchy_module = importlib.import_module("ssm.kernels.triton.cauchy")
scan_module = importlib.import_module("ssm.kernels.triton.scan")

INTERPRETED = isinstance(vandermonde_module._vandermonde_fwd_kernel, InterpretedFunction)
if not INTERPRETED and not torch.cuda.is_available():
    pytest.skip(
        "no CUDA device, and ssm.kernels.triton was imported before TRITON_INTERPRET=1 was set: "
        "run with TRITON_INTERPRET=1 (as `make test` does)",
        allow_module_level=True,
    )
DEVICE = "cpu" if INTERPRETED else "cuda"
RTOL = 1e-5


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    """max |actual − expected| ≤ rtol · max |expected| (a relative error on the tensor's scale)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    error = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= rtol * scale, f"max error {error:.3g} > {rtol:g} × max |expected| {scale:.3g}"


def grads(output: torch.Tensor, inputs: list[torch.Tensor], weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradients of the real loss Re Σ output · weight (a random cotangent) w.r.t. `inputs`."""
    return torch.autograd.grad((output * weight).real.sum(), inputs)


def assert_same_values_and_gradients(
    actual: torch.Tensor, expected: torch.Tensor, inputs: list[torch.Tensor]
) -> None:
    """`assert_close` on the outputs and on the gradients w.r.t. `inputs` under one random cotangent."""
    assert_close(actual, expected)
    weight = torch.randn_like(expected)
    for got, want in zip(grads(actual, inputs, weight), grads(expected, inputs, weight), strict=True):
        assert_close(got, want)


def leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().to(DEVICE).requires_grad_() for t in tensors]


@pytest.fixture
def small_tiles(monkeypatch):
    """Tile caps far below the GPU defaults: padded n and l tiles, several splits and chunks."""
    monkeypatch.setattr(vandermonde_module, "BLOCK_N_MAX", 2)
    monkeypatch.setattr(vandermonde_module, "BLOCK_L_MAX", 8)
    monkeypatch.setattr(vandermonde_module, "TILES_PER_SPLIT", 2)
    monkeypatch.setattr(cauchy_module, "BLOCK_N_MAX", 2)
    monkeypatch.setattr(cauchy_module, "BLOCK_L_MAX", 8)
    monkeypatch.setattr(scan_module, "BLOCK_L_MAX", 4)
    monkeypatch.setattr(scan_module, "BLOCK_P_MAX", 2)
    monkeypatch.setattr(scan_module, "BLOCK_C_MAX", 4)


def random_diagonal_ssm(H: int, N2: int):
    """λ with Re λ < 0 and large Im λ (phases wrap several times), B, C, dt in the init ranges."""
    lam = torch.complex(-torch.rand(H, N2) - 0.05, 40 * torch.rand(H, N2) - 20)
    B = torch.randn(H, N2, dtype=torch.complex64)
    C = torch.randn(H, N2, dtype=torch.complex64)
    dt = torch.exp(torch.empty(H).uniform_(-6.9, -2.3))  # dt in [1e-3, 1e-1]
    return lam, B, C, dt


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
@pytest.mark.parametrize(("H", "N2", "L", "tiles"), [(3, 5, 37, "small"), (2, 3, 70, "default")])
def test_s4d_kernel_matches_reference(request, method, H, N2, L, tiles):
    if tiles == "small":
        request.getfixturevalue("small_tiles")
    inputs = leaves(*random_diagonal_ssm(H, N2))
    expected = reference.s4d_kernel(*inputs, L, method)
    actual = tk.s4d_kernel(*inputs, L, method)
    assert_same_values_and_gradients(actual, expected, inputs)


def zoh_kernel_float64(lam, B, C, dt, L) -> torch.Tensor:
    """K[h, l] = 2 Re Σ_n C Bb exp(dt λ l) in float64, straight from REFERENCE.md §1 (ZOH), one l at a time."""
    x = dt.double()[:, None] * lam.to(torch.complex128)
    CB = C.to(torch.complex128) * torch.expm1(x) / x * dt.double()[:, None] * B.to(torch.complex128)
    return torch.stack([2 * (CB * torch.exp(x * l)).sum(-1).real for l in range(L)], -1)


def test_s4d_kernel_phase_stays_accurate_at_long_L(monkeypatch):
    """L = 16384 with slowly decaying modes: a plain fp32 phase l·Im(dtλ) would be off by ~1e-3 rad."""
    monkeypatch.setattr(vandermonde_module, "BLOCK_L_MAX", 4096)  # few programs: the interpreter is slow
    L = 16384
    lam = torch.tensor([[-1e-3 + 17.3j, -2e-4 - 29.1j, -0.5 + 3.7j]], dtype=torch.complex64)
    B, C = torch.randn(1, 3, dtype=torch.complex64), torch.randn(1, 3, dtype=torch.complex64)
    dt = torch.tensor([0.1])
    actual = tk.s4d_kernel(*(x.to(DEVICE) for x in (lam, B, C, dt)), L)
    assert_close(actual.double().cpu(), zoh_kernel_float64(lam, B, C, dt, L), rtol=2e-6)


def test_s4d_kernel_does_not_overflow_at_long_L(monkeypatch):
    """Fast-decaying modes (S4D-Real, N = 64, dt = 0.1: l·dt·Re λ down to −5·10⁴) underflow to 0, not NaN."""
    monkeypatch.setattr(vandermonde_module, "BLOCK_L_MAX", 4096)
    lam = -torch.arange(1, 33, dtype=torch.float32).to(torch.complex64)[None]
    B, C = torch.ones(1, 32, dtype=torch.complex64), torch.ones(1, 32, dtype=torch.complex64)
    K = tk.s4d_kernel(*(x.to(DEVICE) for x in (lam, B, C, torch.tensor([0.1]))), 16384)
    assert torch.isfinite(K).all() and K[0, -1] == 0


def test_s4d_kernel_is_finite_where_exp_dt_lambda_underflows():
    """dt·Re λ = −1000: Ab = exp(dt λ) is 0 even in float64, so log(Ab) = −inf; ZOH uses dt·λ itself.
    (The reference, which takes log(Ab), returns NaN here.)"""
    lam = torch.tensor([[-1e4 + 3j, -0.5 + 1j]], dtype=torch.complex64)
    B, C, dt = (
        torch.randn(1, 2, dtype=torch.complex64),
        torch.randn(1, 2, dtype=torch.complex64),
        torch.tensor([0.1]),
    )
    inputs = leaves(lam, B, C, dt)
    K = tk.s4d_kernel(*inputs, 9)
    assert_close(K.double().cpu(), zoh_kernel_float64(lam, B, C, dt, 9))
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(K.sum(), inputs))


@pytest.mark.parametrize(("lead", "N", "L", "tiles"), [((2, 2), 5, 21, "small"), ((4,), 6, 19, "default")])
def test_cauchy_matches_reference(request, lead, N, L, tiles):
    if tiles == "small":
        request.getfixturevalue("small_tiles")
    v = torch.randn(*lead, N, dtype=torch.complex64)
    w = torch.complex(-torch.rand(*lead, N), torch.randn(*lead, N))  # poles off the unit circle
    z = torch.exp(-2j * torch.pi * torch.arange(L) / L).to(torch.complex64)
    inputs = leaves(v, z, w)
    expected = reference.cauchy(*inputs)
    actual = tk.cauchy(*inputs)
    assert_same_values_and_gradients(actual, expected, inputs)


def test_cauchy_sums_match_float64_near_the_poles(small_tiles):
    """S4's form: points i·y passing within 1e-3 of poles with |Im w| up to 6, given in float64. The fp32
    kernels take z − w on hi + lo parts; values and gradients within 1e-5 of float64 sums, and equal to
    the PyTorch fast path's."""
    M, J, N, Z = 2, 3, 5, 21
    w = torch.complex(
        -1e-3 * torch.rand(M, N, dtype=torch.float64) - 1e-4, 12 * torch.rand(M, N, dtype=torch.float64) - 6
    )
    y = torch.cat(
        [
            w.imag.flatten()[:10] + 1e-3 * torch.randn(10, dtype=torch.float64),
            6 * torch.randn(Z - 10, dtype=torch.float64),
        ]
    )
    v = torch.randn(M, J, N, dtype=torch.complex128)
    weight = torch.randn(M, J, Z, dtype=torch.complex128)
    results = []
    for sums, dtype in (
        (tk.cauchy_sums, torch.complex64),
        (dplr.cauchy_sums, torch.complex64),
        (dplr.cauchy_sums, torch.complex128),
    ):
        v_, w_ = leaves(v, w)
        out = sums(v_.to(dtype), y.to(DEVICE), w_)
        results.append(
            [out.to(torch.complex128), *grads(out.to(torch.complex128), [v_, w_], weight.to(DEVICE))]
        )
    triton_results, torch_results, float64_results = results
    for got, want in zip(triton_results, float64_results, strict=True):
        assert_close(got, want)
    for got, want in zip(triton_results, torch_results, strict=True):
        assert_close(got, want)


@pytest.mark.parametrize("a_shape", [(2, 23, 3), (3,), (2, 1, 3), (1, 23, 3)], ids=str)
def test_linear_scan_matches_reference(small_tiles, a_shape):
    """Time-varying and time-invariant a; 6 chunks of 4 steps, so phase 2 crosses two tiles of 4."""
    a = torch.polar(0.3 + 0.69 * torch.rand(a_shape), 6.3 * torch.rand(a_shape))
    b = torch.randn(2, 23, 3, dtype=torch.complex64)
    inputs = leaves(a, b)
    expected = reference.linear_scan(*inputs)
    actual = tk.linear_scan(*inputs)
    assert_same_values_and_gradients(actual, expected, inputs)


def test_linear_scan_real_inputs():
    inputs = leaves(torch.rand(2, 29, 3), torch.randn(2, 29, 3))
    expected = reference.linear_scan(*inputs)
    actual = tk.linear_scan(*inputs)
    assert_same_values_and_gradients(actual, expected, inputs)


def test_float64_inputs_use_the_reference():
    lam, B, C, dt = (
        x.to(torch.complex128 if x.is_complex() else torch.float64) for x in random_diagonal_ssm(2, 3)
    )
    torch.testing.assert_close(tk.s4d_kernel(lam, B, C, dt, 9), reference.s4d_kernel(lam, B, C, dt, 9))
    a, b = torch.rand(3, dtype=torch.float64), torch.randn(2, 9, 3, dtype=torch.float64)
    torch.testing.assert_close(tk.linear_scan(a, b), reference.linear_scan(a, b))


def test_shape_errors_match_the_reference():
    with pytest.raises(ValueError, match="does not broadcast"):
        tk.linear_scan(torch.rand(4), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="same shape"):
        tk.cauchy(
            torch.randn(3, dtype=torch.complex64), torch.randn(4, dtype=torch.complex64), torch.randn(2)
        )
    with pytest.raises(ValueError, match="L must be"):
        tk.s4d_kernel(*random_diagonal_ssm(2, 3), 0)


def run_layer(layer: torch.nn.Module, u: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    y = layer(u)
    y.pow(2).sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
    layer.zero_grad()
    return y.detach(), grads


@pytest.mark.parametrize(
    ("cls", "kwargs", "kernel"),
    [
        (S4D, {"init": "inv"}, "s4d_kernel"),
        (S4D, {"init": "lin", "bidirectional": True, "discretization": "bilinear"}, "s4d_kernel"),
        (S5, {"init": "legs", "bidirectional": True}, "linear_scan"),
        (S4, {"l_max": 23, "bidirectional": True}, "cauchy_sums"),
    ],
    ids=["s4d", "s4d-bidirectional-bilinear", "s5-bidirectional", "s4-bidirectional"],
)
def test_layer_forward_backward_through_triton(monkeypatch, cls, kwargs, kernel):
    layer = cls(3, d_state=6, **kwargs).to(DEVICE)
    u = torch.randn(2, 23, 3, device=DEVICE)
    monkeypatch.setenv("SSMBENCH_KERNELS", "torch")
    y_torch, grads_torch = run_layer(layer, u)

    calls = []
    triton_kernel = getattr(tk, kernel)
    monkeypatch.setattr(tk, kernel, lambda *args: calls.append(kernel) or triton_kernel(*args))
    monkeypatch.setenv("SSMBENCH_KERNELS", "triton")
    assert ssm.kernels.backend(u.device) == "triton"
    y_triton, grads_triton = run_layer(layer, u)

    assert calls, f"the layer did not call the Triton {kernel}"
    # Both fp32 paths against the float64 layer (PyTorch kernels): the Triton one must be within RTOL of
    # it, or at most twice as far as the PyTorch path where that one is not (S4's dt gradient sums
    # terms that cancel to ~2% of the other gradients, and there the PyTorch path's fp32 error alone
    # is ~1e-5 of its scale).
    monkeypatch.setenv("SSMBENCH_KERNELS", "torch")
    y_exact, grads_exact = run_layer(copy.deepcopy(layer).double(), u.double())
    assert grads_triton.keys() == grads_torch.keys() == grads_exact.keys()
    for name, ours, theirs, exact in [("y", y_triton, y_torch, y_exact)] + [
        (name, grads_triton[name], grads_torch[name], grads_exact[name]) for name in grads_exact
    ]:
        assert ours.dtype == theirs.dtype == torch.float32
        error, baseline = ((x.double() - exact).abs().max().item() for x in (ours, theirs))
        allowed = max(RTOL * exact.abs().max().item(), 2 * baseline)
        assert error <= allowed, (
            f"{name}: Triton error {error:.3g} > {allowed:.3g} (PyTorch path: {baseline:.3g})"
        )
