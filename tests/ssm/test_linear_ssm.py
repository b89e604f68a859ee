"""The linear SSM of the learning-dynamics study (CLAIMS.md §3): the linear model, plain SGD with a
full batch, per-step losses and steps_to_threshold, coloured inputs for linear-filter."""

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ssm.config import ModelConfig, OptimConfig, TrialConfig
from ssm.data import get_task
from ssm.data.synthetic import power_law_noise
from ssm.model import SequenceModel
from ssm.optim import make_optimizer
from ssm.train import TrialResult, train


@pytest.mark.parametrize("layer", ["s4d", "s4", "s5"])
def test_the_linear_model_is_linear_exactly(layer):
    model = SequenceModel(ModelConfig(linear=True, layer=layer, d_state=8), 1, 1, output="sequence", l_max=50)
    u = torch.randn(3, 50, 1)
    with torch.no_grad():
        y = model(u)
        assert torch.equal(model(2 * u), 2 * y)
        assert torch.equal(model(torch.zeros_like(u)), torch.zeros_like(u))
    assert y.shape == (3, 50, 1)
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {"blocks"}  # no encoder/decoder


def test_the_linear_s4d_is_the_convolution_with_its_kernel_plus_d():
    """Against a float64 numpy computation: K[l] = 2 Re Σ_n C_n Bb_n Ab_n^l (ZOH), y = K * u + D u."""
    model = SequenceModel(
        ModelConfig(linear=True, layer="s4d", init="inv", d_state=8), 1, 1, output="sequence"
    )
    (layer,) = model.ssm_layers()
    lam = layer.eig().detach().numpy()[0].astype(np.complex128)
    B = torch.view_as_complex(layer.B).detach().numpy()[0].astype(np.complex128)
    C = torch.view_as_complex(layer.C).detach().numpy()[0, 0].astype(np.complex128)
    dt = float(torch.exp(layer.log_dt).detach()[0])
    Ab = np.exp(dt * lam)
    Bb = (Ab - 1) / lam * B
    L = 40
    K = np.array([2 * (C * Bb * Ab**l).sum().real for l in range(L)])
    u = np.random.default_rng(0).standard_normal(L)
    expected = np.array([sum(K[s] * u[t - s] for s in range(t + 1)) for t in range(L)]) + layer.D.item() * u
    with torch.no_grad():
        y = model(torch.from_numpy(u).float()[None, :, None])[0, :, 0].numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_linear_and_sgd_settings_are_checked():
    assert ModelConfig(linear=True).d_model == 1 and ModelConfig(linear=True).norm == "none"
    with pytest.raises(ValidationError, match="needs d_model = 1"):
        ModelConfig(linear=True, d_model=4)
    with pytest.raises(ValidationError, match="needs n_layers = 1"):
        TrialConfig(task="linear-filter", model={"linear": True, "n_layers": 2})
    with pytest.raises(ValueError, match="regression task with d_input 1"):
        SequenceModel(ModelConfig(linear=True), 10, 3, input_type="tokens")
    sgd = OptimConfig(optimizer="sgd")
    assert sgd.schedule == "constant" and sgd.weight_decay == 0.0
    for bad in ({"weight_decay": 0.1}, {"schedule": "cosine"}, {"warmup_steps": 3}):
        with pytest.raises(ValidationError, match="constant step"):
            OptimConfig(optimizer="sgd", **bad)


def test_sgd_is_plain_gradient_descent():
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(linear=True, d_state=4), 1, 1, output="sequence")
    opt = make_optimizer(model, OptimConfig(optimizer="sgd", lr=0.3, ssm_lr=None))
    assert isinstance(opt, torch.optim.SGD)
    model(torch.randn(2, 16, 1)).pow(2).mean().backward()
    before = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        w, g = before[name]
        torch.testing.assert_close(p.detach(), w - 0.3 * g, rtol=0, atol=1e-7)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_power_law_noise_has_the_spectrum_and_unit_variance(alpha):
    L = 256
    u = power_law_noise(np.random.default_rng(0).standard_normal((4000, L)), alpha)
    assert u.var() == pytest.approx(1.0, rel=0.05)
    power = (np.abs(np.fft.rfft(u, axis=1)) ** 2).mean(0)
    f = np.fft.rfftfreq(L)
    band = (f > 0.01) & (f < 0.45)
    slope = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-alpha, abs=0.05)


def test_linear_filter_input_spectrum_option():
    sizes = {"seq_len": 64, "n_train": 8, "n_val": 4, "n_test": 4}
    white = get_task("linear-filter", **sizes)
    assert torch.equal(get_task("linear-filter", input_alpha=0, **sizes).train.x, white.train.x)
    pink = get_task("linear-filter", input_alpha=1.0, **sizes)
    expected = power_law_noise(white.train.x[..., 0].double().numpy(), 1.0)  # same white draws
    np.testing.assert_allclose(pink.train.x[..., 0].numpy(), expected, rtol=1e-5, atol=1e-6)
    kernel = np.array(pink.metadata["kernel"])
    y = np.array([np.convolve(row, kernel)[:64] for row in pink.train.x[..., 0].double().numpy()])
    np.testing.assert_allclose(pink.train.y[..., 0].numpy(), y, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="input_alpha"):
        get_task("linear-filter", input_alpha=-1, **sizes)


def test_a_linear_s4d_trained_by_sgd_reaches_the_loss_threshold():
    config = TrialConfig.model_validate(
        {
            "task": {"name": "linear-filter", "seq_len": 64, "n_train": 64, "n_val": 16, "n_test": 16},
            "model": {"linear": True, "layer": "s4d", "d_state": 8, "init": "inv"},
            "optim": {"optimizer": "sgd", "lr": 0.5, "ssm_lr": None, "full_batch": True, "epochs": 12},
            "diagnostics": {"loss_every_step": True, "loss_threshold": 0.1},
        }
    )
    result = train(config)
    assert result.status == "completed"
    losses = result.step_losses
    assert len(losses) == 12  # full batch: one step per epoch
    assert losses == pytest.approx([e["train_loss"] for e in result.epochs], rel=1e-12)
    first_below = next(k for k, loss in enumerate(losses) if loss < 0.1 * losses[0])
    assert result.steps_to_threshold == first_below
    assert 0 < result.steps_to_threshold < 12
    assert TrialResult.model_validate_json(result.model_dump_json()) == result


def test_trial_results_without_the_new_fields_still_load():
    old = {"status": "completed", "config_hash": "0" * 64, "metric": "r2", "epochs": []}
    result = TrialResult.model_validate_json(json.dumps(old))
    assert result.step_losses is None and result.steps_to_threshold is None
