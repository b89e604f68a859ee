"""S4, S4D, S5 layers: convolution = recurrence, bidirectionality, gradients, the frozen mode."""

import numpy as np
import pytest
import torch

from ssm.config import ModelConfig
from ssm.init import DIAGONAL_INITS
from ssm.layers import S4, S4D, S5, make_layer
from ssm.model import SequenceModel
from ssm.optim import param_groups

CASES = (
    [(S4D, {"init": i}) for i in DIAGONAL_INITS]
    + [(S4D, {"init": "inv", "discretization": "bilinear"}), (S4D, {"reparam": "best", "init": "lin"})]
    + [(S4, {"l_max": 40}), (S4, {"l_max": 64, "reparam": "softplus"})]
    + [(S5, {"init": i}) for i in ("legs", "ptd", "inv")]
    + [(S5, {"blocks": 4, "discretization": "bilinear"})]
)


def step_through(layer, u):
    state, ys = layer.default_state(u.shape[0]), []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=lambda x: getattr(x, "__name__", str(x)))
def test_stepping_equals_forward(cls, kwargs):
    layer = cls(6, d_state=8, **kwargs).eval()
    u = torch.randn(2, 40, 6)
    y = layer(u)
    assert y.shape == u.shape
    torch.testing.assert_close(step_through(layer, u), y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [S4D, S4, S5])
def test_bidirectional_is_a_reversed_causal_pass(cls):
    kwargs = {"l_max": 30} if cls is S4 else {}
    layer = cls(4, d_state=8, bidirectional=True, **kwargs).eval()
    u = torch.randn(2, 30, 4)
    forward_only = cls(4, d_state=8, **kwargs).eval()
    forward_only.load_state_dict({k: (v[:1] if k == "C" else v) for k, v in layer.state_dict().items()})
    backward_only = cls(4, d_state=8, **kwargs).eval()
    backward_only.load_state_dict({k: (v[1:] if k == "C" else v) for k, v in layer.state_dict().items()})
    D = layer.D
    lin_fwd = forward_only.ssm(u) - u * D
    lin_bwd = backward_only.ssm(u.flip(1)).flip(1) - u * D
    torch.testing.assert_close(layer.ssm(u), lin_fwd + lin_bwd + u * D, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no recurrent"):
        layer.step(u[:, 0], None)


@pytest.mark.parametrize(
    ("cls", "kwargs"), [(S4D, {}), (S4D, {"reparam": "best"}), (S4, {"l_max": 12}), (S5, {})]
)
def test_gradcheck_float64(cls, kwargs):
    layer = cls(3, d_state=4, **kwargs).to(torch.float64)
    assert layer.C.dtype == torch.float64  # complex parameters are stored as real (re, im) pairs
    u = torch.randn(2, 12, 3, dtype=torch.float64, requires_grad=True)
    params = [p for p in layer.parameters()]
    assert torch.autograd.gradcheck(lambda x, *_: layer(x), (u, *params), eps=1e-6, atol=1e-5, nondet_tol=0)


@pytest.mark.parametrize("cls", [S4D, S4, S5])
def test_frozen_eigenvalues_are_buffers_and_do_not_move(cls):
    kwargs = {"l_max": 32} if cls is S4 else {}
    layer = cls(8, d_state=8, train_eigenvalues=False, **kwargs)
    names = {n for n, _ in layer.named_parameters()}
    assert not any(n.startswith("eig.") or n == "log_dt" for n in names), names
    before = {n: b.clone() for n, b in layer.named_buffers()}
    assert {"eig.w", "eig.imag", "log_dt"} <= set(before)
    opt = torch.optim.AdamW(param_groups(layer, 1e-2, 1e-2, 0.1))
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(2, 32, 8)).pow(2).mean().backward()
        opt.step()
    for n, b in layer.named_buffers():
        assert torch.equal(b, before[n]), n
    trained = cls(8, d_state=8, **kwargs)
    assert sum(p.numel() for p in layer.parameters()) < sum(p.numel() for p in trained.parameters())


def test_frozen_fraction_of_an_lra_sized_model(capsys):
    """The seed paper reports that freezing eigenvalues removes about 10% of the parameters."""
    for layer in ("s4d", "s5"):
        config = ModelConfig(layer=layer, d_model=128, d_state=64, n_layers=6)
        trained = SequenceModel(config, 256, 10, input_type="tokens")
        frozen = SequenceModel(
            config.model_copy(update={"train_eigenvalues": False}), 256, 10, input_type="tokens"
        )
        n_trained = sum(p.numel() for p in trained.parameters())
        n_frozen = sum(p.numel() for p in frozen.parameters())
        fraction = 1 - n_frozen / n_trained
        with capsys.disabled():
            print(f"\n{layer}: {n_trained} parameters, freezing eigenvalues and dt removes {fraction:.1%}")
        assert 0 < fraction < 0.5


def test_ssm_parameters_get_their_own_group():
    layer = S4D(4, d_state=4)
    groups = {g["name"]: g for g in param_groups(layer, lr=1e-2, ssm_lr=1e-3, weight_decay=0.1)}
    ssm_ids = {id(p) for p in groups["ssm"]["params"]}
    assert ssm_ids == {id(layer.eig.w), id(layer.eig.imag), id(layer.log_dt), id(layer.B)}
    assert groups["ssm"]["lr"] == 1e-3 and groups["ssm"]["weight_decay"] == 0.0
    assert id(layer.output_linear.weight) in {id(p) for p in groups["decay"]["params"]}
    assert groups["no_decay"]["weight_decay"] == 0.0


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="valid: s4, s4d, s5"):
        make_layer("lstm", 4)
    with pytest.raises(ValueError, match="unknown init 'hippo'"):
        S4D(4, init="hippo")
    with pytest.raises(ValueError, match="must be even"):
        S4D(4, d_state=7)
    with pytest.raises(ValueError, match=r"expected input of shape \(B, L, 4\), got \(2, 10, 5\)"):
        S4D(4)(torch.zeros(2, 10, 5))
    with pytest.raises(ValueError, match="l_max=16"):
        S4(4, d_state=4, l_max=16)(torch.zeros(1, 17, 4))
    with pytest.raises(ValueError, match="init must be 'legs'"):
        S4(4, init="lin")
    with pytest.raises(ValueError, match="blocks"):
        S5(4, d_state=8, blocks=3)
    with pytest.raises(ValueError, match="dt_min"):
        S4D(4, dt_min=0.5, dt_max=0.1)


def test_s4_steps_with_the_parameters_it_has_now():
    """default_state must not freeze the system: a parameter update after it still shows in step."""
    layer = S4(3, d_state=8, l_max=24).eval()
    u = torch.randn(2, 24, 3)
    state, ys = layer.default_state(2), []
    with torch.no_grad():
        layer.log_dt += 0.5
        layer.P.mul_(1.3)
        layer.eig.imag.add_(0.2)
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), layer(u), rtol=1e-4, atol=1e-5)


def numpy_dense_A(layer: S4) -> np.ndarray:
    """A = Λ − P P* on [slots, conjugates], built in numpy from the stored Re-parameter, Im λ and P."""
    w, imag = layer.eig.w.detach().numpy(), layer.eig.imag.detach().numpy()
    lam = layer.reparam(torch.from_numpy(w)).numpy() + 1j * imag
    P = layer.P.detach().numpy()
    P = P[..., 0] + 1j * P[..., 1]
    lam, P = np.concatenate([lam, lam.conj()], -1), np.concatenate([P, P.conj()], -1)
    return np.stack([np.diag(lam[h]) - np.outer(P[h], P[h].conj()) for h in range(lam.shape[0])])


def test_s4_eigenvalues_are_those_of_hippo_legs_at_init():
    """A = Λ − P P* is similar to HiPPO-LegS, lower triangular with diagonal −1 … −N. (N = 4: the
    parameters are stored in fp32, and HiPPO-LegS's eigenvalue condition numbers grow quickly with N,
    so the fp32-rounded matrix has eigenvalues within 1e-6 of −1 … −4 — 7e-3 at N = 8.)"""
    layer = S4(2, d_state=4, l_max=16).double()
    lam = layer.eigenvalues().detach()
    assert lam.shape == (2, 4) and lam.dtype == torch.complex128
    expected = -np.arange(4, 0, -1.0)  # sorted by real part
    np.testing.assert_allclose(lam.real.numpy(), np.broadcast_to(expected, (2, 4)), atol=1e-5)
    np.testing.assert_allclose(lam.imag.numpy(), 0, atol=1e-5)


@pytest.mark.parametrize("reparam", ["exp", "best"])
def test_frozen_s4_keeps_the_eigenvalues_of_its_whole_state_matrix(reparam):
    layer = S4(4, d_state=8, l_max=32, train_eigenvalues=False, reparam=reparam).double()
    assert "P" in dict(layer.named_buffers()) and "P" not in dict(layer.named_parameters())
    before = np.linalg.eigvals(numpy_dense_A(layer))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        layer(torch.randn(2, 32, 4, dtype=torch.float64)).pow(2).mean().backward()
        opt.step()
    after = np.linalg.eigvals(numpy_dense_A(layer))
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-10)
    # what the diagnostics read is eig(A), not the diagonal part Λ
    got = np.sort_complex(layer.eigenvalues().detach().numpy())
    np.testing.assert_allclose(got, np.sort_complex(after), rtol=0, atol=1e-8)


def numpy_zoh(lam, B, dt):
    Ab = np.exp(dt * lam)
    return Ab, (Ab - 1) / lam * B


def test_discrete_system_of_diagonal_layers_matches_numpy():
    s4d = S4D(3, d_state=8, init="inv", bidirectional=True)
    system = s4d.discrete_system()
    lam = s4d.eig().detach().numpy().astype(np.complex128)
    B = torch.view_as_complex(s4d.B).detach().numpy().astype(np.complex128)
    dt = torch.exp(s4d.log_dt).detach().numpy().astype(np.float64)
    Ab, Bb = numpy_zoh(lam, B, dt[:, None])
    assert system.diagonal and system.Ab.dtype == torch.complex128
    np.testing.assert_allclose(system.Ab.detach().numpy(), Ab, rtol=1e-12)
    np.testing.assert_allclose(system.Bb.detach().numpy(), Bb, rtol=1e-12)
    assert system.C.shape == (2, 3, 4) and system.dt.shape == (3,)

    s5 = S5(3, d_state=8, init="lin")
    system = s5.discrete_system()
    lam = s5.eig().detach().numpy().astype(np.complex128)
    B = torch.view_as_complex(s5.B).detach().numpy().astype(np.complex128)  # (N/2, H)
    dt = torch.exp(s5.log_dt).detach().numpy().astype(np.float64)
    Ab, Bb = numpy_zoh(lam[:, None], B, dt[:, None])
    np.testing.assert_allclose(system.Ab.detach().numpy(), Ab[:, 0], rtol=1e-12)
    np.testing.assert_allclose(system.Bb.detach().numpy(), Bb.T, rtol=1e-12)  # (H, N/2)
    assert system.dt.shape == (4,)


def test_discrete_system_of_s4_is_the_bilinear_dense_system():
    layer = S4(2, d_state=8, l_max=16).double()
    system = layer.discrete_system()
    A = numpy_dense_A(layer)
    dt = torch.exp(layer.log_dt).detach().numpy()
    I = np.eye(8)
    for h in range(2):
        left = np.linalg.inv(I - dt[h] / 2 * A[h])
        np.testing.assert_allclose(system.Ab[h].detach().numpy(), left @ (I + dt[h] / 2 * A[h]), atol=1e-12)
    assert not system.diagonal and system.Bb.shape == (2, 8) and system.C.shape == (1, 2, 8)


# --- the SSM computes in fp32 whatever the autocast state -------------------------------------------

AUTOCAST_CASES = [(S4D, {"init": i}) for i in ("legs", "inv", "ptd")] + [
    (S4, {"l_max": 256}),
    (S5, {"init": "legs"}),
    (S5, {"init": "ptd"}),
]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize(("cls", "kwargs"), AUTOCAST_CASES, ids=lambda x: getattr(x, "__name__", str(x)))
def test_the_ssm_under_bf16_autocast_equals_fp32(cls, kwargs):
    torch.manual_seed(0)
    layer = cls(8, d_state=64, **kwargs).eval()
    u = torch.randn(2, 256, 8)
    with torch.no_grad():
        linear_part, full = layer.ssm(u), layer(u)
        kernel = layer.kernel(256) if hasattr(layer, "kernel") else None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if kernel is not None:
                autocast_kernel = layer.kernel(256)
                assert autocast_kernel.dtype == torch.float32
                assert relative_error(autocast_kernel, kernel) <= 1e-5
            autocast_full = layer(u.bfloat16())  # what a bf16 encoder hands the layer
        assert relative_error(layer.ssm(u.bfloat16().float()), linear_part) > 0  # bf16 input differs
    assert torch.isfinite(autocast_full).all()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_linear = layer.ssm(u)
    assert relative_error(autocast_linear, linear_part) <= 1e-5
    assert relative_error(autocast_full.float(), full) < 5e-2  # only the output mixing ran in bf16
