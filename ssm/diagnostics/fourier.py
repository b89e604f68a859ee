"""Robustness to Fourier-mode input noise (REFERENCE.md §2, the PTD claim): accuracy when every input
sequence carries a sinusoid, per frequency."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def fourier_noise_robustness(
    model: nn.Module,
    task: Any,
    frequencies: Iterable[float],
    amplitude: float,
    split: str = "test",
    batch_size: int = 256,
    max_batches: int | None = None,
    seed: int = 0,
) -> list[dict[str, float | None]]:
    """Accuracy on a task split when every input sequence carries a sinusoid amplitude·sin(2π f t + φ).

    f in cycles per step (0.5 is the Nyquist frequency), t the step index, φ uniform on [0, 2π) per
    sequence, drawn from `seed` (the same phases at every frequency). The sinusoid is added on each
    sequence's valid steps (t < length): to every input channel for continuous inputs; for token
    inputs to the encoder output, through a forward hook on `model.encoder` that is removed
    afterwards (errors included). `task`: an `ssm.data.Task` of kind "classification" (pooled, or
    per-step labels counted on valid steps). `max_batches` evaluates only the first batches.
    The model runs in eval mode without gradients and gets its training flag back.
    Returns [{"frequency": None, "accuracy": clean}, {"frequency": f, "accuracy": ...}, ...] with
    accuracies as fractions in [0, 1].
    """
    if task.kind != "classification":
        raise ValueError(
            f"Fourier robustness measures accuracy: the task must be a classification task, got {task.kind!r}"
        )
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; valid splits: train, val, test")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    frequencies = [float(f) for f in frequencies]
    data = getattr(task, split)
    tokens = task.input_type == "tokens"
    device = next(model.parameters()).device
    encoder_noise: list[torch.Tensor] = []  # what the hook adds to the encoder output: (n_seq, L, 1)

    def add_noise_to_encoding(_module, _inputs, output):
        return output + encoder_noise[0].to(output.dtype) if encoder_noise else output

    def accuracy(frequency: float | None) -> float:
        generator = torch.Generator().manual_seed(seed)
        correct = total = 0
        for start in range(0, len(data.y), batch_size):
            if max_batches is not None and start // batch_size >= max_batches:
                break
            batch = slice(start, start + batch_size)
            x, y, lengths = (t[batch].to(device) for t in (data.x, data.y, data.lengths))
            flat_lengths = lengths.reshape(-1)  # (B,); for paired inputs (2B,), the encoder's order
            phase = 2 * math.pi * torch.rand(flat_lengths.shape[0], generator=generator, dtype=torch.float64)
            encoder_noise.clear()
            if frequency is not None:
                n_steps = x.shape[-1] if tokens else x.shape[1]
                wave = _sinusoid(n_steps, flat_lengths, amplitude, frequency, phase.to(device))
                if tokens:
                    encoder_noise.append(wave)
                else:
                    x = x + wave.to(x.dtype)
            hit, count = _correct(model(x, lengths), y, lengths)
            correct, total = correct + hit, total + count
        encoder_noise.clear()
        return correct / max(total, 1)

    was_training = model.training
    hook = model.encoder.register_forward_hook(add_noise_to_encoding) if tokens else None
    try:
        model.eval()
        with torch.no_grad():
            rows: list[dict[str, float | None]] = [{"frequency": None, "accuracy": accuracy(None)}]
            rows += [{"frequency": f, "accuracy": accuracy(f)} for f in frequencies]
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    return rows


def _sinusoid(
    n_steps: int, lengths: torch.Tensor, amplitude: float, frequency: float, phase: torch.Tensor
) -> torch.Tensor:
    """amplitude·sin(2π f t + φ) on each sequence's valid steps t < length, 0 after: (n_seq, L, 1)."""
    t = torch.arange(n_steps, device=lengths.device, dtype=torch.float64)
    wave = amplitude * torch.sin(2 * math.pi * frequency * t + phase[:, None])
    return (wave * (t < lengths[:, None]))[..., None]


def _correct(logits: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> tuple[int, int]:
    """(number correct, number counted): per sequence for pooled outputs; per valid step for
    sequence outputs (logits (B, L, K), y (B, L))."""
    hit = logits.argmax(-1) == y
    if hit.dim() == 1:
        return int(hit.sum()), hit.numel()
    valid = torch.arange(hit.shape[1], device=hit.device)[None, :] < lengths.reshape(-1, 1)
    return int((hit & valid).sum()), int(valid.sum())
