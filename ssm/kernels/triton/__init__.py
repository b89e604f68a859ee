"""Triton kernels for the SSM hot paths, beside the PyTorch references they are tested against.

- `s4d_kernel`: S4D's Vandermonde kernel, tiles over (h, l) summing over n (`vandermonde.py`).
- `cauchy`: the Cauchy kernel, tiles over (m, l) summing over n (`cauchy.py`); `cauchy_sums`, its
  form for S4's DPLR kernel (`ssm.kernels.dplr`).
- `linear_scan`: S5's complex linear scan, reduce-then-scan over chunks of time (`scan.py`).

Each is a `torch.autograd.Function` with Triton forward and backward kernels, computing in fp32.
On CUDA tensors they are compiled; on CPU they run under Triton's interpreter, which must be chosen
(TRITON_INTERPRET=1) before this package is imported. `ssm.kernels` dispatches here (`backend()`).
"""

import triton  # noqa: F401 — `ssm.kernels` treats an ImportError here as "no Triton backend"

from .cauchy import cauchy, cauchy_sums
from .scan import linear_scan
from .vandermonde import s4d_kernel

__all__ = ["cauchy", "cauchy_sums", "linear_scan", "s4d_kernel"]
