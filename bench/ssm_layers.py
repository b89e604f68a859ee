"""Forward+backward time and peak memory of the S4, S4D and S5 layers against naive baselines.

Issue 3, §4 and issue 18, §3. For each size (H, N, L) every layer runs forward+backward on a
(batch, L, H) input on the current device (CUDA if available, else CPU). Each row compares a layer
with another variant measured in the same run:

- S4D against S4D with its kernel computed by `vandermonde_kernel`: the materialized (H, N/2, L)
  Vandermonde product that the state-spaces/s4 reference code uses. A second row times the kernel
  alone (`layer.kernel(L)` forward+backward), to separate the formulation from the rest of the layer.
- S4 against S4D of the same size: not the same function, so no output difference; the ratios are
  what S4's low-rank term costs over a diagonal SSM (issue 18's targets: ≤ 5× the time, ≤ 10× the
  peak memory at H=256, N=64, L=4096). A second row times S4's kernel alone against
  `reference.dplr_kernel`, Algorithm 1 as written with materialized complex128 Cauchy matrices; its
  "max rel. diff" is the fast fp32 kernel's distance from that float64 computation.
- S5 against S5 with its parallel scan replaced by a sequential Python loop over time.

Time: median over up to `--repeats` timed forward+backward passes after `--warmup` untimed ones; a
variant stops early once its timed passes have used `--budget` seconds (at least one pass). A layer
and its baseline alternate pass by pass, so load from other processes falls on both alike.
The sequential S5 loop above L = 4096 gets one pass and no warmup (about a minute per pass on 2 CPUs).

Peak memory: on CUDA `torch.cuda.max_memory_allocated`; on CPU each (row, variant, size) runs in a
fresh subprocess that, after the warmup, resets the kernel's peak-RSS mark (/proc/self/clear_refs)
and reports VmHWM − VmRSS over one forward+backward pass. glibc is told to serve every allocation
of 64 KiB or more with mmap (MALLOC_MMAP_THRESHOLD_), so a freed tensor leaves the RSS and a tensor
of the measured pass cannot hide in heap memory kept from the warmup.

    python bench/ssm_layers.py                  # the three sizes of the issue (15-25 minutes on 2 CPUs)
    python bench/ssm_layers.py --quick          # a smoke run in seconds
    python bench/ssm_layers.py --sizes 64,32,2048 --repeats 3 --no-memory
    python bench/ssm_layers.py --sizes 256,64,4096 --only s4 s4-kernel   # issue 18's S4 targets
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ssm.kernels import backend, reference, vandermonde_kernel
from ssm.layers import S4, S4D, S5, SSMLayer
from ssm.layers.base import as_complex

SIZES = ((128, 64, 1024), (256, 64, 4096), (64, 64, 16384))
QUICK_SIZES = ((16, 16, 512),)
SEQUENTIAL_FULL_REPEATS_MAX_L = 4096  # above this the sequential S5 loop gets 1 pass, no warmup
# The targets (§4): S4D vs materialized Vandermonde at these lengths; S5 scan vs loop at the last.
S4D_TARGET_LENGTHS = (4096, 16384)
S4D_TARGET_SPEEDUP = 2.0
S5_TARGET_LENGTH = 16384
S5_TARGET_SPEEDUP = 10.0
# Issue 18 §3: S4 within these multiples of S4D's time and peak memory at this size.
S4_TARGET_SIZE = (256, 64, 4096)
S4_TARGET_TIME_MULTIPLE = 5.0
S4_TARGET_MEMORY_MULTIPLE = 10.0
MB = 2**20

Size = tuple[int, int, int]


# --- the baselines: the library layers with one piece replaced ------------------------------------
class S4DVandermonde(S4D):
    """S4D whose kernel is the materialized (H, N/2, L) Vandermonde product (`vandermonde_kernel`)."""

    def _kernels(self, L: int) -> list[torch.Tensor]:
        lam, dt, B = self.eig(), torch.exp(self.log_dt), as_complex(self.B)
        return [vandermonde_kernel(lam, B, as_complex(C), dt, L, self.discretization) for C in self.C]


class S4MaterializedCauchy(S4):
    """S4 whose kernel is `reference.dplr_kernel`: Algorithm 1 with (H, N, L/2+1) complex128 Cauchy matrices."""

    def _kernels(self, L: int) -> list[torch.Tensor]:
        lam, dt, P, B = self.eig(), torch.exp(self.log_dt), as_complex(self.P), as_complex(self.B)
        return [reference.dplr_kernel(lam, P, B, as_complex(C), dt, self.l_max)[:, :L] for C in self.C]


class S5Sequential(S5):
    """S5 whose state recurrence x_k = Āx_{k−1} + B̄u_k runs as a Python loop over time, not a scan."""

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        if self.bidirectional:
            raise ValueError("the sequential baseline covers the causal layer only")
        Ab, Bb = self._discrete()
        Bu = u.to(Bb.dtype) @ Bb.transpose(0, 1)  # (B L N2)
        x = Bu.new_zeros(Bu.shape[0], Bu.shape[2])
        states = []
        for k in range(Bu.shape[1]):
            x = Ab * x + Bu[:, k]
            states.append(x)
        C = as_complex(self.C)
        y = 2 * (torch.stack(states, 1) @ C[0].transpose(0, 1)).real
        return y + u * self.D


# name → constructor(H, N, L); a layer and its baseline built after the same seed have equal parameters.
VARIANTS: dict[str, Callable[[int, int, int], SSMLayer]] = {
    "s4d": lambda H, N, L: S4D(H, N),
    "s4d-vandermonde": lambda H, N, L: S4DVandermonde(H, N),
    "s4": lambda H, N, L: S4(H, N, l_max=L),
    "s4-cauchy": lambda H, N, L: S4MaterializedCauchy(H, N, l_max=L),
    "s5": lambda H, N, L: S5(H, N),
    "s5-sequential": lambda H, N, L: S5Sequential(H, N),
}


@dataclass(frozen=True)
class Row:
    """One table row: a library layer and, optionally, the variant it is compared with."""

    key: str  # what `--only` selects
    label: str
    variant: str
    baseline: str | None = None
    baseline_label: str = "—"
    kernel_only: bool = False  # time `layer.kernel(L)` forward+backward instead of the whole layer
    same_function: bool = True  # the baseline computes the same outputs (a max rel. diff applies)


ROWS = (
    Row("s4d", "S4D", "s4d", "s4d-vandermonde", "materialized Vandermonde"),
    Row(
        "s4d-kernel",
        "S4D kernel only",
        "s4d",
        "s4d-vandermonde",
        "materialized Vandermonde",
        kernel_only=True,
    ),
    Row("s4", "S4", "s4", "s4d", "S4D (not the same function)", same_function=False),
    Row("s4-kernel", "S4 kernel only", "s4", "s4-cauchy", "materialized Cauchy", kernel_only=True),
    Row("s5", "S5", "s5", "s5-sequential", "sequential loop"),
)
ROW_KEYS = tuple(row.key for row in ROWS)


# --- one workload, timed and measured --------------------------------------------------------------
class Workload:
    """A layer, its input and an output gradient; `step()` is one forward+backward pass."""

    def __init__(self, variant: str, size: Size, batch: int, device: torch.device, kernel_only: bool):
        H, N, L = size
        torch.manual_seed(0)
        self.layer = VARIANTS[variant](H, N, L).to(device)
        self.L, self.kernel_only, self.device = L, kernel_only, device
        self.u = torch.randn(batch, L, H, device=device, requires_grad=True)
        self.grad = torch.randn((H, L) if kernel_only else (batch, L, H), device=device)

    def step(self) -> torch.Tensor:
        self.layer.zero_grad(set_to_none=True)
        self.u.grad = None
        y = self.layer.kernel(self.L) if self.kernel_only else self.layer(self.u)
        y.backward(self.grad)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return y.detach()


@dataclass
class Timing:
    times: list[float] = field(default_factory=list)
    output: torch.Tensor | None = None

    @property
    def ms(self) -> float:
        return statistics.median(self.times) * 1e3


def passes_for(variant: str, L: int, args: argparse.Namespace) -> tuple[int, int]:
    """(warmup, timed passes) for a variant at length L."""
    if variant == "s5-sequential" and L > SEQUENTIAL_FULL_REPEATS_MAX_L:
        return 0, 1
    return args.warmup, args.repeats


def time_interleaved(
    variants: list[str], size: Size, row: Row, args: argparse.Namespace, device: torch.device
) -> dict[str, Timing]:
    """Forward+backward seconds of each variant, alternating passes between the variants."""
    work = {v: Workload(v, size, args.batch, device, row.kernel_only) for v in variants}
    plan = {v: passes_for(v, size[2], args) for v in variants}
    for v, (warmup, _) in plan.items():
        for _ in range(warmup):
            work[v].step()
    timing = {v: Timing() for v in variants}

    def wants_more(v: str) -> bool:
        return len(timing[v].times) < plan[v][1] and sum(timing[v].times) < args.budget

    while any(map(wants_more, variants)):
        for v in filter(wants_more, variants):
            start = time.perf_counter()
            timing[v].output = work[v].step()
            timing[v].times.append(time.perf_counter() - start)
    return timing


def _proc_status_mb(name: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{name}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024 / MB


def peak_memory_in_process(
    variant: str, size: Size, batch: int, warmup: int, kernel_only: bool, device: torch.device
) -> float:
    """Peak MB above the memory already held, over one forward+backward pass after `warmup` passes."""
    work = Workload(variant, size, batch, device, kernel_only)
    for _ in range(warmup):
        work.step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        work.step()
        return (torch.cuda.max_memory_allocated(device) - before) / MB
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:  # no resettable peak: the best we have is the process's peak so far
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        work.step()
        return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before, 0.0)
    before = _proc_status_mb("VmRSS")
    work.step()
    # The kernel's RSS counters are batched per CPU (error ≲ 1 MB): a tiny pass can read slightly < 0.
    return max(_proc_status_mb("VmHWM") - before, 0.0)


def peak_memory(variant: str, size: Size, row: Row, args: argparse.Namespace, device: torch.device) -> float:
    """`peak_memory_in_process`; on CPU in a fresh subprocess (see the module docstring)."""
    warmup, _ = passes_for(variant, size[2], args)
    if device.type == "cuda":
        return peak_memory_in_process(variant, size, args.batch, warmup, row.kernel_only, device)
    request = {
        "variant": variant,
        "size": size,
        "batch": args.batch,
        "warmup": warmup,
        "kernel_only": row.kernel_only,
        "threads": torch.get_num_threads(),
    }
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-worker", json.dumps(request)],
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {variant} {size} failed:\n{done.stderr}")
    return float(done.stdout.split()[-1])


def memory_worker(request: str) -> None:
    r = json.loads(request)
    torch.set_num_threads(r["threads"])
    size = tuple(r["size"])
    mb = peak_memory_in_process(
        r["variant"], size, r["batch"], r["warmup"], r["kernel_only"], torch.device("cpu")
    )
    print(f"{mb:.3f}")


# --- the table -------------------------------------------------------------------------------------
@dataclass
class Measured:
    row: Row
    size: Size
    ms: float
    mb: float | None
    passes: int
    base_ms: float | None = None
    base_mb: float | None = None
    base_passes: int | None = None
    rel_diff: float | None = None  # max |ours − baseline| / max |ours| over the outputs

    @property
    def speedup(self) -> float | None:
        return _ratio(self.base_ms, self.ms)

    @property
    def memory_ratio(self) -> float | None:
        return _ratio(self.base_mb, self.mb)


def _ratio(baseline: float | None, ours: float | None) -> float | None:
    return None if baseline is None or ours is None or ours <= 0 else baseline / ours


def measure_row(row: Row, size: Size, args: argparse.Namespace, device: torch.device) -> Measured:
    H, N, L = size
    print(f"  {row.label:<16} H={H} N={N} L={L} …", file=sys.stderr, flush=True)
    variants = [row.variant] + ([row.baseline] if row.baseline else [])
    timing = time_interleaved(variants, size, row, args, device)
    memory = {v: peak_memory(v, size, row, args, device) if args.memory else None for v in variants}
    ours = timing[row.variant]
    m = Measured(row, size, ours.ms, memory[row.variant], len(ours.times))
    if row.baseline:
        base = timing[row.baseline]
        m.base_ms, m.base_mb, m.base_passes = base.ms, memory[row.baseline], len(base.times)
    if row.baseline and row.same_function:
        m.rel_diff = ((base.output - ours.output).abs().max() / ours.output.abs().max()).item()
    return m


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


HEADER = [
    *("layer", "H", "N", "L", "fwd+bwd ms", "peak MB"),
    *("baseline", "baseline ms", "baseline MB", "speed ×", "memory ×", "passes", "max rel. diff"),
]
TEXT_COLUMNS = {0, 6}  # left-aligned; the rest are numbers


def _cells(m: Measured) -> list[str]:
    passes = str(m.passes) if m.base_passes is None else f"{m.passes}/{m.base_passes}"
    rel_diff = "—" if m.rel_diff is None else f"{m.rel_diff:.1e}"
    return [
        m.row.label,
        *map(str, m.size),
        _fmt(m.ms),
        _fmt(m.mb),
        m.row.baseline_label,
        _fmt(m.base_ms),
        _fmt(m.base_mb),
        _fmt(m.speedup, 2),
        _fmt(m.memory_ratio, 2),
        passes,
        rel_diff,
    ]


def table(results: list[Measured]) -> str:
    """The results as a Markdown table, padded so that it also reads as plain text."""
    rows = [HEADER, *map(_cells, results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]

    def line(cells: list[str]) -> str:
        padded = (
            c.ljust(w) if i in TEXT_COLUMNS else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = (("-" * (w + 2)) if i in TEXT_COLUMNS else ("-" * (w + 1) + ":") for i, w in enumerate(widths))
    return "\n".join([line(HEADER), "|" + "|".join(rule) + "|", *map(line, rows[1:])])


def _verdict(x: float | None, threshold: float, at_most: bool = False) -> str:
    if x is None:
        return "not measured"
    return f"{'yes' if (x <= threshold if at_most else x >= threshold) else 'no'} ({x:.2f}×)"


def _inverse(x: float | None) -> float | None:
    return None if not x else 1 / x


def s4_target_lines(results: list[Measured]) -> list[str]:
    """Issue 18 §3: S4 against S4D (time, peak memory) and the fast kernel against float64 Algorithm 1."""
    by_key = {(m.row.key, m.size): m for m in results}
    size = S4_TARGET_SIZE
    where = f"at (H, N, L) = {size}"
    s4 = by_key.get(("s4", size))
    time_multiple, memory_multiple = _inverse(s4 and s4.speedup), _inverse(s4 and s4.memory_ratio)
    kernel = by_key.get(("s4-kernel", size))
    numerics = (
        "not measured"
        if kernel is None
        else f"{'yes' if kernel.rel_diff <= 1e-5 else 'no'} ({kernel.rel_diff:.1e})"
    )
    return [
        f"S4 fwd+bwd time ≤ {S4_TARGET_TIME_MULTIPLE:g}× S4D's {where}: "
        + _verdict(time_multiple, S4_TARGET_TIME_MULTIPLE, at_most=True),
        f"S4 peak memory ≤ {S4_TARGET_MEMORY_MULTIPLE:g}× S4D's {where}: "
        + _verdict(memory_multiple, S4_TARGET_MEMORY_MULTIPLE, at_most=True),
        f"S4 kernel within 1e-5 of float64 Algorithm 1 {where}: {numerics}",
    ]


def target_lines(results: list[Measured]) -> list[str]:
    """One line per target of issue 3 (§4) and issue 18 (§3)."""
    by_key = {(m.row.label, m.size[2]): m for m in results}
    lines = []
    s4d = [by_key.get(("S4D", L)) for L in S4D_TARGET_LENGTHS]
    for L, m in zip(S4D_TARGET_LENGTHS, s4d, strict=True):
        verdict = _verdict(m and m.speedup, S4D_TARGET_SPEEDUP)
        lines.append(f"S4D ≥ {S4D_TARGET_SPEEDUP:g}× materialized Vandermonde at L={L}: {verdict}")
    memory = [m and m.memory_ratio for m in s4d]
    where = f"at L={' and '.join(map(str, S4D_TARGET_LENGTHS))}"
    if None in memory:
        verdict = "not measured"
    else:
        verdict = (
            f"{'yes' if all(x > 1 for x in memory) else 'no'} ({', '.join(f'{x:.2f}×' for x in memory)})"
        )
    lines.append(f"S4D lower peak memory than materialized Vandermonde {where}: {verdict}")
    s5 = by_key.get(("S5", S5_TARGET_LENGTH))
    verdict = _verdict(s5 and s5.speedup, S5_TARGET_SPEEDUP)
    lines.append(f"S5 scan ≥ {S5_TARGET_SPEEDUP:g}× sequential at L={S5_TARGET_LENGTH}: {verdict}")
    return lines + s4_target_lines(results)


# --- command line ----------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def parse_size(text: str) -> Size:
    try:
        H, N, L = (int(x) for x in re.split(r"[,x]", text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is H,N,L (e.g. 128,64,1024), got {text!r}") from None
    return H, N, L


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=parse_size, nargs="+", help="H,N,L triples (default: the issue's three)"
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed passes per variant, at most (default 5)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes before timing (default 1)")
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds of timed passes per variant before stopping early"
    )
    parser.add_argument(
        "--memory", action=argparse.BooleanOptionalAction, default=True, help="measure peak memory"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=ROW_KEYS,
        metavar="ROW",
        help=f"measure only these rows ({', '.join(ROW_KEYS)})",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run that finishes in seconds")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or list(QUICK_SIZES)
        args.repeats = min(args.repeats, 2)
    args.sizes = args.sizes or list(SIZES)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(cores)
    if args.memory_worker:
        return memory_worker(args.memory_worker)

    sys.stdout.reconfigure(line_buffering=True)  # the header before the progress lines, in logs too
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    memory_method = (
        "torch.cuda.max_memory_allocated − memory_allocated over one pass"
        if device.type == "cuda"
        else "peak RSS increase (VmHWM − VmRSS) over one pass after warmup, fresh subprocess per measurement"
    )
    print(f"device: {device.type} ({name}), {cores} cores, torch {torch.__version__}")
    print(
        f"torch threads: {torch.get_num_threads()}; kernel backend: {backend(device)}; batch {args.batch}; float32"
    )
    print(
        f"time: median of ≤{args.repeats} forward+backward passes after {args.warmup} warmup, ≤{args.budget:g} s "
        f"of passes per variant, layer and baseline alternating (sequential S5 above L={SEQUENTIAL_FULL_REPEATS_MAX_L}: "
        "1 pass, no warmup)"
    )
    print(f"peak memory: {memory_method if args.memory else 'not measured (--no-memory)'}")
    print("timings are noisy on a shared machine; the claims are ratios within this one run")

    rows = [row for row in ROWS if not args.only or row.key in args.only]
    results = [measure_row(row, size, args, device) for size in args.sizes for row in rows]
    print()
    print(table(results))
    print()
    print("\n".join(target_lines(results)))


if __name__ == "__main__":
    main()
