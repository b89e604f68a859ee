"""Cost of each per-epoch diagnostic next to one training step (ssm.diagnostics, issue 5).

    python bench/diagnostics.py                   # 4-layer S4D, d_model = d_state = 64, batch 32 × 1024
    python bench/diagnostics.py --layer s5 --n-test 128

Prints, for each diagnostic, its time, that time in training steps (one forward + backward pass of
a batch), and the number of steps an epoch needs for the diagnostic to stay under 10% of it. The
Fourier-robustness time is for `--n-test` test sequences at the five default frequencies plus the
clean pass; it grows linearly with the test set. Timings are medians of `--repeats` runs on the
current device, after one warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ssm import diagnostics
from ssm.config import DiagnosticsConfig, FourierConfig, ModelConfig
from ssm.data.base import SequenceDataset, Task
from ssm.model import SequenceModel


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layer", default="s4d", choices=["s4d", "s5", "s4"])
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--d-state", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--n-test", type=int, default=64, help="test sequences for Fourier robustness")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = ModelConfig(layer=args.layer, d_model=args.d_model, d_state=args.d_state, n_layers=args.n_layers)
    model = SequenceModel(config, 1, 10, l_max=args.length).to(device)
    x = torch.randn(args.batch, args.length, 1, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)

    def training_step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    step = median_seconds(training_step, args.repeats)  # leaves gradients in .grad for grad_over_weight
    initial = diagnostics.eigenvalues(model)
    test = SequenceDataset(
        torch.randn(args.n_test, args.length, 1),
        torch.randint(0, 10, (args.n_test,)),
        torch.full((args.n_test,), args.length),
    )
    task = Task("bench", test, test, test, "classification", 10, 1, args.length, "continuous")
    fourier = FourierConfig()
    config_lag = DiagnosticsConfig().memory_max_lag  # the trainer's default
    measured = {
        f"memory functions, max_lag={config_lag}": lambda: diagnostics.model_memory_functions(
            model, config_lag
        ),
        "memory functions, max_lag=512": lambda: diagnostics.model_memory_functions(model, 512),
        "gradient-over-weight ratio": lambda: diagnostics.grad_over_weight(model),
        "eigenvalues + drift": lambda: diagnostics.eigenvalue_drift(initial, diagnostics.eigenvalues(model)),
        f"Fourier robustness ({args.n_test} seqs, {len(fourier.frequencies)} freqs)": lambda: (
            diagnostics.fourier_noise_robustness(model, task, fourier.frequencies, fourier.amplitude)
        ),
    }
    print(
        f"{args.n_layers}-layer {args.layer.upper()}, d_model={args.d_model}, d_state={args.d_state}, "
        f"device={device}, torch threads={torch.get_num_threads()}"
    )
    print(f"one training step (forward + backward, batch {args.batch} × {args.length}): {step:.3f} s\n")
    print(f"{'diagnostic':<44} {'seconds':>9} {'× step':>8} {'steps for <10%':>15}")
    for name, fn in measured.items():
        seconds = median_seconds(fn, args.repeats)
        print(f"{name:<44} {seconds:9.4f} {seconds / step:8.3f} {seconds / (0.1 * step):15.1f}")


if __name__ == "__main__":
    main()
