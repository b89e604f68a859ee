"""The trainer: learning, pruning, divergence, checkpoint/resume, and the TrialResult round trip."""

import json
import math

import numpy as np
import pytest
import torch
from fresh_models import fresh_model  # tests/fresh_models.py

from ssm import diagnostics
from ssm.config import TrialConfig
from ssm.model import SequenceModel
from ssm.train import TrialResult, count_parameters, lr_schedule, train

TINY = {"d_model": 16, "d_state": 8, "n_layers": 1}
SMALL_DELAY = {"name": "delay", "n_train": 256, "n_val": 64, "n_test": 64, "seq_len": 32, "delay": 4}


def tiny_config(**overrides):
    data = {"task": SMALL_DELAY, "model": TINY, "optim": {"epochs": 3, "batch_size": 32, "lr": 3e-3}}
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return TrialConfig.model_validate(data)


def test_on_epoch_gets_the_documented_metrics_and_result_is_consistent():
    seen = []
    result = train(tiny_config(), on_epoch=lambda m: seen.append(m))
    assert [m["epoch"] for m in seen] == [0, 1, 2]
    for m in seen:
        assert {"epoch", "train_loss", "val_loss", "val_metric", "lr", "seconds", "tokens_per_s"} <= set(m)
        assert math.isfinite(m["train_loss"]) and 0 <= m["val_metric"] <= 1
    assert result.status == "completed"
    best = max(range(3), key=lambda e: (seen[e]["val_metric"], -e))
    assert result.best_epoch == best and result.val_metric == seen[best]["val_metric"]
    assert result.epochs == seen
    assert result.config_hash == tiny_config().hash()
    assert result.parameters["frozen"] == 0 and result.parameters["total"] == result.parameters["trainable"]


def test_returning_false_prunes():
    result = train(tiny_config(), on_epoch=lambda m: m["epoch"] < 1)
    assert result.status == "pruned"
    assert len(result.epochs) == 2
    assert result.test_metric is not None  # the best weights so far are still evaluated


def test_a_huge_learning_rate_without_a_stable_reparameterization_diverges_and_is_recorded():
    config = tiny_config(
        model={**TINY, "reparam": "none", "init": "lin"},
        optim={"epochs": 3, "batch_size": 32, "lr": 1e6, "ssm_lr": 1e6, "weight_decay": 0.0},
    )
    result = train(config)
    assert result.status == "diverged"
    assert result.diverged_at is not None and set(result.diverged_at) == {"epoch", "step"}
    assert result.test_metric is None


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
    config = tiny_config(model={**TINY, "dropout": 0.1})
    uninterrupted = train(config)

    class Crash(Exception):
        pass

    def crash_after_first_epoch(m):
        if m["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        train(config, on_epoch=crash_after_first_epoch, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").exists()
    resumed = train(config, checkpoint_dir=tmp_path)
    assert resumed.status == "completed"
    assert [e["epoch"] for e in resumed.epochs] == [0, 1, 2]
    for a, b in zip(resumed.epochs, uninterrupted.epochs, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
    assert resumed.test_metric == pytest.approx(uninterrupted.test_metric, abs=1e-6)


def test_frozen_eigenvalues_train_and_do_not_move():
    config = tiny_config(model={**TINY, "train_eigenvalues": False})
    seen = []
    result = train(config, on_epoch=seen.append)
    assert result.status == "completed"
    trained = train(tiny_config())
    assert result.parameters["trainable"] < trained.parameters["trainable"]
    assert result.parameters["frozen"] > 0
    assert seen[-1]["train_loss"] < seen[0]["train_loss"]


def test_trial_result_json_round_trip():
    result = train(tiny_config(optim={"epochs": 1, "batch_size": 64}))
    text = result.model_dump_json()
    assert TrialResult.model_validate_json(text) == result
    json.loads(text)  # plain JSON, no NaN or objects


def test_regression_task_reports_mse_and_r2():
    config = TrialConfig(
        task={"name": "memory-exp", "n_train": 128, "n_val": 32, "n_test": 32, "seq_len": 32},
        model=TINY,
        optim={"epochs": 2, "batch_size": 32},
    )
    result = train(config)
    assert result.metric == "r2" and {"mse", "r2"} <= set(result.test)


def test_cpu_runs_are_deterministic():
    a, b = train(tiny_config()), train(tiny_config())
    assert [e["train_loss"] for e in a.epochs] == [e["train_loss"] for e in b.epochs]
    assert a.test_metric == b.test_metric


def test_lr_schedule_warmup_and_cosine():
    opt = tiny_config(optim={"warmup_steps": 4, "schedule": "cosine"}).optim
    f = lr_schedule(opt, total_steps=14)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(9) == pytest.approx(0.5) and f(14) == pytest.approx(0.0)


def test_count_parameters_counts_frozen_eigenvalues_and_dt():
    from ssm.config import ModelConfig

    H, N2, layers = 16, 4, 2
    model = SequenceModel(
        ModelConfig(d_model=H, d_state=2 * N2, n_layers=layers, train_eigenvalues=False), 3, 2
    )
    counts = count_parameters(model)
    assert counts["frozen"] == layers * (H * N2 * 2 + H)  # Re-parameter w and Im λ per slot, dt per channel
    assert counts["trainable"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] == counts["trainable"] + counts["frozen"]
    s4 = SequenceModel(
        ModelConfig(layer="s4", d_model=H, d_state=2 * N2, n_layers=1, train_eigenvalues=False), 3, 2
    )
    assert count_parameters(s4)["frozen"] == H * N2 * 2 + H + H * N2 * 2  # and S4's P (complex, per slot)


def test_diagnostics_are_reported_per_epoch_and_fourier_at_the_end():
    config = tiny_config(
        diagnostics={
            "every": 1,
            "memory_max_lag": 32,
            "fourier": {"frequencies": [0.1, 0.4], "amplitude": 0.5},
        },
        optim={"epochs": 2, "batch_size": 32},
    )
    seen = []
    result = train(config, on_epoch=seen.append)
    for m in seen:
        assert {
            "grad_over_weight_mean",
            "grad_over_weight_layers",
            "drift_re_lambda",
            "drift_im_lambda",
            "drift_dt",
            "drift_abs_Ab",
            "memory_capacity",
            "memory_capacity_truncated",
            "diagnostics_fraction",
        } <= set(m)
        assert len(m["memory_capacity"]) == config.model.n_layers
        assert m["drift_re_lambda"] > 0 and m["drift_dt"] > 0  # trained eigenvalues and dt moved
        # all lags (closed-form tail) ≥ the first 32; MC ≤ N = 8
        for total, truncated in zip(m["memory_capacity"], m["memory_capacity_truncated"], strict=True):
            assert truncated <= total + 1e-9 and total <= 8 + 1e-6
    frequencies = [row["frequency"] for row in result.diagnostics["fourier"]]
    assert frequencies == [None, 0.1, 0.4]
    clean = result.diagnostics["fourier"][0]["accuracy"]
    assert clean == pytest.approx(result.test_metric)
    assert json.loads(result.model_dump_json())["diagnostics"]["arrays"].keys() == {"init", "best", "end"}


def test_diagnostic_arrays_at_init_best_and_end():
    config = tiny_config(diagnostics={"every": 1, "memory_max_lag": 8}, optim={"epochs": 2, "batch_size": 64})
    result = train(config)
    arrays = result.diagnostics["arrays"]
    model, _ = fresh_model(config)
    assert arrays["init"] == diagnostics.layer_arrays(model, 8)
    assert arrays["end"] != arrays["init"]  # trained
    (layer,) = arrays["best"]
    assert np.array(layer["eigenvalues"]).shape == (16, 4, 2) and np.array(
        layer["memory_function"]
    ).shape == (16, 8)


def test_grad_over_weight_is_measured_before_clipping():
    """One full-batch step per epoch: epoch 0's ratio is that of the initial model's gradient,
    computed here independently, whatever the (tiny) clipping threshold does to the update."""
    n_train = SMALL_DELAY["n_train"]
    config = tiny_config(
        diagnostics={"every": 1, "memory_max_lag": 4},
        optim={"epochs": 1, "batch_size": n_train, "grad_clip": 1e-6},
    )
    seen = []
    train(config, on_epoch=seen.append)
    model, task = fresh_model(config)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(task.train.x, task.train.lengths), task.train.y)
    loss.backward()
    expected = diagnostics.grad_over_weight(model)
    assert seen[0]["grad_over_weight_mean"] == pytest.approx(expected["mean"], rel=1e-4)
    assert seen[0]["grad_over_weight_max"] == pytest.approx(expected["max"], rel=1e-4)
    assert seen[0]["grad_over_weight_layers"] == pytest.approx([expected["layers"][0]["mean"]], rel=1e-4)
