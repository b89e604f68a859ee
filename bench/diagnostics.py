"""Cost of each diagnostic next to one training step, the trainer's diagnostics cost as a fraction
of an epoch, and the bytes a trial's diagnostics take in the database (ssm.diagnostics; issues 5, 14).

    python bench/diagnostics.py                   # 4-layer S4D, d_model = d_state = 64, batch 32 × 1024
    python bench/diagnostics.py --layer s5 --n-test 128
    python bench/diagnostics.py --n-layers 6 --d-model 128 --batch 50 --steps-per-epoch 900  # sCIFAR-like

Prints, for each diagnostic, its time, that time in training steps (one forward + backward pass of
a batch), and the number of steps an epoch needs for the diagnostic to stay under 10% of it. The
Fourier-robustness time is for `--n-test` test sequences at the five default frequencies plus the
clean pass; it grows linearly with the test set. Timings are medians of `--repeats` runs on the
current device, after one warm-up run.

Then, for an epoch of `--steps-per-epoch` steps with `diagnostics.every: 1`, what the trainer adds:
the epoch's scalars (`_epoch_diagnostics`: spectra, drift, MF and MC of every layer), the
gradient-over-weight ratio after every step, and the per-layer arrays (`layer_arrays`) at init, best
and end spread over `--epochs` epochs — each as a fraction of the epoch's training time. Last, the
stored size of those arrays (`orchestrator.array_codec`, as `trial_diagnostic_arrays` holds them)
for the three snapshots of one trial, against the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from orchestrator.array_codec import encode_array
from ssm import diagnostics
from ssm.config import DiagnosticsConfig, FourierConfig, ModelConfig, TrialConfig
from ssm.data.base import SequenceDataset, Task
from ssm.model import SequenceModel
from ssm.train import _epoch_diagnostics


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
    parser.add_argument(
        "--steps-per-epoch", type=int, default=900, help="training steps of one epoch (sCIFAR: 45000 / 50)"
    )
    parser.add_argument(
        "--epochs", type=int, default=100, help="epochs the 3 array snapshots are spread over"
    )
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

    epoch_cost(args, model, step)
    storage(model, config_lag)


def epoch_cost(args: argparse.Namespace, model: SequenceModel, step: float) -> None:
    """What `diagnostics.every: 1` adds to one epoch of `--steps-per-epoch` steps, as the trainer
    spends it, as a fraction of the epoch's training time."""
    trial = TrialConfig(task="delay", diagnostics=DiagnosticsConfig(every=1))
    lag = trial.diagnostics.memory_max_lag
    initial = diagnostics.spectra(model)
    scalars = median_seconds(lambda: _epoch_diagnostics(trial, model, initial, None, 1.0), args.repeats)
    ratio = median_seconds(lambda: diagnostics.grad_over_weight(model), max(args.repeats, 21))  # ~1 ms
    arrays = median_seconds(lambda: diagnostics.layer_arrays(model, lag), args.repeats)
    epoch = args.steps_per_epoch * step
    per_epoch = {
        "epoch scalars (spectra, drift, MF and MC)": scalars,
        f"gradient-over-weight after each of {args.steps_per_epoch} steps": ratio * args.steps_per_epoch,
        f"layer arrays: 3 snapshots of {arrays:.2f} s over {args.epochs} epochs": 3 * arrays / args.epochs,
    }
    total = sum(per_epoch.values())
    print(f"\nan epoch of {args.steps_per_epoch} steps: {epoch:.1f} s; with diagnostics.every = 1 it adds")
    for name, seconds in per_epoch.items():
        print(f"  {name:<62} {seconds:8.3f} s  {percent(seconds / epoch):>8}")
    print(f"  {'total':<62} {total:8.3f} s  {percent(total / epoch):>8} of the epoch")
    print(f"  (one snapshot of the arrays alone: {percent(arrays / epoch)} of an epoch)")


def percent(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def storage(model: SequenceModel, max_lag: int) -> None:
    """Bytes of one trial's arrays (3 snapshots) as stored, at init and after a perturbation of every
    parameter that stands in for training (trained eigenvalues no longer repeat across channels)."""
    at_init = diagnostics.layer_arrays(model, max_lag)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1 + 0.05 * torch.randn_like(parameter))
    trained = diagnostics.layer_arrays(model, max_lag)
    print(f"\nstored diagnostics of one trial (init, best, end; memory_max_lag = {max_lag}):")
    for name, snapshots in (
        ("init, best, end as at init", [at_init] * 3),
        ("init + 2 trained", [at_init, trained, trained]),
    ):
        stored = sum(
            len(encode_array(values)[1])
            for layers in snapshots
            for layer in layers
            for values in layer.values()
        )
        as_json = sum(len(json.dumps(layers)) for layers in snapshots)
        print(f"  {name:<28} {stored / 1e6:6.2f} MB as stored, {as_json / 1e6:6.2f} MB as JSON")


if __name__ == "__main__":
    main()
