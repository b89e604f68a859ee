"""S4, S4D, S5 layers: convolution = recurrence, bidirectionality, gradients, the frozen mode."""

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
