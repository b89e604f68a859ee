"""Diagnostics of the SSM layers of a model: memory function and capacity, eigenvalues and their
drift, the gradient-over-weight ratio (REFERENCE.md §3, §4), and all of them as plain arrays.

Every layer is read through its public interface only: `discrete_system()` (Ab, Bb, C, dt — a
diagonal system for S4D and S5, the dense N×N one for S4) and `eigenvalues()` (λ; for S4 eig(A) of
the full state matrix A = Λ − P P*). Nothing here knows the layer types or redoes a discretization.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ssm.layers import sorted_eigenvalues

from .memory import DEFAULT_RCOND, check_max_lag, dense_memory, diagonal_memory, one_thread

# --- memory function and capacity of each layer (REFERENCE.md §4) ---------------------------------


@dataclass(frozen=True)
class LayerMemory:
    """One layer's memory, per input channel h (the state driven by channel h alone).

    function: float64 (channels, max_lag) — MF(τ), τ = 0 … max_lag − 1.
    capacity: float64 (channels,) — MC = Σ_τ MF(τ) over all lags: the sum over τ < max_lag plus its
      tail in closed form; the numerical rank of the state, N when controllable.
    truncated_capacity: float64 (channels,) — Σ_{τ<max_lag} MF(τ) only.
    Rows of channels whose system is not strictly stable are NaN.
    """

    function: np.ndarray
    capacity: np.ndarray

    @property
    def truncated_capacity(self) -> np.ndarray:
        return self.function.sum(-1)


def model_memory(model: nn.Module, max_lag: int, *, rcond: float = DEFAULT_RCOND) -> list[LayerMemory]:
    """MF and MC of every SSM layer of `model` (a `SequenceModel` or one layer), in float64.

    S4D: channel h is its own diagonal system (Ab[h], Bb[h]); S5: the shared state driven by input
    channel h, (Ab, Bb[h]); S4: the dense bilinear system of channel h (Σ by Smith's doubling).
    """
    check_max_lag(max_lag)
    results = []
    with torch.no_grad(), one_thread():
        for layer in ssm_layers(model):
            system = layer.discrete_system()
            if system.diagonal:
                Ab, Bb = torch.broadcast_tensors(system.Ab, system.Bb)  # (channels, N/2)
                mf, mc = diagonal_memory(Ab, Bb, max_lag, rcond)
            else:
                mf, mc = dense_memory(system.Ab, system.Bb, max_lag, rcond)
            results.append(LayerMemory(mf.numpy(), mc.numpy()))
    return results


def model_memory_functions(
    model: nn.Module, max_lag: int, *, rcond: float = DEFAULT_RCOND
) -> list[np.ndarray]:
    """MF per SSM layer and input channel: one float64 array (channels, max_lag) per layer
    (`model_memory`); NaN rows for channels that are not strictly stable."""
    return [memory.function for memory in model_memory(model, max_lag, rcond=rcond)]


# --- gradient-over-weight ratio (REFERENCE.md §3) -------------------------------------------------


def grad_over_weight(model: nn.Module, eps: float = 1e-12) -> dict[str, Any]:
    """The gradient-over-weight ratio r = |∂L/∂w| / |w| of the eigenvalue parameters (REFERENCE.md §3).

    w is `layer.eig.w`, the parameter under the reparameterization (Re λ = f(w)); ∂L/∂w is what is
    in `w.grad` now (the caller has run backward, and has not clipped yet). r is taken elementwise:
        {"layers": [{"mean": r̄, "max": r_max, "n": entries used, "n_excluded": k} or None, ...],
         "mean": r̄ over all layers' entries together, "max": r_max over them}
    A layer whose w is frozen (`train_eigenvalues=False`) or has no gradient is None. Entries with
    |w| ≤ `eps` have no finite ratio (w = 0 happens, e.g. `exp` at Re λ = −1): they are left out of
    the summaries and counted in "n_excluded". A summary over no entries is None. Plain floats.
    """
    layers: list[dict[str, Any] | None] = []
    pooled = []
    # One thread: the trainer calls this after every step, on a few thousand numbers; on a busy
    # CPU the intra-op threads spin, 0.04–0.4 s a call instead of 3 ms (bench/diagnostics.py).
    with one_thread():
        for layer in ssm_layers(model):
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


class GradOverWeightAverage:
    """The gradient-over-weight ratio averaged over training steps: `add(model)` after each backward
    (before gradient clipping), then `summary()`: {"mean": the mean over steps of each step's mean,
    "max": the mean over steps of each step's max, "layers": per layer the mean over steps of its
    mean (None for a layer without trainable eigenvalues)}; plain floats, None where nothing was seen."""

    def __init__(self):
        self.steps: list[dict[str, Any]] = []

    def add(self, model: nn.Module) -> None:
        self.steps.append(grad_over_weight(model))

    def summary(self) -> dict[str, Any]:
        def average(values):
            values = [v for v in values if v is not None]
            return sum(values) / len(values) if values else None

        n_layers = len(self.steps[0]["layers"]) if self.steps else 0
        per_layer = [[step["layers"][i] for step in self.steps] for i in range(n_layers)]
        return {
            "mean": average(step["mean"] for step in self.steps),
            "max": average(step["max"] for step in self.steps),
            "layers": [average(s["mean"] for s in layer if s is not None) for layer in per_layer],
        }


# --- eigenvalues, dt, Ab and their drift ----------------------------------------------------------


def eigenvalues(model: nn.Module) -> list[torch.Tensor]:
    """The continuous-time eigenvalues λ of each SSM layer: complex128 CPU tensors, detached.

    Shapes: S4D (H, N/2), S5 (N/2,) — one per conjugate pair; S4 (H, N) — eig(A) of the full state
    matrix A = Λ − P P*, all N, sorted by real then imaginary part (`S4.eigenvalues`).
    """
    with torch.no_grad(), one_thread():
        return [layer.eigenvalues().detach().to("cpu", torch.complex128) for layer in ssm_layers(model)]


def spectra(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Per SSM layer {"lam": λ (as `eigenvalues`), "dt": float64 step (H,) or (N/2,) for S5,
    "Ab": complex128 discrete eigenvalues — the diagonal Ab ((H, N/2) for S4D, (N/2,) for S5), or
    eig(Ab) (H, N) of S4's dense system, sorted like its λ}. Detached CPU tensors."""
    rows = []
    with torch.no_grad(), one_thread():
        for layer, lam in zip(ssm_layers(model), eigenvalues(model), strict=True):
            system = layer.discrete_system()
            Ab = system.Ab if system.diagonal else sorted_eigenvalues(system.Ab)
            rows.append(
                {
                    "lam": lam,
                    "dt": system.dt.detach().to("cpu", torch.float64),
                    "Ab": Ab.detach().to("cpu", torch.complex128),
                }
            )
    return rows


DRIFT_QUANTITIES = {
    "re_lambda": ("lam", torch.real),
    "im_lambda": ("lam", torch.imag),
    "dt": ("dt", torch.real),
    "abs_Ab": ("Ab", torch.abs),
}
"""What `eigenvalue_drift` compares: name → (the `spectra` key, the real quantity taken of it)."""


def eigenvalue_drift(initial: Sequence[Any], current: Sequence[Any]) -> dict[str, Any]:
    """How far the eigenvalues, dt and |Ab| moved, from two lists returned by `spectra(model)`.

    For each quantity q in Re λ, Im λ, dt and |Ab| ("re_lambda", "im_lambda", "dt", "abs_Ab"), the
    relative drift mean|q − q₀| / mean|q₀| (None when every q₀ is 0, e.g. Im λ of `real`), so a
    large Im λ does not hide a move of Re λ and dt is seen. Also "mean" and "max" of |λ − λ₀|.
    Returns {"layers": [{...}, ...], plus the same keys over all layers' entries together}; plain
    floats. Lists from `eigenvalues(model)` (λ only) are accepted: dt and |Ab| are then None.
    """
    if len(initial) != len(current):
        raise ValueError(f"initial has {len(initial)} layers, current has {len(current)}")
    before_rows, after_rows = ([_as_spectrum(x) for x in rows] for rows in (initial, current))
    for i, (before, after) in enumerate(zip(before_rows, after_rows, strict=True)):
        if before["lam"].shape != after["lam"].shape:
            raise ValueError(
                f"layer {i}: eigenvalue shapes differ, {tuple(before['lam'].shape)} vs {tuple(after['lam'].shape)}"
            )
    layers = [_drift(b, a) for b, a in zip(before_rows, after_rows, strict=True)]
    pooled = _drift(_flat(before_rows), _flat(after_rows)) if layers else _drift({}, {})
    return {"layers": layers, **pooled}


# --- everything as plain arrays (the figures' data) -----------------------------------------------


def layer_arrays(model: nn.Module, max_lag: int, *, rcond: float = DEFAULT_RCOND) -> list[dict[str, Any]]:
    """Per SSM layer, the diagnostics as JSON-able nested lists of numbers:

        {"eigenvalues": λ, "dt": dt, "Ab": discrete eigenvalues,     (as `spectra`)
         "memory_function": MF (channels, max_lag),                  (as `model_memory`)
         "memory_capacity": MC with its closed-form tail (channels,)}

    A complex number is a [re, im] pair, so λ of an S4D layer is (H, N/2, 2), of S5 (N/2, 2), of S4
    (H, N, 2). Numbers are rounded to 7 significant digits. memory_function[h][k] is MF at lag k = 0 … max_lag − 1 (lag 0: the current input),
    i.e. the max_lag lags τ = 1 … max_lag counted from 1. NaN (an unstable channel) is None.
    """
    memories = model_memory(model, max_lag, rcond=rcond)
    return [
        {
            "eigenvalues": _pairs(spectrum["lam"]),
            "dt": _plain(spectrum["dt"]),
            "Ab": _pairs(spectrum["Ab"]),
            "memory_function": _plain(memory.function),
            "memory_capacity": _plain(memory.capacity),
        }
        for spectrum, memory in zip(spectra(model), memories, strict=True)
    ]


# --- internals ------------------------------------------------------------------------------------


def ssm_layers(model: nn.Module) -> list[nn.Module]:
    """The SSM layers of a `SequenceModel` (its `ssm_layers()`), or [model] for a single layer."""
    if hasattr(model, "ssm_layers"):
        return list(model.ssm_layers())
    if hasattr(model, "discrete_system"):
        return [model]
    raise TypeError(f"expected a SequenceModel or an SSM layer, got {type(model).__name__}")


def _mean_max(values: torch.Tensor) -> dict[str, float | None]:
    if values.numel() == 0:
        return {"mean": None, "max": None}
    return {"mean": float(values.mean()), "max": float(values.max())}


def _as_spectrum(row: Any) -> dict[str, torch.Tensor]:
    if isinstance(row, dict):
        return {k: torch.as_tensor(v).detach().cpu() for k, v in row.items()}
    return {"lam": torch.as_tensor(row).detach().to("cpu", torch.complex128)}


def _flat(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = set.intersection(*(set(r) for r in rows))
    return {k: torch.cat([r[k].flatten() for r in rows]) for k in keys}


def _drift(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, float | None]:
    summary: dict[str, float | None] = {}
    for name, (key, part) in DRIFT_QUANTITIES.items():
        summary[name] = None
        if key not in before or key not in after or before[key].numel() == 0:
            continue
        q0, q = (part(s[key]).to(torch.float64).flatten() for s in (before, after))
        scale = float(q0.abs().mean())
        summary[name] = float((q - q0).abs().mean()) / scale if scale > 0 else None
    if "lam" in before and before["lam"].numel():
        summary.update(_mean_max((after["lam"] - before["lam"]).abs().flatten()))
    else:
        summary.update({"mean": None, "max": None})
    return summary


def _pairs(z: torch.Tensor) -> list:
    return _plain(torch.view_as_real(z.resolve_conj().to(torch.complex128).contiguous()).numpy())


def _plain(values: np.ndarray | torch.Tensor) -> Any:
    """Nested lists of Python floats rounded to 7 significant digits (float32's precision, which is
    what the parameters have; it halves the JSON), NaN as None (JSON has no NaN)."""

    def clean(x):
        if isinstance(x, list):
            return [clean(v) for v in x]
        return None if math.isnan(x) else float(f"{x:.7g}")

    return clean(values.tolist())
