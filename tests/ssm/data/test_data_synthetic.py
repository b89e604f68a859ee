"""Synthetic tasks: targets recomputed here with explicit loops, shapes, determinism; and digits
checked against scikit-learn's data."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ssm.data import get_task

SMALL = {"n_train": 16, "n_val": 8, "n_test": 8}


def test_delay_label_is_the_token_delay_steps_before_the_end():
    task = get_task("delay", seq_len=40, delay=10, vocab=5, **SMALL)
    assert (task.kind, task.n_classes, task.d_input, task.seq_len) == ("classification", 5, 6, 40)
    assert (task.input_type, task.output, task.pooling) == ("tokens", "pooled", "last")
    for dataset in (task.train, task.val, task.test):
        assert dataset.x.shape == (len(dataset), 40) and dataset.x.dtype == torch.int64
        assert dataset.x.min() >= 1 and dataset.x.max() <= 5  # 0 is padding, never used
        assert dataset.lengths.eq(40).all()
        for x, y in zip(dataset.x.tolist(), dataset.y.tolist(), strict=True):
            assert y == x[40 - 1 - 10] - 1


def test_delay_defaults_fit_a_small_cpu_run():
    task = get_task("delay")
    assert (task.seq_len, task.n_classes) == (64, 8)
    assert (len(task.train), len(task.val), len(task.test)) == (4000, 500, 1000)
    counts = torch.bincount(task.train.y, minlength=8)
    assert counts.min() > 400  # balanced classes: chance is 1/8


def explicit_memory_target(u: np.ndarray, rho: np.ndarray) -> np.ndarray:
    y = np.zeros_like(u)
    for t in range(len(u)):
        for s in range(t + 1):
            y[t] += rho[s] * u[t - s]
    return y


@pytest.mark.parametrize(
    ("name", "options", "rho"),
    [
        ("memory-exp", {"T": 5.0}, lambda s: math.exp(-s / 5.0)),
        ("memory-poly", {"p": 1.2}, lambda s: (s + 1) ** -1.2),
    ],
)
@pytest.mark.parametrize("nonlinear", [False, True])
def test_memory_targets(name: str, options: dict, rho, nonlinear: bool):
    length = 30
    task = get_task(name, seq_len=length, nonlinear=nonlinear, **options, **SMALL)
    assert (task.kind, task.output, task.n_classes, task.d_input) == ("regression", "sequence", 1, 1)
    assert task.train.x.shape == (16, length, 1) and task.train.y.shape == (16, length, 1)
    assert task.train.y.dtype == torch.float32
    kernel = np.array([rho(s) for s in range(length)])
    kernel /= math.sqrt((kernel**2).sum())
    for i in range(3):
        u = task.test.x[i, :, 0].double().numpy()
        expected = explicit_memory_target(u, kernel)
        if nonlinear:
            expected = np.tanh(expected)
        np.testing.assert_allclose(task.test.y[i, :, 0].numpy(), expected, atol=1e-5)


def test_linear_filter_is_fixed_and_stable():
    a = get_task("linear-filter", seq_len=50, **SMALL)
    b = get_task("linear-filter", seq_len=50, seed=9, **SMALL)
    c = get_task("linear-filter", seq_len=50, filter_seed=1, **SMALL)
    kernel = np.array(a.metadata["kernel"])
    assert kernel.shape == (50,) and abs(np.linalg.norm(kernel) - 1.0) < 1e-9
    assert np.array_equal(kernel, b.metadata["kernel"])  # the target does not depend on the data seed
    assert not np.array_equal(kernel, c.metadata["kernel"])
    assert abs(kernel[-1]) < 1e-2 * np.abs(kernel).max()  # decays: a stable filter
    for i in range(3):
        u = a.train.x[i, :, 0].double().numpy()
        expected = explicit_memory_target(u, kernel)
        np.testing.assert_allclose(a.train.y[i, :, 0].numpy(), expected, atol=1e-5)
    assert not torch.equal(a.train.x, b.train.x)


def test_adding_target_is_the_sum_of_the_two_marked_values():
    task = get_task("adding", seq_len=20, **SMALL)
    assert (task.kind, task.output, task.pooling, task.d_input, task.n_classes) == (
        "regression", "pooled", "last", 2, 1,
    )  # fmt: skip
    assert task.train.x.shape == (16, 20, 2) and task.train.y.shape == (16, 1)
    for x, y in zip(task.train.x.numpy(), task.train.y.numpy(), strict=True):
        marked = np.flatnonzero(x[:, 1] == 1.0)
        assert len(marked) == 2 and marked[0] < 10 <= marked[1]
        assert set(np.unique(x[:, 1])) <= {0.0, 1.0}
        assert abs(y[0] - x[marked, 0].sum()) < 1e-6
        assert (x[:, 0] >= 0).all() and (x[:, 0] < 1).all()


@pytest.mark.parametrize("name", ["delay", "memory-exp", "memory-poly", "linear-filter", "adding"])
def test_synthetic_tasks_are_deterministic_by_seed(name: str):
    a, b, c = (get_task(name, seed=seed, **SMALL) for seed in (0, 0, 1))
    for split in ("train", "val", "test"):
        assert torch.equal(a.split(split).x, b.split(split).x)
        assert torch.equal(a.split(split).y, b.split(split).y)
        assert not torch.equal(a.split(split).x, c.split(split).x)
    assert not torch.equal(a.val.x, a.test.x)  # splits are drawn from different streams


def test_max_len_is_an_alias_of_seq_len():
    assert get_task("delay", max_len=32, delay=4, **SMALL).seq_len == 32
    assert get_task("memory-exp", max_len=20, **SMALL).train.x.shape[1] == 20


def test_digits_are_sklearns_images_as_pixel_sequences():
    images, labels = load_digits(return_X_y=True)
    task = get_task("digits")
    assert (task.kind, task.n_classes, task.d_input, task.seq_len) == ("classification", 10, 1, 64)
    assert (task.input_type, task.pooling) == ("continuous", "mean")
    assert (len(task.train), len(task.val), len(task.test)) == (1439, 179, 179)
    mean, std = task.metadata["normalization"]["mean"], task.metadata["normalization"]["std"]
    train_pixels = task.train.x[:, :, 0].numpy()
    assert abs(train_pixels.mean()) < 1e-5 and abs(train_pixels.std() - 1) < 1e-4  # standardized on train
    loaded = Counter()
    for split in ("train", "val", "test"):
        dataset = task.split(split)
        raw = np.rint((dataset.x[:, :, 0].numpy() * std + mean) * 16).astype(int)
        loaded.update((tuple(row), y) for row, y in zip(raw.tolist(), dataset.y.tolist(), strict=True))
    # The three splits hold every (image, label) of the data set exactly once.
    assert loaded == Counter(
        (tuple(row), int(y)) for row, y in zip(images.astype(int).tolist(), labels, strict=True)
    )
    padded = get_task("digits", max_len=80)
    assert padded.train.x.shape == (1439, 80, 1) and padded.train.x[:, 64:].eq(0).all()
    assert padded.train.lengths.eq(64).all()
