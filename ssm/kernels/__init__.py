"""SSM kernels: the convolution kernels of S4D and S4, the causal FFT convolution and S5's scan.

Each public function has a PyTorch reference (`ssm.kernels.reference`). On CUDA tensors a Triton
version is used when one exists and Triton imports; `SSMBENCH_KERNELS=torch|triton` forces a choice
and `backend()` says which one runs.

Every entry point here computes in fp32 or better whatever the autocast state (`full_precision`):
under bf16 autocast the reference kernel's GEMM would otherwise run in bf16 (relative error ~1e-3,
and garbage for ill-conditioned initializations). Only the layers around the SSM may use bf16.
"""

from __future__ import annotations

import functools
import os

import torch

from . import dplr, reference
from .reference import DISCRETIZATIONS

BACKENDS = ("torch", "triton")

# Autocast's low-precision dtypes and what an SSM kernel computes them in instead.
_AT_LEAST_FP32 = {
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.complex32: torch.complex64,
}


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 (complex64) if it is in half or bfloat16 precision, else x unchanged."""
    return x.to(_AT_LEAST_FP32[x.dtype]) if x.dtype in _AT_LEAST_FP32 else x


def full_precision(fn):
    """Run `fn` with autocast off on its tensors' device and its half-precision tensor arguments in
    float32, so an SSM kernel never computes in bf16/fp16 (module docstring)."""

    def cast(x):
        return at_least_fp32(x) if isinstance(x, torch.Tensor) else x

    @functools.wraps(fn)
    def run(*args, **kwargs):
        tensors = [x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device, enabled=False):
            return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    return run


discretize = full_precision(reference.discretize)
fft_conv = full_precision(reference.fft_conv)
vandermonde_kernel = full_precision(reference.vandermonde_kernel)


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


@full_precision
def s4d_kernel(lam, B, C, dt, L: int, method: str = "zoh") -> torch.Tensor:
    """S4D kernel (H, L) from lam, B, C complex (H, N/2) and dt (H,); see `reference.s4d_kernel`."""
    return _impl("s4d_kernel", lam)(lam, B, C, dt, L, method)


@full_precision
def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_k = a_k x_{k−1} + b_k along dim 1 of (B, L, P); see `reference.linear_scan`."""
    return _impl("linear_scan", b)(a, b)


@full_precision
def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_n v[..., n] / (z[l] − w[..., n]); see `reference.cauchy`."""
    return _impl("cauchy", v)(v, z, w)


@full_precision
def dplr_kernel(lam, P, B, C, dt, L: int) -> torch.Tensor:
    """S4 (DPLR, bilinear) kernel (H, L), the contract of `reference.dplr_kernel`, computed by
    `dplr.dplr_kernel`: its Cauchy sums run in Triton where the backend is "triton", else in PyTorch."""
    triton_kernels = _triton_module() if backend(lam.device) == "triton" else None
    sums = triton_kernels.cauchy_sums if triton_kernels is not None else dplr.cauchy_sums
    return dplr.dplr_kernel(lam, P, B, C, dt, L, sums)


__all__ = [
    "BACKENDS",
    "DISCRETIZATIONS",
    "at_least_fp32",
    "backend",
    "cauchy",
    "discretize",
    "dplr_kernel",
    "fft_conv",
    "full_precision",
    "linear_scan",
    "s4d_kernel",
    "vandermonde_kernel",
]
