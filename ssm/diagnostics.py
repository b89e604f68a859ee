"""Measurements that explain a trained SSM: memory function, gradient-over-weight ratio, eigenvalue
drift, robustness to Fourier-mode input noise (REFERENCE.md §2–§4).

Memory function (REFERENCE.md §4). One channel's discrete diagonal system x_k = Ab x_{k−1} + Bb u_k
keeps N/2 complex slots for a real state of size N (REFERENCE.md §1). Everything here works on the
*real* representation of that state: slot x = a + ib contributes the real coordinates (a, b), in
the order [Re x_0 … Re x_{N/2−1}, Im x_0 … Im x_{N/2−1}], so

    b_τ   = [Re(Ab^τ Bb), Im(Ab^τ Bb)] ∈ R^N   the state's loading on the input u_{k−τ}
    Σ     = Σ_τ b_τ b_τᵀ                       the state covariance under i.i.d. zero-mean
                                               unit-variance input: the solution of the discrete
                                               Lyapunov equation Σ = A Σ Aᵀ + b₀ b₀ᵀ
    MF(τ) = b_τᵀ Σ⁻¹ b_τ ∈ [0, 1]              R² of the best linear readout of u_{k−τ}
    MC    = Σ_τ MF(τ) = rank Σ                 N for a controllable state

where A, the real dynamics matrix, is block diagonal with 2×2 blocks [[Re Ab, −Im Ab], [Im Ab, Re Ab]].
Controllability needs the eigenvalues {Ab_n} ∪ {conj(Ab_n)} of A to be distinct. A slot with a real
Ab has two real coordinates with the same dynamics (its imaginary coordinate is excited only when Bb
is complex, and then moves in proportion to the real one): it adds 1 to the rank, not 2 — `lin`'s
λ_0 = −½ is such a slot. Two slots whose Ab are equal or conjugate (e.g. `lin` at a large dt, whose
rotation angles alias modulo 2π) also share their memory. Each coincidence lowers MC below N.
MF depends on Bb only through which slots it excites: b_τ = diag(Bb)·Ab^τ, and a Bb without zero
entries is an invertible change of basis. S5's channels, which share Ab, therefore share one MF;
S4D's channels differ through their dt (and their trained λ).

Σ comes in closed form: with c_i = Ab_i^τ Bb_i, the sums Σ_τ c_i c̄_j = Bb_i conj(Bb_j) / (1 − Ab_i conj(Ab_j))
and Σ_τ c_i c_j = Bb_i Bb_j / (1 − Ab_i Ab_j) are geometric series. That is the exact solution of the
Lyapunov equation (the tests check it against `scipy.linalg.solve_discrete_lyapunov` and against
the explicit sum), vectorized over channels and accurate entry by entry.

Ill-conditioned Σ. A state with eigenvalues close to 1 and close to 0 at once has coordinates whose
variances differ by many orders of magnitude, and nearly equal eigenvalues make coordinates nearly
collinear; cond(Σ) then reaches 1e12 … 1e20 and a plain Σ⁻¹ is rounding noise. Two steps:
1. Σ is scaled to its correlation matrix R = D^{-1/2} Σ D^{-1/2}, D = diag Σ. MF is invariant under a
   change of basis of the state, so this changes nothing mathematically and removes the scale
   disparity entirely (a coordinate of zero variance is dropped).
2. R's eigen-directions with eigenvalue ≤ `rcond` × its largest (default `DEFAULT_RCOND` = 1e-10)
   are dropped: MF(τ) = b_τᵀ Σ⁺ b_τ with the pseudo-inverse on the directions kept.
With the cutoff, MF(τ) is the R² of the readout from the r directions kept — still in [0, 1] — and
MC = r, the *numerical* rank of the state at relative precision `rcond`: a direction whose signal is
below 1e-10 of the strongest cannot be read out in float64 and does not count as memory. A smaller
`rcond` counts more nearly-collinear directions but makes MF noisier (rounding in R, ~1e-16, is
amplified by up to 1/rcond); at 1e-10, MF(τ) and MC are accurate to about 1e-6.

All the numerics run in float64/complex128 on the CPU. The linear algebra here is many small
matrices (N ≤ a few hundred): it runs on one thread (`_one_thread`), which costs nothing on an idle
machine and avoids the spinning BLAS/LAPACK threads that made batched `eigh` up to 100× slower on a
shared, oversubscribed CPU in our measurements.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.signal
import torch
from torch import nn

from ssm.kernels import discretize
from ssm.layers import S4, S4D, S5, SSMLayer
from ssm.layers.base import as_complex

DEFAULT_RCOND = 1e-10
# memory_capacity(max_lag=None) sums lags until the remaining tail is below DEFAULT_TAIL_TOL, or up
# to MAX_SUMMED_LAGS lags; the tail left (known in closed form) is then added.
DEFAULT_TAIL_TOL = 1e-9
MAX_SUMMED_LAGS = 2**16
# Impulse responses are built for at most this many (batch × state × lag) entries at once.
_CHUNK_ELEMENTS = 2**22

ArrayLike = np.ndarray | torch.Tensor | Sequence[complex]


# --- the memory function of one diagonal system (REFERENCE.md §4) --------------------------------


def state_covariance(Ab: ArrayLike, Bb: ArrayLike) -> np.ndarray:
    """Σ = Σ_τ b_τ b_τᵀ of the real state, the solution of Σ = A Σ Aᵀ + b₀ b₀ᵀ.

    Ab, Bb: complex (..., N/2), one discrete diagonal system per leading index, all |Ab| < 1.
    Returns float64 (..., N, N) in the coordinates [Re x, Im x] (module docstring).
    """
    return _covariance(*_diagonal_system(Ab, Bb)).numpy()


def memory_function(
    Ab: ArrayLike, Bb: ArrayLike, max_lag: int, *, rcond: float = DEFAULT_RCOND
) -> np.ndarray:
    """The analytic memory function MF(τ) = b_τᵀ Σ⁺ b_τ, τ = 0 … max_lag − 1 (REFERENCE.md §4).

    Ab, Bb: complex (N/2,), numpy arrays or tensors — one channel's discrete diagonal system
    (`ssm.kernels.discretize`); leading batch dimensions (..., N/2) are allowed and kept.
    Σ⁺: pseudo-inverse with the eigen-cutoff `rcond` on the correlation scale (module docstring).
    Returns float64 (max_lag,) — or (..., max_lag) — in [0, 1] up to rounding (~1e-9).
    Raises ValueError unless every |Ab| < 1: an unstable state has no stationary covariance.
    """
    _check_max_lag(max_lag)
    Ab, Bb = _diagonal_system(Ab, Bb)
    with _one_thread():
        readout, _ = _whitening(_covariance(Ab, Bb), rcond)
        return _diagonal_mf(Ab, Bb, readout, 0, max_lag).numpy()


def memory_capacity(
    Ab: ArrayLike,
    Bb: ArrayLike,
    max_lag: int | None = None,
    *,
    rcond: float = DEFAULT_RCOND,
    tail_tol: float = DEFAULT_TAIL_TOL,
) -> float | np.ndarray:
    """MC = Σ_τ MF(τ), how many past inputs the state holds (REFERENCE.md §4).

    With `max_lag`: the sum over τ < max_lag. With `max_lag=None`: the sum over all lags — lags are
    summed until the remaining tail Σ_{τ≥T} MF(τ) is below `tail_tol`, or up to `MAX_SUMMED_LAGS`
    lags, and that tail is added; it is known in closed form, trace(Σ⁺ A^T Σ (A^T)ᵀ), so the result
    is the infinite sum up to rounding. That sum is the numerical rank of the state (module
    docstring): the real state dimension N for a controllable state.
    Returns a float for one system (N/2,), a float64 array for a batch (..., N/2).
    """
    if max_lag is not None:
        _check_max_lag(max_lag)
    Ab, Bb = _diagonal_system(Ab, Bb)
    with _one_thread():
        readout, _ = _whitening(_covariance(Ab, Bb), rcond)
        if max_lag is not None:
            total = _diagonal_mf(Ab, Bb, readout, 0, max_lag).sum(-1)
        else:
            lags = 64
            tail = _diagonal_tail(Ab, Bb, readout, lags)
            while bool((tail > tail_tol).any()) and lags < MAX_SUMMED_LAGS:
                lags *= 2
                tail = _diagonal_tail(Ab, Bb, readout, lags)
            total = _diagonal_mf(Ab, Bb, readout, 0, lags).sum(-1) + tail
    return float(total) if total.dim() == 0 else total.numpy()


def empirical_memory_function(
    Ab: ArrayLike,
    Bb: ArrayLike,
    max_lag: int,
    n_steps: int = 20_000,
    washout: int | None = None,
    ridge: float = 1e-8,
    seed: int = 0,
    train_fraction: float = 0.5,
) -> np.ndarray:
    """The memory function measured on a simulation: held-out R² of ridge readouts (REFERENCE.md §4).

    Simulates x_k = Ab x_{k−1} + Bb u_k from x_{−1} = 0 for `n_steps` steps of i.i.d. standard
    normal u (drawn with `seed`), drops the first `washout` steps, splits the rest in time into a
    training part (`train_fraction`) and a held-out part, and for each lag τ < max_lag fits a ridge
    regression with intercept of u_{k−τ} on the real state [Re x_k, Im x_k], standardized on the
    training part; `ridge` is the penalty on that scale (α·n_train·I). Ab, Bb: complex (N/2,).
    Returns float64 (max_lag,): held-out R² per lag, ≈ MF(τ) (it can dip slightly below 0).

    washout=None: max_lag − 1 steps, so that every target u_{k−τ} exists, plus the steps the slowest
    mode needs for its start-up transient ρ^{2k} to fall below 1e-6 (at most n_steps // 4).
    With the defaults the R² of each lag is within about 0.02 of MF(τ) for N ≤ 16.
    """
    _check_max_lag(max_lag)
    Ab, Bb = (x.numpy() for x in _diagonal_system(Ab, Bb))
    if Ab.ndim != 1:
        raise ValueError(f"empirical_memory_function takes one system of shape (N/2,), got {Ab.shape}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if washout is None:
        rho = float(np.abs(Ab).max(initial=0.0))
        transient = 0 if rho == 0 else math.ceil(math.log(1e-6) / (2 * math.log(rho)))
        washout = max_lag - 1 + min(transient, n_steps // 4)
    if washout < max_lag - 1:
        raise ValueError(f"washout={washout} must be ≥ max_lag − 1 = {max_lag - 1}")
    n_used = n_steps - washout
    n_train = int(n_used * train_fraction)
    if n_train < 2 * Ab.size + 2 or n_used - n_train < 2:
        raise ValueError(f"n_steps={n_steps} leaves too few steps after washout={washout} to fit and test")

    u = np.random.default_rng(seed).standard_normal(n_steps)
    # One first-order recursive filter per slot: x_n[k] = Ab_n x_n[k−1] + Bb_n u[k].
    x = np.stack([scipy.signal.lfilter([b], [1.0, -a], u) for a, b in zip(Ab, Bb, strict=True)], -1)
    features = torch.from_numpy(np.concatenate([x.real, x.imag], -1)[washout:])  # (n_used, N)
    steps = torch.arange(washout, n_steps)
    targets = torch.from_numpy(u)[steps[:, None] - torch.arange(max_lag)]  # (n_used, max_lag): u_{k−τ}

    X_train, X_test = features[:n_train], features[n_train:]
    Y_train, Y_test = targets[:n_train], targets[n_train:]
    mean, std = X_train.mean(0), X_train.std(0)
    moving = std > 1e-12 * std.max()  # e.g. the imaginary coordinate of a real slot with real Bb
    X_train = (X_train[:, moving] - mean[moving]) / std[moving]
    X_test = (X_test[:, moving] - mean[moving]) / std[moving]
    y_mean = Y_train.mean(0)
    with _one_thread():
        gram = X_train.T @ X_train + ridge * n_train * torch.eye(X_train.shape[1], dtype=X_train.dtype)
        weights = torch.linalg.solve(gram, X_train.T @ (Y_train - y_mean))
        residual = Y_test - (X_test @ weights + y_mean)
    spread = Y_test - Y_test.mean(0)
    return (1.0 - residual.square().sum(0) / spread.square().sum(0)).numpy()


# --- the memory function of the layers of a model -----------------------------------------------


def model_memory_functions(
    model: nn.Module, max_lag: int, *, rcond: float = DEFAULT_RCOND
) -> list[np.ndarray]:
    """MF per SSM layer and input channel: a list, one float64 array (channels, max_lag) per layer.

    `model`: a `SequenceModel` (its `ssm_layers()`) or a single SSM layer. Each layer is discretized
    as it runs — its `discretization`, its current λ, B and dt — in float64:
    - S4D: channel h is its own diagonal system (Ab[h], Bb[h]) of N/2 slots;
    - S5: the shared state of N/2 slots (per-state dt) driven by input channel h alone, (Ab, Bb[:, h]);
    - S4: the full DPLR system of channel h, A = Λ − P P* discretized bilinearly
      (`S4._dense_system`, N×N in the basis [slots, conjugates] — MF does not depend on the basis);
      Σ by Smith's doubling iteration Σ ← Σ + Aᵏ Σ (Aᵏ)ᴴ, Aᵏ ← (Aᵏ)², batched over channels.
    A channel whose system is not strictly stable (possible under the `none` reparameterization)
    has no memory function: its row is NaN.
    """
    _check_max_lag(max_lag)
    results = []
    with torch.no_grad(), _one_thread():
        for layer in _ssm_layers(model):
            if isinstance(layer, S4):
                A, b, _ = layer._dense_system()
                results.append(_dense_mf(A.cpu(), b.cpu(), max_lag, rcond).numpy())
                continue
            lam, B = layer.eig().cpu(), as_complex(layer.B).cpu()
            dt = torch.exp(layer.log_dt).cpu()[:, None]
            if isinstance(layer, S5):
                Ab, Bb = discretize(lam[:, None], B, dt, layer.discretization)  # (N/2, 1), (N/2, H)
                Ab, Bb = Ab.expand_as(Bb).T, Bb.T  # (H, N/2): the shared state, driven by channel h
            elif isinstance(layer, S4D):
                Ab, Bb = discretize(lam, B, dt, layer.discretization)  # (H, N/2)
            else:
                raise TypeError(f"no memory function for layer type {type(layer).__name__}")
            stable = (Ab.abs() < 1).all(-1)
            mf = torch.full((Ab.shape[0], max_lag), math.nan, dtype=torch.float64)
            if bool(stable.any()):
                readout, _ = _whitening(_covariance(Ab[stable], Bb[stable]), rcond)
                mf[stable] = _diagonal_mf(Ab[stable], Bb[stable], readout, 0, max_lag)
            results.append(mf.numpy())
    return results


# --- gradient-over-weight ratio and eigenvalues (REFERENCE.md §3) --------------------------------


def grad_over_weight(model: nn.Module, eps: float = 1e-12) -> dict[str, Any]:
    """The gradient-over-weight ratio r = |∂L/∂w| / |w| of the eigenvalue parameters (REFERENCE.md §3).

    w is `layer.eig.w`, the parameter under the reparameterization (Re λ = f(w)); ∂L/∂w is what is
    in `w.grad` now (the caller has run backward). r is taken elementwise and summarized:
        {"layers": [{"mean": r̄, "max": r_max, "n": entries used, "n_excluded": k} or None, ...],
         "mean": r̄ over all layers' entries together, "max": r_max over them}
    A layer whose w is frozen (`train_eigenvalues=False`) or has no gradient is None. Entries with
    |w| ≤ `eps` have no finite ratio (w = 0 happens, e.g. `exp` at Re λ = −1): they are left out of
    the summaries and counted in "n_excluded". A summary over no entries is None. Plain floats.
    """
    layers: list[dict[str, Any] | None] = []
    pooled = []
    for layer in _ssm_layers(model):
        w = layer.eig.w
        if not isinstance(w, nn.Parameter) or not w.requires_grad or w.grad is None:
            layers.append(None)
            continue
        magnitude = w.detach().to("cpu", torch.float64).abs().flatten()
        grad = w.grad.detach().to("cpu", torch.float64).abs().flatten()
        finite = magnitude > eps
        ratio = grad[finite] / magnitude[finite]
        pooled.append(ratio)
        layers.append({**_mean_max(ratio), "n": int(finite.sum()), "n_excluded": int((~finite).sum())})
    overall = _mean_max(torch.cat(pooled)) if pooled else {"mean": None, "max": None}
    return {"layers": layers, **overall}


def eigenvalues(model: nn.Module) -> list[torch.Tensor]:
    """The continuous-time eigenvalues λ of each SSM layer: complex128 CPU tensors, detached.

    Shapes: S4D (H, N/2), S5 (N/2,), S4 (H, N/2) — for S4 the diagonal part Λ of A = Λ − P P*, the
    eigenvalue parameter S4 trains (not the eigenvalues of the full DPLR matrix).
    """
    with torch.no_grad():
        return [layer.eigenvalues().detach().to("cpu", torch.complex128) for layer in _ssm_layers(model)]


def eigenvalue_drift(initial: Sequence[torch.Tensor], current: Sequence[torch.Tensor]) -> dict[str, Any]:
    """How far the eigenvalues moved, from two lists returned by `eigenvalues(model)`.

    Returns {"layers": [{"mean": mean |Δλ|, "max": max |Δλ|, "relative": mean |Δλ| / mean |λ_initial|},
    ...], "mean", "max", "relative"}, the last three over all layers' eigenvalues together; plain
    floats ("relative" is None when the initial eigenvalues are all 0).
    """
    if len(initial) != len(current):
        raise ValueError(f"initial has {len(initial)} layers, current has {len(current)}")
    layers, deltas, sizes = [], [], []
    for i, (before, after) in enumerate(zip(initial, current, strict=True)):
        before, after = (torch.as_tensor(x).detach().to("cpu", torch.complex128) for x in (before, after))
        if before.shape != after.shape:
            raise ValueError(
                f"layer {i}: eigenvalue shapes differ, {tuple(before.shape)} vs {tuple(after.shape)}"
            )
        deltas.append((after - before).abs().flatten())
        sizes.append(before.abs().flatten())
        layers.append(_drift_summary(deltas[-1], sizes[-1]))
    if not layers:
        return {"layers": [], "mean": None, "max": None, "relative": None}
    return {"layers": layers, **_drift_summary(torch.cat(deltas), torch.cat(sizes))}


# --- robustness to Fourier-mode noise (REFERENCE.md §2, the PTD claim) ---------------------------


def fourier_noise_robustness(
    model: nn.Module,
    task: Any,
    frequencies: Iterable[float],
    amplitude: float,
    split: str = "test",
    batch_size: int = 256,
    max_batches: int | None = None,
    seed: int = 0,
) -> list[dict[str, float | None]]:
    """Accuracy on a task split when every input sequence carries a sinusoid amplitude·sin(2π f t + φ).

    f in cycles per step (0.5 is the Nyquist frequency), t the step index, φ uniform on [0, 2π) per
    sequence, drawn from `seed` (the same phases at every frequency). The sinusoid is added on each
    sequence's valid steps (t < length): to every input channel for continuous inputs; for token
    inputs to the encoder output, through a forward hook on `model.encoder` that is removed
    afterwards (errors included). `task`: an `ssm.data.Task` of kind "classification" (pooled, or
    per-step labels counted on valid steps). `max_batches` evaluates only the first batches.
    The model runs in eval mode without gradients and gets its training flag back.
    Returns [{"frequency": None, "accuracy": clean}, {"frequency": f, "accuracy": ...}, ...] with
    accuracies as fractions in [0, 1].
    """
    if task.kind != "classification":
        raise ValueError(
            f"Fourier robustness measures accuracy: the task must be a classification task, got {task.kind!r}"
        )
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; valid splits: train, val, test")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    frequencies = [float(f) for f in frequencies]
    data = getattr(task, split)
    tokens = task.input_type == "tokens"
    device = next(model.parameters()).device
    encoder_noise: list[torch.Tensor] = []  # what the hook adds to the encoder output: (n_seq, L, 1)

    def add_noise_to_encoding(_module, _inputs, output):
        return output + encoder_noise[0].to(output.dtype) if encoder_noise else output

    def accuracy(frequency: float | None) -> float:
        generator = torch.Generator().manual_seed(seed)
        correct = total = 0
        for start in range(0, len(data.y), batch_size):
            if max_batches is not None and start // batch_size >= max_batches:
                break
            batch = slice(start, start + batch_size)
            x, y, lengths = (t[batch].to(device) for t in (data.x, data.y, data.lengths))
            flat_lengths = lengths.reshape(-1)  # (B,); for paired inputs (2B,), the encoder's order
            phase = 2 * math.pi * torch.rand(flat_lengths.shape[0], generator=generator, dtype=torch.float64)
            encoder_noise.clear()
            if frequency is not None:
                n_steps = x.shape[-1] if tokens else x.shape[1]
                wave = _sinusoid(n_steps, flat_lengths, amplitude, frequency, phase.to(device))
                if tokens:
                    encoder_noise.append(wave)
                else:
                    x = x + wave.to(x.dtype)
            hit, count = _correct(model(x, lengths), y, lengths)
            correct, total = correct + hit, total + count
        encoder_noise.clear()
        return correct / max(total, 1)

    was_training = model.training
    hook = model.encoder.register_forward_hook(add_noise_to_encoding) if tokens else None
    try:
        model.eval()
        with torch.no_grad():
            rows: list[dict[str, float | None]] = [{"frequency": None, "accuracy": accuracy(None)}]
            rows += [{"frequency": f, "accuracy": accuracy(f)} for f in frequencies]
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    return rows


# --- internals ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch's BLAS/LAPACK on one thread (module docstring: small matrices gain nothing from
    threads, and spinning threads on a busy CPU cost up to 100×). Restores the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _ssm_layers(model: nn.Module) -> list[SSMLayer]:
    if isinstance(model, SSMLayer):
        return [model]
    if hasattr(model, "ssm_layers"):
        return list(model.ssm_layers())
    raise TypeError(f"expected a SequenceModel or an SSM layer, got {type(model).__name__}")


def _check_max_lag(max_lag: int) -> None:
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer) or max_lag < 1:
        raise ValueError(f"max_lag must be a positive integer, got {max_lag!r}")


def _diagonal_system(Ab: ArrayLike, Bb: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ab, Bb) as complex128 CPU tensors of one shape (..., N/2), checked to be strictly stable."""
    Ab, Bb = (
        x.detach().to("cpu").resolve_conj().to(torch.complex128)
        if isinstance(x, torch.Tensor)
        else torch.as_tensor(np.asarray(x, dtype=np.complex128))
        for x in (Ab, Bb)
    )
    if Ab.dim() == 0 and Bb.dim() == 0:
        raise ValueError("expected Ab and Bb of shape (N/2,), got scalars")
    Ab, Bb = torch.broadcast_tensors(Ab, Bb)
    radius = float(Ab.abs().max()) if Ab.numel() else 0.0
    if not radius < 1:
        raise ValueError(
            f"the memory function needs a stable system, all |Ab| < 1; got max |Ab| = {radius:g}"
        )
    return Ab, Bb


def _covariance(Ab: torch.Tensor, Bb: torch.Tensor) -> torch.Tensor:
    """Closed-form Σ (..., N, N) of the real state [Re x, Im x] (module docstring)."""
    # Re c_i Re c_j = ½ Re(c_i c̄_j + c_i c_j),  Im c_i Im c_j = ½ Re(c_i c̄_j − c_i c_j),
    # Re c_i Im c_j = ½ Im(c_i c_j − c_i c̄_j),  each summed over τ as a geometric series.
    a_i, a_j, b_i, b_j = Ab[..., :, None], Ab[..., None, :], Bb[..., :, None], Bb[..., None, :]
    hermitian = b_i * b_j.conj() / (1 - a_i * a_j.conj())
    symmetric = b_i * b_j / (1 - a_i * a_j)
    re_re = (hermitian.real + symmetric.real) / 2
    im_im = (hermitian.real - symmetric.real) / 2
    re_im = (symmetric.imag - hermitian.imag) / 2
    return torch.cat([torch.cat([re_re, re_im], -1), torch.cat([re_im.transpose(-1, -2), im_im], -1)], -2)


def _whitening(sigma: torch.Tensor, rcond: float) -> tuple[torch.Tensor, torch.Tensor]:
    """W (..., N, N) with Wᴴ W = Σ⁺ (cutoff on the correlation scale) and the rank kept (...,).

    MF(τ) = ‖W b_τ‖²; rows of W for dropped directions are zero. Σ real symmetric or Hermitian.
    """
    if not rcond >= 0:
        raise ValueError(f"rcond must be ≥ 0, got {rcond}")
    sigma = (sigma + sigma.mH) / 2
    variance = torch.diagonal(sigma, dim1=-2, dim2=-1).real
    scale = torch.where(variance > 0, variance.clamp_min(torch.finfo(variance.dtype).tiny).rsqrt(), 0.0)
    correlation = scale[..., :, None] * sigma * scale[..., None, :]
    values, vectors = torch.linalg.eigh(correlation)
    keep = values > rcond * values.amax(-1, keepdim=True)
    inv_sqrt = torch.where(keep, values.clamp_min(torch.finfo(values.dtype).tiny).rsqrt(), 0.0)
    W = inv_sqrt[..., :, None] * vectors.mH * scale.to(vectors.dtype)[..., None, :]
    return W, keep.sum(-1)


def _powers(a: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """a^τ for τ = start … start + count − 1, (..., count), as a^(start + jT) · a^i with T ≈ √count:
    two short cumulative products instead of `count` complex powers (and exact at a = 0)."""
    T = math.isqrt(count - 1) + 1
    n_blocks = -(-count // T)
    ones = torch.ones_like(a)[..., None]
    inner = torch.cumprod(torch.cat([ones, a[..., None].expand(*a.shape, T - 1)], -1), -1)  # a^i
    first = torch.pow(a, start) if start > 0 else torch.ones_like(a)
    step = inner[..., -1] * a  # a^T
    outer = torch.cumprod(
        torch.cat([first[..., None], step[..., None].expand(*a.shape, n_blocks - 1)], -1), -1
    )
    return (outer[..., :, None] * inner[..., None, :]).reshape(*a.shape, n_blocks * T)[..., :count]


def _diagonal_mf(Ab: torch.Tensor, Bb: torch.Tensor, W: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """MF(τ) = ‖W b_τ‖² for τ in [start, stop): (..., stop − start), built in chunks of lags."""
    chunk = max(1, _CHUNK_ELEMENTS // max(1, 2 * Ab.numel()))
    parts = []
    for lo in range(start, stop, chunk):
        c = Bb[..., None] * _powers(Ab, lo, min(chunk, stop - lo))  # (..., N/2, lags)
        b = torch.cat([c.real, c.imag], -2)  # (..., N, lags)
        parts.append((W @ b).square().sum(-2))
    return torch.cat(parts, -1)


def _diagonal_tail(Ab: torch.Tensor, Bb: torch.Tensor, W: torch.Tensor, lags: int) -> torch.Tensor:
    """Σ_{τ ≥ lags} MF(τ) = trace(W Σ' Wᵀ), Σ' the covariance of the system (Ab, Bb·Ab^lags)."""
    tail_sigma = _covariance(Ab, Bb * torch.pow(Ab, lags))
    return torch.einsum("...ij,...jk,...ik->...", W, tail_sigma, W)


def _dense_mf(A: torch.Tensor, b: torch.Tensor, max_lag: int, rcond: float) -> torch.Tensor:
    """MF per channel of dense systems A (H, N, N), b (H, N) (complex, any basis of the real state),
    (H, max_lag); NaN rows for channels that are not strictly stable."""
    A, b = A.to(torch.complex128), b.to(torch.complex128)
    # Smith's doubling: after k steps Σ holds the first 2^k terms of Σ_τ A^τ b bᴴ (A^τ)ᴴ and
    # power = A^(2^k); the tail left is power Σ powerᴴ, negligible once ‖power‖ < 1e-10.
    sigma, power = b[..., :, None] * b[..., None, :].conj(), A
    for _ in range(64):
        sigma = sigma + power @ sigma @ power.mH
        power = power @ power
        size = power.abs().amax((-2, -1))
        if bool(((size < 1e-10) | ~torch.isfinite(size)).all()):
            break
    stable = (size < 1e-10) & torch.isfinite(sigma).all(-1).all(-1)
    mf = torch.full((A.shape[0], max_lag), math.nan, dtype=torch.float64)
    if bool(stable.any()):
        A, b = A[stable], b[stable]
        W, _ = _whitening(sigma[stable], rcond)
        responses, power = b[..., None], A  # b_τ = A^τ b for τ < m, doubling m: [b_τ, A^m b_τ]
        while responses.shape[-1] < max_lag:
            responses = torch.cat([responses, power @ responses], -1)
            power = power @ power
        mf[stable] = (W @ responses[..., :max_lag]).abs().square().sum(-2)
    return mf


def _mean_max(values: torch.Tensor) -> dict[str, float | None]:
    if values.numel() == 0:
        return {"mean": None, "max": None}
    return {"mean": float(values.mean()), "max": float(values.max())}


def _drift_summary(delta: torch.Tensor, size: torch.Tensor) -> dict[str, float | None]:
    if delta.numel() == 0:
        return {"mean": None, "max": None, "relative": None}
    mean, scale = float(delta.mean()), float(size.mean())
    return {"mean": mean, "max": float(delta.max()), "relative": mean / scale if scale > 0 else None}


def _sinusoid(
    n_steps: int, lengths: torch.Tensor, amplitude: float, frequency: float, phase: torch.Tensor
) -> torch.Tensor:
    """amplitude·sin(2π f t + φ) on each sequence's valid steps t < length, 0 after: (n_seq, L, 1)."""
    t = torch.arange(n_steps, device=lengths.device, dtype=torch.float64)
    wave = amplitude * torch.sin(2 * math.pi * frequency * t + phase[:, None])
    return (wave * (t < lengths[:, None]))[..., None]


def _correct(logits: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> tuple[int, int]:
    """(number correct, number counted): per sequence for pooled outputs; per valid step for
    sequence outputs (logits (B, L, K), y (B, L))."""
    hit = logits.argmax(-1) == y
    if hit.dim() == 1:
        return int(hit.sum()), hit.numel()
    valid = torch.arange(hit.shape[1], device=hit.device)[None, :] < lengths.reshape(-1, 1)
    return int((hit & valid).sum()), int(valid.sum())
