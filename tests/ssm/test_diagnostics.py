"""ssm.diagnostics against independent float64 computations (REFERENCE.md §3, §4).

The memory function is checked against an explicit construction: the real impulse responses
b_τ = [Re(Ab^τ Bb), Im(Ab^τ Bb)] summed into Σ = Σ_τ b_τ b_τᵀ over enough lags that the rest is below
1e-18 of the first term, and MF(τ) = b_τᵀ Σ⁻¹ b_τ by a plain linear solve (numpy, no cutoff).
"""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch

from ssm import diagnostics
from ssm.config import ModelConfig
from ssm.init import diag_init
from ssm.kernels.reference import discretize
from ssm.layers import S4, S4D, S5
from ssm.model import SequenceModel

# --- helpers: systems and the explicit float64 construction ---------------------------------------


def system(init: str, N: int, dt: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(Ab, Bb) of a named init, ZOH at step dt (float64), with a random complex B."""
    rng = np.random.default_rng(seed)
    B = torch.from_numpy(rng.standard_normal(N // 2) + 1j * rng.standard_normal(N // 2))
    Ab, Bb = discretize(diag_init(init, N).lam, B, torch.tensor(dt, dtype=torch.float64), "zoh")
    return Ab.numpy(), Bb.numpy()


def real_responses(Ab: np.ndarray, Bb: np.ndarray, n_lags: int) -> np.ndarray:
    """b_τ for τ < n_lags as columns, (N, n_lags)."""
    c = Bb[:, None] * np.power(Ab[:, None], np.arange(n_lags))
    return np.concatenate([c.real, c.imag])


def lags_to_converge(Ab: np.ndarray) -> int:
    return math.ceil(math.log(1e-18) / (2 * math.log(np.abs(Ab).max())))


def explicit_memory_function(Ab: np.ndarray, Bb: np.ndarray, max_lag: int) -> np.ndarray:
    b = real_responses(Ab, Bb, max(max_lag, lags_to_converge(Ab)))
    sigma = b @ b.T  # Σ_τ b_τ b_τᵀ
    head = b[:, :max_lag]
    return np.einsum("it,it->t", head, np.linalg.solve(sigma, head))


def real_dynamics(Ab: np.ndarray) -> np.ndarray:
    """The real N×N matrix acting on [Re x, Im x]."""
    return np.block([[np.diag(Ab.real), -np.diag(Ab.imag)], [np.diag(Ab.imag), np.diag(Ab.real)]])


# Controllable states: all eigenvalues {Ab} ∪ {conj Ab} distinct. At dt = 0.5 and N = 64, `legs` and
# `inv` are controllable in exact arithmetic but not resolvable in float64 (see the rank test).
CONTROLLABLE = [
    (init, N, dt)
    for init in ("legs", "inv")
    for N in (8, 16, 64)
    for dt in (0.05, 0.5)
    if (N, dt) != (64, 0.5)
]


# --- the analytic memory function -----------------------------------------------------------------


@pytest.mark.parametrize(("init", "N", "dt"), [("legs", 16, 0.05), ("inv", 8, 0.5), ("lin", 16, 0.05)])
def test_state_covariance_solves_the_lyapunov_equation(init, N, dt):
    Ab, Bb = system(init, N, dt)
    b0 = np.concatenate([Bb.real, Bb.imag])
    reference = scipy.linalg.solve_discrete_lyapunov(real_dynamics(Ab), np.outer(b0, b0))
    sigma = diagnostics.state_covariance(Ab, Bb)
    np.testing.assert_allclose(sigma, reference, rtol=0, atol=1e-12 * np.abs(reference).max())
    b = real_responses(Ab, Bb, lags_to_converge(Ab))
    np.testing.assert_allclose(sigma, b @ b.T, rtol=0, atol=1e-12 * np.abs(reference).max())


@pytest.mark.parametrize(("init", "N", "dt"), CONTROLLABLE)
def test_memory_function_matches_the_explicit_construction(init, N, dt):
    Ab, Bb = system(init, N, dt)
    mf = diagnostics.memory_function(Ab, Bb, 200)
    assert mf.shape == (200,) and mf.dtype == np.float64
    np.testing.assert_allclose(mf, explicit_memory_function(Ab, Bb, 200), rtol=0, atol=1e-8)
    assert mf.min() >= 0 and mf.max() <= 1 + 1e-9


@pytest.mark.parametrize(("init", "N", "dt"), CONTROLLABLE)
def test_memory_capacity_of_a_controllable_state_is_its_dimension(init, N, dt):
    Ab, Bb = system(init, N, dt)
    assert diagnostics.memory_capacity(Ab, Bb) == pytest.approx(N, abs=1e-6)
    # The plain sum over enough lags agrees (no closed-form tail involved).
    n_lags = lags_to_converge(Ab)
    assert diagnostics.memory_capacity(Ab, Bb, max_lag=n_lags) == pytest.approx(N, abs=1e-6)
    assert explicit_memory_function(Ab, Bb, n_lags).sum() == pytest.approx(N, abs=1e-6)


def distinct_eigenvalues(Ab: np.ndarray) -> int:
    """The number of distinct eigenvalues of the real dynamics, {Ab} ∪ {conj Ab}, to 1e-9."""
    values = np.concatenate([Ab, Ab.conj()])
    representatives: list[complex] = []
    for v in values:
        if all(abs(v - r) > 1e-9 for r in representatives):
            representatives.append(v)
    return len(representatives)


@pytest.mark.parametrize(
    ("N", "dt", "expected"),
    [
        (8, 0.05, 7),  # λ_0 = −½ is real: its slot's two coordinates share one dynamics
        (16, 0.05, 15),
        (8, 0.5, 4),  # dt·π·n aliases onto the angles 0, ±π/2, π: four distinct eigenvalues
        (64, 0.05, 40),  # slots n and 40 − n have conjugate Ab (angles 0.05πn ≡ −0.05π(40 − n))
    ],
)
def test_memory_capacity_counts_coinciding_eigenvalues_once(N, dt, expected):
    Ab, Bb = system("lin", N, dt)
    assert distinct_eigenvalues(Ab) == expected  # the rank of a diagonalizable single-input system
    assert diagnostics.memory_capacity(Ab, Bb) == pytest.approx(expected, abs=1e-6)
    mf = diagnostics.memory_function(Ab, Bb, 100)
    assert mf.min() >= 0 and mf.max() <= 1 + 1e-9


@pytest.mark.parametrize("init", ["legs", "inv"])
def test_memory_capacity_is_the_numerical_rank_when_float64_cannot_resolve_the_state(init):
    # |Ab| = e^{−1/4}: lag 64 is read out with R² ~ 1e-15, so 64 directions cannot all be resolved.
    Ab, Bb = system(init, 64, 0.5)
    b = real_responses(Ab, Bb, lags_to_converge(Ab))
    sigma = b @ b.T
    scale = 1 / np.sqrt(np.diag(sigma))
    values = np.linalg.eigvalsh(scale[:, None] * sigma * scale[None, :])

    def rank(rcond):
        return int((values > rcond * values.max()).sum())

    mc = diagnostics.memory_capacity(Ab, Bb)
    assert mc == pytest.approx(round(mc), abs=1e-6)
    assert rank(1e-9) <= round(mc) <= rank(1e-11) < 64
    assert diagnostics.memory_capacity(Ab, Bb, rcond=1e-13) > mc  # a lower cutoff keeps more


def test_cutoff_drops_directions_that_float64_cannot_separate():
    def pair(delta):  # two slots whose eigenvalues differ by ~delta
        return 0.9 * np.exp(1j * np.array([0.3, 0.3 + delta])), np.array([1 + 0.5j, -0.7 + 1j])

    assert diagnostics.memory_capacity(*pair(1e-2)) == pytest.approx(4, abs=1e-6)
    # δ = 1e-4: the weakest correlation eigenvalues are ~2.5e-8 — kept at 1e-10, dropped at 1e-6.
    assert diagnostics.memory_capacity(*pair(1e-4)) == pytest.approx(4, abs=1e-6)
    assert diagnostics.memory_capacity(*pair(1e-4), rcond=1e-6) == pytest.approx(2, abs=1e-6)
    # δ = 1e-9: indistinguishable from one slot (MF does not depend on Bb: the merged slot's MF).
    Ab, Bb = pair(1e-9)
    assert diagnostics.memory_capacity(Ab, Bb) == pytest.approx(2, abs=1e-6)
    single = explicit_memory_function(Ab[:1], Bb[:1], 50)
    np.testing.assert_allclose(diagnostics.memory_function(Ab, Bb, 50), single, rtol=0, atol=1e-6)


def test_eigenvalues_close_to_one_and_to_zero_at_once():
    Ab = np.array([0.9999 * np.exp(0.2j), 0.5 * np.exp(1j), 1e-3 * np.exp(2.5j)])
    Bb = np.array([0.3 - 1.2j, 1.1 + 0.4j, -0.8 + 0.9j])
    sigma = diagnostics.state_covariance(Ab, Bb)
    assert np.linalg.cond(sigma) > 1e11  # a relative cutoff of 1e-10 on Σ itself would drop a mode
    assert diagnostics.memory_capacity(Ab, Bb) == pytest.approx(6, abs=1e-6)
    np.testing.assert_allclose(
        diagnostics.memory_function(Ab, Bb, 30), explicit_memory_function(Ab, Bb, 30), rtol=0, atol=1e-6
    )


def test_memory_function_does_not_depend_on_the_input_vector():
    # b_τ = diag(Bb)·Ab^τ: a nonzero Bb is an invertible change of basis of the state.
    Ab, Bb = system("inv", 16, 0.1)
    rng = np.random.default_rng(1)
    other = Bb * (rng.uniform(0.1, 10, 8) * np.exp(2j * np.pi * rng.uniform(size=8)))
    np.testing.assert_allclose(
        diagnostics.memory_function(Ab, other, 100), diagnostics.memory_function(Ab, Bb, 100), atol=1e-8
    )


def test_batched_and_tensor_inputs():
    systems = [system("legs", 8, dt) for dt in (0.05, 0.2, 0.5)]
    Ab, Bb = (np.stack(x) for x in zip(*systems, strict=True))
    batched = diagnostics.memory_function(torch.from_numpy(Ab), torch.from_numpy(Bb), 40)
    assert batched.shape == (3, 40)
    for row, (a, b) in zip(batched, systems, strict=True):
        np.testing.assert_allclose(row, diagnostics.memory_function(a, b, 40), atol=1e-12)
    np.testing.assert_allclose(diagnostics.memory_capacity(Ab, Bb), [8, 8, 8], atol=1e-6)


def test_unstable_systems_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="stable"):
        diagnostics.memory_function(np.array([0.5, 1.0 + 0j]), np.ones(2), 10)
    with pytest.raises(ValueError, match="max_lag"):
        diagnostics.memory_function(np.array([0.5 + 0j]), np.ones(1), 0)


def test_empirical_memory_function_agrees_with_the_analytic_one():
    # Held-out R² from 10 000 training and ~10 000 test steps: estimation error ~0.01 per lag.
    for init, N, dt in [("inv", 8, 0.05), ("legs", 16, 0.2)]:
        Ab, Bb = system(init, N, dt)
        empirical = diagnostics.empirical_memory_function(Ab, Bb, 40, n_steps=20_000, seed=0)
        analytic = diagnostics.memory_function(Ab, Bb, 40)
        np.testing.assert_allclose(empirical, analytic, rtol=0, atol=0.03)


# --- model_memory_functions -----------------------------------------------------------------------


def numpy_zoh(lam: np.ndarray, B: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Ab = np.exp(dt * lam)
    return Ab, (Ab - 1) / lam * B


def parameters(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """λ, B and dt as the layer uses them (its fp32 values), as float64 / complex128 numpy arrays."""
    with torch.no_grad():
        lam, B, dt = (
            x.detach() for x in (layer.eig(), torch.view_as_complex(layer.B), torch.exp(layer.log_dt))
        )
    return lam.numpy().astype(np.complex128), B.numpy().astype(np.complex128), dt.numpy().astype(np.float64)


def test_model_memory_functions_of_s4d_and_s5_channels():
    model = SequenceModel(ModelConfig(layer="s4d", init="inv", d_model=3, d_state=8, n_layers=2), 2, 2)
    for layer in model.ssm_layers():
        layer.log_dt.data = torch.log(torch.tensor([0.05, 0.2, 0.5]))
    results = diagnostics.model_memory_functions(model, 60)
    assert len(results) == 2
    for layer, mf in zip(model.ssm_layers(), results, strict=True):
        assert mf.shape == (3, 60)
        lam, B, dt = parameters(layer)
        Ab, Bb = numpy_zoh(lam, B, dt[:, None])
        for h in range(3):
            np.testing.assert_allclose(mf[h], explicit_memory_function(Ab[h], Bb[h], 60), atol=1e-8)

    s5 = S5(3, d_state=8, init="inv", dt_min=0.05, dt_max=0.5)
    (mf,) = diagnostics.model_memory_functions(s5, 60)
    lam, B, dt = parameters(s5)
    Ab, Bb = numpy_zoh(lam[:, None], B, dt[:, None])  # (N/2, 1), (N/2, H)
    assert mf.shape == (3, 60)
    for h in range(3):
        np.testing.assert_allclose(mf[h], explicit_memory_function(Ab[:, 0], Bb[:, h], 60), atol=1e-8)


def test_model_memory_functions_of_s4_use_the_dense_system():
    layer = S4(2, d_state=8, l_max=64)
    layer.log_dt.data = torch.log(torch.tensor([0.05, 0.3]))
    (mf,) = diagnostics.model_memory_functions(layer, 50)
    with torch.no_grad():
        system = layer.discrete_system()
        A, b = system.Ab, system.Bb
    for h in range(2):
        Ah, bh = A[h].numpy(), b[h].numpy()
        responses = [bh]
        for _ in range(1, 4000):  # spectral radius ≤ 0.96: 4000 lags leave < 1e-70
            responses.append(Ah @ responses[-1])
        R = np.stack(responses, 1)
        sigma = R @ R.conj().T
        expected = np.einsum("it,it->t", R[:, :50].conj(), np.linalg.solve(sigma, R[:, :50])).real
        np.testing.assert_allclose(mf[h], expected, atol=1e-8)
    # Bilinear discretization: Σ = dt·(continuous Gramian) and HiPPO-LegS is controllable: MC = N.
    np.testing.assert_allclose(diagnostics.model_memory_functions(layer, 3000)[0].sum(1), [8, 8], atol=1e-6)


def test_unstable_channels_get_nan_rows():
    layer = S4D(2, d_state=4, reparam="none")
    with torch.no_grad():
        layer.eig.w[0] = 0.1  # Re λ > 0: channel 0 grows
    (mf,) = diagnostics.model_memory_functions(layer, 10)
    assert np.isnan(mf[0]).all() and np.isfinite(mf[1]).all()


# --- gradient-over-weight ratio -------------------------------------------------------------------


def tiny_model(**config) -> SequenceModel:
    config = {"d_model": 3, "d_state": 4, "n_layers": 2, "norm": "none", **config}
    return SequenceModel(ModelConfig(**config), 2, 2, output="sequence").double()


def test_grad_over_weight_matches_finite_differences():
    model = tiny_model(reparam="softplus")
    x, target = torch.randn(2, 12, 2, dtype=torch.float64), torch.randn(2, 12, 2, dtype=torch.float64)

    def loss() -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(x), target)

    loss().backward()
    summary = diagnostics.grad_over_weight(model)
    h = 1e-5  # rounding error ~1e-16/h, truncation ~h²: both far below the tolerance
    all_ratios = []
    for layer, reported in zip(model.ssm_layers(), summary["layers"], strict=True):
        w = layer.eig.w
        ratios = []
        with torch.no_grad():
            for i in range(w.numel()):
                original = w.view(-1)[i].item()
                w.view(-1)[i] = original + h
                up = loss().item()
                w.view(-1)[i] = original - h
                down = loss().item()
                w.view(-1)[i] = original
                ratios.append(abs((up - down) / (2 * h)) / abs(original))
        assert reported["mean"] == pytest.approx(np.mean(ratios), rel=1e-5)
        assert reported["max"] == pytest.approx(np.max(ratios), rel=1e-5)
        assert reported["n"] == w.numel() and reported["n_excluded"] == 0
        all_ratios += ratios
    assert summary["mean"] == pytest.approx(np.mean(all_ratios), rel=1e-5)
    assert summary["max"] == pytest.approx(np.max(all_ratios), rel=1e-5)


def test_grad_over_weight_frozen_layers_and_zero_weights():
    frozen = tiny_model(train_eigenvalues=False)
    frozen(torch.randn(1, 5, 2, dtype=torch.float64)).sum().backward()
    assert diagnostics.grad_over_weight(frozen) == {"layers": [None, None], "mean": None, "max": None}

    model = tiny_model(reparam="none")
    with torch.no_grad():
        model.ssm_layers()[0].eig.w[0, 0] = 0.0
    model(torch.randn(1, 5, 2, dtype=torch.float64)).sum().backward()
    summary = diagnostics.grad_over_weight(model)
    first = summary["layers"][0]
    assert first["n_excluded"] == 1 and first["n"] == 5
    assert math.isfinite(first["max"]) and math.isfinite(summary["max"])


# --- eigenvalues and their drift ------------------------------------------------------------------


def test_eigenvalue_drift_reports_re_im_dt_and_abs_ab_separately():
    model = tiny_model(reparam="exp", init="lin")
    initial = diagnostics.spectra(model)
    assert [x["lam"].dtype for x in initial] == [torch.complex128] * 2 and initial[0]["lam"].shape == (3, 2)
    unchanged = diagnostics.eigenvalue_drift(initial, diagnostics.spectra(model))
    assert all(unchanged[k] == 0.0 for k in ("re_lambda", "im_lambda", "dt", "abs_Ab", "mean", "max"))

    first, second = model.ssm_layers()
    dt0 = [torch.exp(layer.log_dt).detach().numpy().copy() for layer in (first, second)]
    with torch.no_grad():
        first.eig.w += math.log(2)  # Re λ: −½ → −1 everywhere
        second.log_dt += math.log(3)  # dt ×3, λ unchanged
    drift = diagnostics.eigenvalue_drift(initial, diagnostics.spectra(model))

    # independent: S4D-Lin λ_n = −½ + iπn per channel (N = 4), ZOH |Ab| = exp(dt Re λ)
    lam0 = np.broadcast_to(-0.5 + 1j * np.pi * np.arange(2), (3, 2))
    re1 = np.full((3, 2), -1.0)
    abs_ab0 = [np.exp(dt[:, None] * lam0.real) for dt in dt0]
    abs_ab1 = [np.exp(dt0[0][:, None] * re1), np.exp(3 * dt0[1][:, None] * lam0.real)]
    relative = lambda new, old: np.abs(new - old).mean() / np.abs(old).mean()  # noqa: E731
    layer0, layer1 = drift["layers"]
    assert layer0["re_lambda"] == pytest.approx(1.0) and layer0["im_lambda"] == 0.0 and layer0["dt"] == 0.0
    assert layer0["abs_Ab"] == pytest.approx(relative(abs_ab1[0], abs_ab0[0]), rel=1e-6)
    assert layer0["mean"] == pytest.approx(0.5) and layer0["max"] == pytest.approx(0.5)
    assert layer1["re_lambda"] == 0.0 and layer1["im_lambda"] == 0.0 and layer1["mean"] == 0.0
    assert layer1["dt"] == pytest.approx(2.0, rel=1e-6)
    assert layer1["abs_Ab"] == pytest.approx(relative(abs_ab1[1], abs_ab0[1]), rel=1e-6)
    # over both layers together
    assert drift["re_lambda"] == pytest.approx(0.5)
    assert drift["dt"] == pytest.approx(
        relative(np.concatenate([dt0[0], 3 * dt0[1]]), np.concatenate(dt0)), rel=1e-6
    )
    assert drift["abs_Ab"] == pytest.approx(
        relative(np.concatenate([a.ravel() for a in abs_ab1]), np.concatenate([a.ravel() for a in abs_ab0])),
        rel=1e-6,
    )
    # λ-only lists (from `eigenvalues`) still work: dt and |Ab| are unknown there
    only_lambda = diagnostics.eigenvalue_drift([x["lam"] for x in initial], diagnostics.eigenvalues(model))
    assert only_lambda["re_lambda"] == pytest.approx(0.5) and only_lambda["dt"] is None


# --- memory capacity of layers and the arrays -----------------------------------------------------


def test_memory_capacity_of_an_s4d_inv_layer_at_init_has_its_tail():
    """At init (dt in [1e-3, 1e-1]) the slow modes remember for thousands of steps: a sum over the
    first lags misses part of MC; the capacity with its closed-form tail reads N = 64."""
    torch.manual_seed(0)
    layer = S4D(4, d_state=64, init="inv")
    (memory,) = diagnostics.model_memory(layer, 256)
    print(f"\nS4D-Inv N=64 at init: MC {memory.capacity}, truncated at 256 lags {memory.truncated_capacity}")
    np.testing.assert_allclose(memory.capacity, 64, atol=0.5)
    (short,) = diagnostics.model_memory(layer, 32)  # MF ≤ 1: 32 lags hold at most 32
    assert (short.truncated_capacity <= 32).all()
    np.testing.assert_allclose(short.capacity, memory.capacity, atol=1e-6)
    # the same as the infinite sum of the standalone function, channel by channel
    system = layer.discrete_system()
    for h in range(4):
        expected = diagnostics.memory_capacity(system.Ab[h].detach(), system.Bb[h].detach())
        assert memory.capacity[h] == pytest.approx(expected, abs=1e-3)


def test_memory_capacity_of_s4_and_s5_layers_includes_the_tail():
    s4 = S4(2, d_state=8, l_max=64)
    s4.log_dt.data = torch.log(torch.tensor([0.05, 0.3]))
    (memory,) = diagnostics.model_memory(s4, 5)  # 5 lags hold at most 5
    assert (memory.truncated_capacity <= 5).all()
    np.testing.assert_allclose(memory.capacity, [8, 8], atol=1e-6)  # controllable: MC = N
    s5 = S5(3, d_state=8, init="inv", dt_min=0.01, dt_max=0.02)
    (memory,) = diagnostics.model_memory(s5, 10)
    np.testing.assert_allclose(memory.capacity, [8, 8, 8], atol=1e-6)


def test_layer_arrays_are_plain_json_of_the_diagnostics():
    model = SequenceModel(ModelConfig(layer="s4d", init="inv", d_model=3, d_state=8, n_layers=2), 2, 2)
    arrays = diagnostics.layer_arrays(model, 16)
    assert json.loads(json.dumps(arrays, allow_nan=False)) == arrays
    assert len(arrays) == 2
    spectrum = diagnostics.spectra(model)[0]
    first = arrays[0]
    assert np.array(first["eigenvalues"]).shape == (3, 4, 2)
    seven_digits = {"rtol": 5e-7, "atol": 0}  # rounded to float32's precision
    np.testing.assert_allclose(
        np.array(first["eigenvalues"])[..., 1], spectrum["lam"].imag.numpy(), **seven_digits
    )
    np.testing.assert_allclose(np.array(first["Ab"])[..., 0], spectrum["Ab"].real.numpy(), **seven_digits)
    np.testing.assert_allclose(first["dt"], spectrum["dt"].numpy(), **seven_digits)
    memory = diagnostics.model_memory(model, 16)[0]
    np.testing.assert_allclose(np.array(first["memory_function"]), memory.function, rtol=5e-7, atol=1e-12)
    np.testing.assert_allclose(first["memory_capacity"], memory.capacity, **seven_digits)

    s4 = S4(2, d_state=4, l_max=8, reparam="none")
    with torch.no_grad():
        s4.eig.w[0] = 5.0  # channel 0 unstable: its MF row has no value
    (row,) = diagnostics.layer_arrays(s4, 5)
    assert np.array(row["eigenvalues"]).shape == (2, 4, 2)  # eig(A): all N
    assert row["memory_function"][0] == [None] * 5 and None not in row["memory_function"][1]
    json.dumps(row, allow_nan=False)


# --- Fourier-noise robustness ---------------------------------------------------------------------


def stand_in_task(variant: str, n: int = 24, L: int = 16, kind: str = "classification"):
    """An object with the attributes of `ssm.data.Task` (only the test split is used). Variants:
    "continuous", "tokens", "paired" (two token documents per example), "sequence" (continuous,
    one label per step)."""
    tokens = variant in ("tokens", "paired")
    if variant == "paired":
        x, lengths = torch.randint(1, 9, (n, 2, L)), torch.randint(L // 2, L + 1, (n, 2))
    else:
        x = torch.randint(1, 9, (n, L)) if tokens else torch.randn(n, L, 2)
        lengths = torch.randint(L // 2, L + 1, (n,))
    y = torch.randint(0, 3, (n, L) if variant == "sequence" else (n,))
    split = SimpleNamespace(x=x, y=y, lengths=lengths)
    return SimpleNamespace(
        train=split, val=split, test=split, kind=kind, n_classes=3, d_input=9 if tokens else 2, seq_len=L,
        input_type="tokens" if tokens else "continuous", output="sequence" if variant == "sequence" else "pooled",
        pooling="mean", paired=variant == "paired",
    )  # fmt: skip


def model_for(task) -> SequenceModel:
    return SequenceModel(
        ModelConfig(d_model=8, d_state=4, n_layers=1), task.d_input, 3,
        input_type=task.input_type, output=task.output, paired=task.paired,
    )  # fmt: skip


def plain_accuracy(model, split) -> float:
    """Accuracy of argmax predictions; per-step labels count on steps t < length only."""
    with torch.no_grad():
        correct = model(split.x, split.lengths).argmax(-1) == split.y
    if correct.dim() == 2:
        valid = torch.arange(correct.shape[1])[None, :] < split.lengths[:, None]
        return (correct & valid).sum().item() / valid.sum().item()
    return correct.double().mean().item()


@pytest.mark.parametrize("variant", ["continuous", "tokens", "paired", "sequence"])
def test_fourier_robustness_clean_row_and_zero_amplitude(variant):
    task = stand_in_task(variant)
    model = model_for(task)
    clean = plain_accuracy(model.eval(), task.test)
    model.train()
    rows = diagnostics.fourier_noise_robustness(model, task, [0.05, 0.5], amplitude=0.0, batch_size=16)
    assert [r["frequency"] for r in rows] == [None, 0.05, 0.5]
    assert all(r["accuracy"] == pytest.approx(clean, abs=1e-12) for r in rows)
    assert model.training  # the training flag comes back
    assert not model.encoder._forward_hooks

    first_two_batches = SimpleNamespace(**{k: v[:16] for k, v in vars(task.test).items()})
    rows = diagnostics.fourier_noise_robustness(
        model, task, [0.1], amplitude=3.0, batch_size=8, max_batches=2
    )
    assert rows[0]["accuracy"] == pytest.approx(plain_accuracy(model.eval(), first_two_batches), abs=1e-12)
    assert 0 <= rows[1]["accuracy"] <= 1


@pytest.mark.parametrize("input_type", ["continuous", "tokens"])
def test_fourier_perturbation_is_a_sinusoid_on_the_valid_steps(input_type):
    task = stand_in_task(input_type, n=6)
    model = SequenceModel(
        ModelConfig(d_model=8, d_state=4, n_layers=1), task.d_input, 3, input_type=input_type
    )
    # What is perturbed: the input of the encoder (continuous) or of the first block (tokens).
    probed = model.encoder if input_type == "continuous" else model.blocks[0]
    seen = []
    probe = probed.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0].detach().clone()))
    frequency, amplitude = 0.1, 0.7
    diagnostics.fourier_noise_robustness(model, task, [frequency], amplitude)
    probe.remove()
    clean, noisy = seen  # the clean pass, then the pass at `frequency`
    with torch.no_grad():
        expected_clean = task.test.x if input_type == "continuous" else model.encoder(task.test.x)
    assert torch.equal(clean, expected_clean)
    difference = (noisy - clean).double()  # (n, L, channels): one sinusoid on every channel
    torch.testing.assert_close(difference, difference[..., :1].expand_as(difference), rtol=0, atol=1e-6)
    d = difference[..., 0]
    valid = torch.arange(d.shape[1])[None, :] < task.test.lengths[:, None]
    assert (d[~valid] == 0).all()
    omega = 2 * math.pi * frequency
    for row, n_valid in zip(d, task.test.lengths, strict=True):
        row = row[:n_valid]
        # d[t] = A sin(ωt + φ)  ⇔  d[t+1] + d[t−1] = 2 cos ω · d[t]  and  A² = d[0]² + ((d[1] − d[0] cos ω)/sin ω)²
        torch.testing.assert_close(row[2:] + row[:-2], 2 * math.cos(omega) * row[1:-1], rtol=0, atol=1e-5)
        size = row[0] ** 2 + ((row[1] - row[0] * math.cos(omega)) / math.sin(omega)) ** 2
        assert size.item() == pytest.approx(amplitude**2, rel=1e-4)


def test_fourier_robustness_removes_its_hook_on_error_and_rejects_regression():
    task = stand_in_task("tokens")
    model = model_for(task)
    wrong_shape = SimpleNamespace(x=task.test.x[:, None], y=task.test.y, lengths=task.test.lengths)
    broken = SimpleNamespace(**{**vars(task), "test": wrong_shape})
    with pytest.raises(ValueError, match="tokens input"):
        diagnostics.fourier_noise_robustness(model, broken, [0.1], amplitude=1.0)
    assert not model.encoder._forward_hooks and model.training
    with pytest.raises(ValueError, match="classification"):
        diagnostics.fourier_noise_robustness(
            model, stand_in_task("continuous", kind="regression"), [0.1], 1.0
        )
