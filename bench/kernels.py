"""The Triton kernels against their PyTorch references on a CUDA device: time, peak memory, bandwidth.

Issue 8, §3. For each size (H, N, L) and each kernel, forward and forward+backward:

- `s4d_kernel`: λ, B, C complex64 (H, N/2), dt (H,) → K (H, L); gradients for λ, B, C, dt.
- `cauchy`: as S4 calls it, v, w complex64 (H, N) (both halves of the conjugate pairs) and z the
  L/2 + 1 roots of unity → (H, L/2 + 1); gradients for v and w.
- `linear_scan`: as S5 calls it, a time-invariant a (N/2,) and b (batch, L, N/2) complex64 → x;
  gradients for a and b. H does not enter S5's scan; `--batch` sets its batch size.

Time: the median of `--repeats` runs after `--warmup` runs, each timed with CUDA events.
Peak memory: `torch.cuda.max_memory_allocated` during one run, minus what was allocated before it
(the inputs), in MiB.
Bandwidth: the bytes the computation must move at least — read each input and write each output
once (forward), plus read the output gradient and write the input gradients (backward) — divided by
the Triton kernel's time, against the device's peak (`PEAK_GBS` by device name, or `--peak-gbs`).
The S4D and Cauchy kernels do O(N) arithmetic per output and are compute-bound, so their fraction of
peak bandwidth is low by nature; the scan moves O(1) bytes per operation and is bandwidth-bound.

    python bench/kernels.py                     # the three sizes of the issue
    python bench/kernels.py --sizes 256,64,2048 --repeats 10 --peak-gbs 3350
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

SIZES = [(256, 64, 1024), (256, 64, 4096), (256, 64, 16384)]

# Peak DRAM bandwidth in GB/s by a substring of `torch.cuda.get_device_name()` (first match wins).
PEAK_GBS = [
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5, HBM3
    ("GH200", 4000.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100", 1555.0),  # 40 GB
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10", 600.0),
    ("RTX 4090", 1008.0),
    ("RTX 3090", 936.0),
    ("V100", 900.0),
    ("T4", 320.0),
]
MIB = 2**20
DEVICE = "cuda"


@dataclass
class Problem:
    """One kernel call: `run(impl, inputs)` returns the output; `bytes_fwd`/`bytes_bwd` are the least
    traffic of the forward and of the backward."""

    kernel: str
    size: str
    inputs: list[torch.Tensor]
    run: Callable[[object, list[torch.Tensor]], torch.Tensor]
    bytes_fwd: int
    bytes_bwd: int


def trainable(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.requires_grad_() for t in tensors]


def make_problems(H: int, N: int, L: int, batch: int, device: str) -> list[Problem]:
    N2 = N // 2
    c64 = torch.complex64

    def complex_randn(*shape):
        return torch.randn(*shape, dtype=c64, device=device)

    size = f"{H}×{N}×{L}"
    # S4D: λ in the S4D-Lin range, dt log-uniform in [1e-3, 1e-1].
    lam = torch.complex(-0.5 * torch.ones(H, N2), math.pi * torch.arange(N2).float().expand(H, N2)).to(device)
    dt = torch.exp(torch.empty(H).uniform_(math.log(1e-3), math.log(1e-1))).to(device)
    s4d = Problem(
        "s4d_kernel", size, trainable(lam, complex_randn(H, N2), complex_randn(H, N2), dt),
        lambda impl, x: impl.s4d_kernel(*x, L),
        bytes_fwd=4 * H * L + 3 * 8 * H * N2, bytes_bwd=4 * H * L + 3 * 8 * H * N2,
    )  # fmt: skip
    # Cauchy as in S4's DPLR kernel: poles inside the unit disc, z at the roots of unity.
    Lz = L // 2 + 1
    z = torch.exp(-2j * math.pi * torch.arange(Lz) / L).to(c64).to(device)
    w = torch.complex(-torch.rand(H, N), torch.randn(H, N)).to(c64).to(device)
    cauchy = Problem(
        "cauchy", size, [*trainable(complex_randn(H, N)), z, *trainable(w)],  # z is fixed in S4
        lambda impl, x: impl.cauchy(*x),
        bytes_fwd=8 * (H * Lz + 2 * H * N + Lz), bytes_bwd=8 * (H * Lz + 2 * H * N + Lz),
    )  # fmt: skip
    # S5: |a| < 1, b (batch, L, N/2).
    a = torch.polar(torch.rand(N2) * 0.5 + 0.49, torch.rand(N2) * 2 * math.pi).to(device)
    scan = Problem(
        "linear_scan", f"{batch}×{L}×{N2} (B×L×P)", trainable(a, complex_randn(batch, L, N2)),
        lambda impl, x: impl.linear_scan(*x),
        # forward: read b, write x; backward: read grad x and x, write grad b.
        bytes_fwd=8 * 2 * batch * L * N2, bytes_bwd=8 * 3 * batch * L * N2,
    )  # fmt: skip
    return [s4d, cauchy, scan]


def measure(step: Callable[[], object], warmup: int, repeats: int) -> tuple[float, float]:
    """(median milliseconds, peak MiB above what was allocated before) of `step` on the current device."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return statistics.median(times), (torch.cuda.max_memory_allocated() - before) / MIB


def steps(problem: Problem, impl) -> dict[str, Callable[[], object]]:
    """The forward and the forward+backward of `problem` under `impl` (a module with the kernels)."""
    trainable = [x for x in problem.inputs if x.requires_grad]

    def forward():
        with torch.no_grad():
            return problem.run(impl, problem.inputs)

    def forward_backward():
        out = problem.run(impl, problem.inputs)
        return torch.autograd.grad(out, trainable, torch.ones_like(out))

    return {"fwd": forward, "fwd+bwd": forward_backward}


def peak_bandwidth(name: str, override: float | None) -> float | None:
    if override is not None:
        return override
    return next((gbs for key, gbs in PEAK_GBS if key in name), None)


def cell(value: float | None, fmt: str) -> str:
    return "—" if value is None or math.isnan(value) else format(value, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", help="H,N,L triples (default: the issue's three)")
    parser.add_argument("--batch", type=int, default=16, help="batch size of the scan (default 16)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--peak-gbs", type=float, help="the device's peak memory bandwidth in GB/s")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/kernels.py: no CUDA device here; the Triton kernels are benchmarked on a GPU only.")
        return 0
    try:
        from ssm.kernels import reference
        from ssm.kernels import triton as triton_kernels
    except ImportError as err:
        print(f"bench/kernels.py: the Triton kernels do not import ({err}); pip install triton")
        return 1
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes] if args.sizes else SIZES
    device_name = torch.cuda.get_device_name()
    peak = peak_bandwidth(device_name, args.peak_gbs)
    print(f"device: {device_name}; peak bandwidth: {cell(peak, '.0f')} GB/s; torch {torch.__version__}")
    print(
        f"median of {args.repeats} runs after {args.warmup} warmup runs; fp32/complex64; ratio = torch / triton"
    )
    header = (
        f"{'kernel':<12} {'size':<22} {'pass':<8} {'triton ms':>10} {'torch ms':>10} {'speedup':>8} "
        f"{'triton MiB':>11} {'torch MiB':>10} {'mem ratio':>9} {'GB/s':>8} {'% peak':>7}"
    )
    print(header)
    print("-" * len(header))
    for H, N, L in sizes:
        torch.manual_seed(0)
        for problem in make_problems(H, N, L, args.batch, DEVICE):
            triton_steps, torch_steps = steps(problem, triton_kernels), steps(problem, reference)
            for name in ("fwd", "fwd+bwd"):
                t_ms, t_mib = measure(triton_steps[name], args.warmup, args.repeats)
                try:
                    r_ms, r_mib = measure(torch_steps[name], args.warmup, args.repeats)
                except torch.cuda.OutOfMemoryError:
                    r_ms = r_mib = math.nan
                torch.cuda.empty_cache()
                moved = problem.bytes_fwd + (problem.bytes_bwd if name == "fwd+bwd" else 0)
                gbs = moved / (t_ms * 1e-3) / 1e9
                print(
                    f"{problem.kernel:<12} {problem.size:<22} {name:<8} {t_ms:>10.3f} {cell(r_ms, '.3f'):>10} "
                    f"{cell(r_ms / t_ms, '.2f'):>8} {t_mib:>11.1f} {cell(r_mib, '.1f'):>10} "
                    f"{cell(r_mib / max(t_mib, 1e-9), '.2f'):>9} {gbs:>8.1f} "
                    f"{cell(100 * gbs / peak if peak else None, '.1f'):>7}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
