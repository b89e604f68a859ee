"""SSM kernels: the convolution kernels of S4D and S4, the causal FFT convolution and S5's scan.

Each public function has a PyTorch reference (`ssm.kernels.reference`). On CUDA tensors a Triton
version is used when one exists and Triton imports; `SSMBENCH_KERNELS=torch|triton` forces a choice
and `backend()` says which one runs.
"""

from __future__ import annotations

import functools
import os

import torch

from . import dplr, reference
from .reference import DISCRETIZATIONS, discretize, fft_conv, vandermonde_kernel

BACKENDS = ("torch", "triton")


@functools.cache
def _triton_module():
    try:
        from . import triton as triton_kernels
    except ImportError:
        return None
    return triton_kernels


def backend(device: torch.device | str | None = None) -> str:
    """The kernel backend used for tensors on `device` (default: CUDA if available, else CPU).

    `SSMBENCH_KERNELS` overrides: "torch" always; "triton" wherever Triton imports (on CPU that is
    Triton's interpreter, `TRITON_INTERPRET=1` — slow, for tests). Otherwise Triton on CUDA, else torch.
    """
    forced = os.environ.get("SSMBENCH_KERNELS", "").strip().lower()
    if forced and forced not in BACKENDS:
        raise ValueError(f"SSMBENCH_KERNELS={forced!r} is not a backend; valid: {', '.join(BACKENDS)}")
    if forced == "torch":
        return "torch"
    if forced == "triton":
        if _triton_module() is None:
            raise RuntimeError(
                "SSMBENCH_KERNELS=triton but the Triton kernels cannot be imported (pip install triton)"
            )
        return "triton"
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # The device is checked first: a CPU run never imports Triton, whose kernels it would not use.
    if torch.device(device).type != "cuda":
        return "torch"
    return "triton" if _triton_module() is not None else "torch"


def _impl(name: str, tensor: torch.Tensor):
    module = _triton_module() if backend(tensor.device) == "triton" else None
    return getattr(module, name, None) or getattr(reference, name)


def s4d_kernel(lam, B, C, dt, L: int, method: str = "zoh") -> torch.Tensor:
    """S4D kernel (H, L) from lam, B, C complex (H, N/2) and dt (H,); see `reference.s4d_kernel`."""
    return _impl("s4d_kernel", lam)(lam, B, C, dt, L, method)


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_k = a_k x_{k−1} + b_k along dim 1 of (B, L, P); see `reference.linear_scan`."""
    return _impl("linear_scan", b)(a, b)


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_n v[..., n] / (z[l] − w[..., n]); see `reference.cauchy`."""
    return _impl("cauchy", v)(v, z, w)


def dplr_kernel(lam, P, B, C, dt, L: int) -> torch.Tensor:
    """S4 (DPLR, bilinear) kernel (H, L), the contract of `reference.dplr_kernel`, computed by
    `dplr.dplr_kernel`: its Cauchy sums run in Triton where the backend is "triton", else in PyTorch."""
    triton_kernels = _triton_module() if backend(lam.device) == "triton" else None
    sums = triton_kernels.cauchy_sums if triton_kernels is not None else dplr.cauchy_sums
    return dplr.dplr_kernel(lam, P, B, C, dt, L, sums)


__all__ = [
    "BACKENDS",
    "DISCRETIZATIONS",
    "backend",
    "cauchy",
    "discretize",
    "dplr_kernel",
    "fft_conv",
    "linear_scan",
    "s4d_kernel",
    "vandermonde_kernel",
]
