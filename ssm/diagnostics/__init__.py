"""Measurements that explain a trained SSM (REFERENCE.md §2–§4).

- `memory`: the analytic and empirical memory function MF(τ) and capacity MC of linear state
  systems — the math, on (Ab, Bb) arrays.
- `layers`: the same for the SSM layers of a model, read through `SSMLayer.discrete_system()`;
  eigenvalues, dt and |Ab| and their drift; the gradient-over-weight ratio; `layer_arrays`, all of
  it as plain JSON-able arrays.
- `fourier`: accuracy under Fourier-mode input noise.

Everything is importable from `ssm.diagnostics` directly.
"""

from .fourier import fourier_noise_robustness
from .layers import (
    DRIFT_QUANTITIES,
    GradOverWeightAverage,
    LayerMemory,
    eigenvalue_drift,
    eigenvalues,
    grad_over_weight,
    layer_arrays,
    model_memory,
    model_memory_functions,
    spectra,
)
from .memory import (
    DEFAULT_RCOND,
    DEFAULT_TAIL_TOL,
    MAX_SUMMED_LAGS,
    empirical_memory_function,
    memory_capacity,
    memory_function,
    state_covariance,
)

__all__ = [
    "DEFAULT_RCOND",
    "DEFAULT_TAIL_TOL",
    "DRIFT_QUANTITIES",
    "MAX_SUMMED_LAGS",
    "GradOverWeightAverage",
    "LayerMemory",
    "eigenvalue_drift",
    "eigenvalues",
    "empirical_memory_function",
    "fourier_noise_robustness",
    "grad_over_weight",
    "layer_arrays",
    "memory_capacity",
    "memory_function",
    "model_memory",
    "model_memory_functions",
    "spectra",
    "state_covariance",
]
