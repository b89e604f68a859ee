"""Synthetic tasks, built in memory from `seed` and their options (no files, no data directory),
and `digits`, scikit-learn's bundled 8×8 digit images read as a 64-step pixel sequence.

Every split is drawn from its own random stream (seed, task, split), so splits never share draws
and the same options always give the same tensors. `n_train`/`n_val`/`n_test` are the numbers of
sequences generated; `seq_len` (or its alias `max_len`) is their length.

- delay: tokens uniform in 1..vocab; the class is the token `delay` steps before the last step
  (y = x[L−1−delay] − 1). Classification, pooling "last".
- memory-exp, memory-poly: the curse-of-memory targets of StableSSM (Wang & Li):
  y_t = Σ_{s=0..t} ρ(s) u_{t−s} with ρ(s) = e^{−s/T} or (s+1)^{−p}, ρ scaled to unit L2 norm over
  s < L (so y_t has unit variance once t covers the memory), u_t i.i.d. N(0, 1); `nonlinear=True`
  reads out tanh(y_t). Per-step regression, y (n, L, 1).
- linear-filter: y = K * u (causal) for a fixed random stable filter K[l] = Σ_n c_n a_n^l with
  `order` real poles a_n ~ U(0.5, 0.95) and residues c_n ~ N(0, 1), K scaled to unit L2 norm; the
  filter depends on `filter_seed` only, so runs with different `seed`s share one target
  (Biderman et al., learning dynamics of linear SSMs). K is in `metadata["kernel"]`. The input is
  white (`input_alpha` 0) or coloured, power spectrum ∝ f^(−input_alpha) (`power_law_noise`).
- adding: two channels, values U[0, 1) and a marker that is 1 at one step of the first half and
  one of the second; the target is the sum of the two marked values. Pooled regression, y (n, 1),
  pooling "last".
- digits: `sklearn.datasets.load_digits` (1797 images, values 0–16) as (n, 64, 1) sequences,
  divided by 16 and standardized with the training pixels' mean and std; a fixed permutation
  (seed 42) splits 80/10/10. Sizes subsample deterministically by `seed`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ssm.data.base import (
    SPLITS,
    VAL_SPLIT_SEED,
    SequenceDataset,
    Task,
    check_bool,
    check_int,
    check_sizes,
    import_optional,
    option,
    split_rng,
    subsample,
    with_common_options,
)


def _resolve_length(seq_len: int | None, max_len: int | None, default: int) -> int:
    """The sequence length: `seq_len`, or its alias `max_len`, or `default`."""
    if seq_len is not None and max_len is not None and seq_len != max_len:
        raise ValueError(f"seq_len={seq_len} and max_len={max_len} disagree; give one of them")
    length = seq_len if seq_len is not None else max_len if max_len is not None else default
    return check_int("seq_len", length)


def _positive(name: str, value: Any) -> float:
    """`value` as a float > 0; ValueError naming the option otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"option {name!r} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GeneratedOptions:
    """The options every generated task takes, checked: the sequence length, the number of sequences
    of each split, and the seed."""

    length: int
    sizes: dict[str, int]
    seed: int


def synthetic_task(
    *, length: int, n_train: int, n_val: int, n_test: int
) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator for a generated task written `make(common: GeneratedOptions, *, <its own options>)`:
    the task takes `seq_len` and its alias `max_len` (default `length`), its own options, then
    `n_train`, `n_val`, `n_test` (defaults as given) and `seed` (default 0), checked before `make`
    is called."""
    before = [option("seq_len", None, "int | None"), option("max_len", None, "int | None")]
    after = [
        option("n_train", n_train, "int"),
        option("n_val", n_val, "int"),
        option("n_test", n_test, "int"),
        option("seed", 0, "int"),
    ]

    def check(
        seq_len: Any, max_len: Any, n_train: Any, n_val: Any, n_test: Any, seed: Any
    ) -> GeneratedOptions:
        return GeneratedOptions(
            length=_resolve_length(seq_len, max_len, length),
            sizes=check_sizes(n_train, n_val, n_test, allow_none=False),
            seed=check_int("seed", seed, minimum=0),
        )

    return lambda make: with_common_options(make, [], before, after, check)


def _streams(task: str, seed: int) -> dict[str, np.random.Generator]:
    """One independent random stream per split of `task`."""
    task_id = zlib.crc32(task.encode())
    return {split: split_rng(seed, task_id, i) for i, split in enumerate(SPLITS)}


def _generated_task(
    name: str,
    draw: Callable[[np.random.Generator, int], SequenceDataset],
    common: GeneratedOptions,
    *,
    options: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    **facts: Any,
) -> Task:
    """Task `name` whose splits are `draw(rng, n)` from each split's own stream, of length
    `options["seq_len"]`; `facts` are the other `Task` fields. The metadata records the generator and
    its options with the sizes and the seed."""
    splits = {split: draw(rng, common.sizes[split]) for split, rng in _streams(name, common.seed).items()}
    return Task(
        name=name,
        **splits,
        **facts,
        seq_len=options["seq_len"],
        metadata={
            "generator": name,
            "options": {**options, **_size_options(common.sizes), "seed": common.seed},
            **(metadata or {}),
        },
    )


def causal_convolution(u: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """y[:, t] = Σ_{s=0..t} kernel[s] · u[:, t−s] for u (n, L), kernel (L,), in float64 by FFT."""
    length = u.shape[1]
    size = 2 * length  # zero-padding to 2L makes the circular convolution linear
    spectrum = np.fft.rfft(u, n=size, axis=1) * np.fft.rfft(kernel, n=size)
    return np.fft.irfft(spectrum, n=size, axis=1)[:, :length]


# --- delay --------------------------------------------------------------------------------------


@synthetic_task(length=64, n_train=4000, n_val=500, n_test=1000)
def make_delay(common: GeneratedOptions, *, delay: int = 16, vocab: int = 8) -> Task:
    """Recall the token seen `delay` steps before the last step (default length 64, 8 tokens)."""
    length = common.length
    delay = check_int("delay", delay, minimum=0)
    vocab = check_int("vocab", vocab, minimum=2)
    if delay >= length:
        raise ValueError(f"option 'delay' must be < seq_len={length}, got {delay}")

    def draw(rng: np.random.Generator, n: int) -> SequenceDataset:
        x = rng.integers(1, vocab + 1, size=(n, length))
        y = x[:, length - 1 - delay] - 1
        return SequenceDataset(torch.from_numpy(x), torch.from_numpy(y), torch.full((n,), length))

    return _generated_task(
        "delay",
        draw,
        common,
        options={"seq_len": length, "delay": delay, "vocab": vocab},
        kind="classification",
        n_classes=vocab,
        d_input=vocab + 1,
        input_type="tokens",
        pooling="last",
    )


def _size_options(sizes: dict[str, int | None]) -> dict[str, int | None]:
    return {f"n_{split}": n for split, n in sizes.items()}


# --- memory-exp, memory-poly, linear-filter -----------------------------------------------------


def _regression_task(
    name: str,
    kernel: np.ndarray,
    common: GeneratedOptions,
    *,
    nonlinear: bool,
    options: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    input_alpha: float = 0.0,
) -> Task:
    """A per-step regression task: u ~ N(0, 1) (n, L, 1), white or with power spectrum ∝ f^(−input_alpha),
    y = readout(kernel * u) (n, L, 1)."""
    length = len(kernel)

    def draw(rng: np.random.Generator, n: int) -> SequenceDataset:
        u = rng.standard_normal((n, length))
        if input_alpha:
            u = power_law_noise(u, input_alpha)
        y = causal_convolution(u, kernel)
        if nonlinear:
            y = np.tanh(y)
        return SequenceDataset(
            torch.from_numpy(u.astype(np.float32)[:, :, None]),
            torch.from_numpy(y.astype(np.float32)[:, :, None]),
            torch.full((n,), length),
        )

    return _generated_task(
        name,
        draw,
        common,
        options=options,
        metadata=metadata,
        kind="regression",
        n_classes=1,
        d_input=1,
        input_type="continuous",
        output="sequence",
    )


def memory_kernel(kind: str, length: int, scale: float) -> np.ndarray:
    """ρ(s), s = 0..length−1, scaled to unit L2 norm: e^{−s/T} ("exp", scale T) or (s+1)^{−p}
    ("poly", scale p)."""
    s = np.arange(length, dtype=np.float64)
    rho = np.exp(-s / scale) if kind == "exp" else (s + 1.0) ** (-scale)
    return rho / np.linalg.norm(rho)


def _memory_task(common: GeneratedOptions, kind: str, scale_name: str, scale: Any, nonlinear: Any) -> Task:
    """memory-exp or memory-poly (`kind` "exp" or "poly") from its own options as given, checked here;
    `scale_name` is the option that holds the kernel's scale (T or p)."""
    scale = _positive(scale_name, scale)
    nonlinear = check_bool("nonlinear", nonlinear)
    return _regression_task(
        f"memory-{kind}",
        memory_kernel(kind, common.length, scale),
        common,
        nonlinear=nonlinear,
        options={"seq_len": common.length, scale_name: scale, "nonlinear": nonlinear},
    )


@synthetic_task(length=128, n_train=2000, n_val=250, n_test=250)
def make_memory_exp(common: GeneratedOptions, *, T: float = 16.0, nonlinear: bool = False) -> Task:
    """Exponentially decaying memory ρ(s) = e^{−s/T} (default length 128, T = 16 steps)."""
    return _memory_task(common, "exp", "T", T, nonlinear)


@synthetic_task(length=128, n_train=2000, n_val=250, n_test=250)
def make_memory_poly(common: GeneratedOptions, *, p: float = 1.5, nonlinear: bool = False) -> Task:
    """Polynomially decaying memory ρ(s) = (s+1)^{−p} (default length 128, p = 1.5)."""
    return _memory_task(common, "poly", "p", p, nonlinear)


def power_law_noise(white: np.ndarray, alpha: float) -> np.ndarray:
    """Coloured noise from white noise (n, L): each sequence filtered (circularly, by FFT) to the power
    spectrum S(f) ∝ f^(−alpha), f in cycles per step; the f = 0 bin gets the gain of the lowest
    nonzero frequency. Scaled so that every step has unit variance in expectation."""
    length = white.shape[1]
    frequency = np.fft.rfftfreq(length)
    gain = np.empty_like(frequency)
    gain[1:] = frequency[1:] ** (-alpha / 2)
    gain[0] = gain[1] if length > 1 else 1.0
    # per-step variance = mean of |gain|² over the L bins of the full (two-sided) spectrum
    bins = np.full(len(frequency), 2.0)
    bins[0] = 1.0
    if length % 2 == 0:
        bins[-1] = 1.0
    variance = (bins * gain**2).sum() / length
    return np.fft.irfft(np.fft.rfft(white, axis=1) * gain, n=length, axis=1) / np.sqrt(variance)


def linear_filter_kernel(length: int, order: int, filter_seed: int) -> np.ndarray:
    """K[l] = Σ_n c_n a_n^l, l < length, with a_n ~ U(0.5, 0.95), c_n ~ N(0, 1); unit L2 norm."""
    rng = np.random.default_rng([filter_seed, zlib.crc32(b"linear-filter")])
    poles = rng.uniform(0.5, 0.95, size=order)
    residues = rng.standard_normal(order)
    kernel = (residues[:, None] * poles[:, None] ** np.arange(length)).sum(axis=0)
    return kernel / np.linalg.norm(kernel)


@synthetic_task(length=128, n_train=2000, n_val=250, n_test=250)
def make_linear_filter(
    common: GeneratedOptions, *, order: int = 4, filter_seed: int = 0, input_alpha: float = 0.0
) -> Task:
    """A fixed random stable linear filter as the target (default length 128, 4 poles); the input
    white (`input_alpha` 0) or with power spectrum ∝ f^(−input_alpha) (1: pink, 2: brown)."""
    order = check_int("order", order)
    filter_seed = check_int("filter_seed", filter_seed, minimum=0)
    if isinstance(input_alpha, bool) or not isinstance(input_alpha, int | float) or not input_alpha >= 0:
        raise ValueError(f"option 'input_alpha' must be a number ≥ 0, got {input_alpha!r}")
    kernel = linear_filter_kernel(common.length, order, filter_seed)
    return _regression_task(
        "linear-filter",
        kernel,
        common,
        nonlinear=False,
        options={
            "seq_len": common.length,
            "order": order,
            "filter_seed": filter_seed,
            "input_alpha": float(input_alpha),
        },
        metadata={"kernel": kernel.tolist()},
        input_alpha=float(input_alpha),
    )


# --- adding ---------------------------------------------------------------------------------------


@synthetic_task(length=100, n_train=5000, n_val=500, n_test=1000)
def make_adding(common: GeneratedOptions) -> Task:
    """The adding problem (default length 100): sum the two values whose marker is 1."""
    length = common.length
    if length < 2:
        raise ValueError(f"option 'seq_len' must be ≥ 2 for the adding problem, got {length}")
    half = length // 2

    def draw(rng: np.random.Generator, n: int) -> SequenceDataset:
        values = rng.random((n, length))
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, length, size=n)
        markers = np.zeros((n, length))
        markers[np.arange(n), first] = 1.0
        markers[np.arange(n), second] = 1.0
        x = np.stack([values, markers], axis=-1).astype(np.float32)
        y = (values[np.arange(n), first] + values[np.arange(n), second]).astype(np.float32)[:, None]
        return SequenceDataset(torch.from_numpy(x), torch.from_numpy(y), torch.full((n,), length))

    return _generated_task(
        "adding",
        draw,
        common,
        options={"seq_len": length},
        kind="regression",
        n_classes=1,
        d_input=2,
        input_type="continuous",
        pooling="last",
    )


# --- digits ---------------------------------------------------------------------------------------

DIGITS_PIXELS = 64


def make_digits(
    *,
    max_len: int = DIGITS_PIXELS,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> Task:
    """scikit-learn's 8×8 digits as 64-step sequences (10 classes, 1 channel, mean pooling)."""
    max_len = check_int("max_len", max_len)
    sizes = check_sizes(n_train, n_val, n_test)
    seed = check_int("seed", seed, minimum=0)
    datasets = import_optional("sklearn.datasets", "scikit-learn", "the digits task")
    images, labels = datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(VAL_SPLIT_SEED).permutation(len(labels))
    n_held = len(labels) // 10
    index = {
        "train": np.sort(order[2 * n_held :]),
        "val": np.sort(order[:n_held]),
        "test": np.sort(order[n_held : 2 * n_held]),
    }
    pixels = images / 16.0
    mean, std = pixels[index["train"]].mean(), pixels[index["train"]].std()
    steps = min(max_len, DIGITS_PIXELS)
    splits = {}
    for split in SPLITS:
        chosen = index[split]
        x = np.zeros((len(chosen), max_len, 1), np.float32)
        x[:, :steps, 0] = ((pixels[chosen] - mean) / std)[:, :steps]
        dataset = SequenceDataset(
            torch.from_numpy(x),
            torch.from_numpy(labels[chosen].astype(np.int64)),
            torch.full((len(chosen),), steps),
        )
        splits[split] = subsample(dataset, sizes[split], seed=seed, split=split)
    return Task(
        name="digits",
        **splits,
        kind="classification",
        n_classes=10,
        d_input=1,
        seq_len=max_len,
        input_type="continuous",
        output="pooled",
        pooling="mean",
        metadata={
            "source": "sklearn.datasets.load_digits",
            "options": {"max_len": max_len, **_size_options(sizes), "seed": seed},
            "normalization": {"mean": float(mean), "std": float(std)},
        },
    )
