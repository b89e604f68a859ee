"""Where the Triton kernels can run, and which inputs they take.

The kernels compute in float32 (complex64 as real/imaginary planes). Float64 inputs go to the PyTorch
reference instead: a silent drop to fp32 would break the float64 tests (REFERENCE.md §1, 1e-10).
"""

from __future__ import annotations

import torch
from triton.runtime.interpreter import InterpretedFunction

_FP64 = (torch.float64, torch.complex128)


def takes_fp32(*tensors: torch.Tensor) -> bool:
    """True when no input is float64/complex128 and none is empty, i.e. the fp32 kernels apply."""
    return all(t.dtype not in _FP64 and t.numel() > 0 for t in tensors)


def check_runnable(kernel, tensor: torch.Tensor) -> None:
    """Raise a clear error where `kernel` cannot run on `tensor`'s device.

    A compiled kernel needs a CUDA tensor; on CPU only Triton's interpreter runs it, and that is chosen
    when the kernel is defined: TRITON_INTERPRET=1 must be set before `ssm.kernels.triton` is imported.
    """
    if tensor.device.type != "cuda" and not isinstance(kernel, InterpretedFunction):
        raise RuntimeError(
            f"the Triton kernels need a CUDA tensor (got one on {tensor.device}); to run them on CPU, "
            "set TRITON_INTERPRET=1 before ssm.kernels.triton is first imported"
        )
