"""One trial, trained: `train(config) -> TrialResult`.

The loop reads top to bottom: build the task and model, then per epoch train, validate, keep the best
weights, report through `on_epoch`, checkpoint. At the end the best-validation weights are restored
and the test split is evaluated once. This is the unit of work a Ray worker runs.
"""

from __future__ import annotations

import copy
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from ssm.config import TrialConfig
from ssm.data import Task, get_task
from ssm.model import SequenceModel
from ssm.optim import param_groups

Status = Literal["completed", "pruned", "diverged"]
CHECKPOINT_NAME = "checkpoint.pt"


class TrialResult(BaseModel):
    """What a trial produced. JSON-serializable (`model_dump_json` / `model_validate_json`)."""

    status: Status
    config_hash: str
    metric: str = Field(description="'accuracy' for classification, 'r2' for regression (higher is better)")
    best_epoch: int | None = None
    val_metric: float | None = None
    test_metric: float | None = None
    val: dict[str, float] = Field(
        default_factory=dict, description="all validation metrics at the best epoch"
    )
    test: dict[str, float] = Field(default_factory=dict, description="test metrics with the best weights")
    epochs: list[dict[str, Any]] = Field(default_factory=list, description="the on_epoch dicts, in order")
    diverged_at: dict[str, int] | None = Field(None, description="{epoch, step} of the first non-finite loss")
    parameters: dict[str, int] = Field(default_factory=dict, description="total, trainable, frozen")
    wall_time_s: float = 0.0
    peak_memory_mb: float = 0.0
    device: str = "cpu"
    diagnostics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)


OnEpoch = Callable[[dict[str, Any]], bool | None]


def train(
    config: TrialConfig,
    on_epoch: OnEpoch | None = None,
    checkpoint_dir: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    task: Task | None = None,
    device: str | torch.device | None = None,
) -> TrialResult:
    """Train one trial. `on_epoch(metrics)` returning False stops it as "pruned".

    With `checkpoint_dir`, every epoch is checkpointed there and an existing checkpoint is resumed
    (same final metrics as an uninterrupted run on CPU). A non-finite loss ends the trial as
    "diverged" with the epoch and step. `task` skips loading (the caller already has it).
    """
    started = time.perf_counter()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed_everything(config.seed)
    task = task or get_task(config.task.name, data_dir=data_dir, **config.task.options)
    model = SequenceModel(
        config.model,
        task.d_input,
        task.n_classes,
        input_type=task.input_type,
        output=task.output,
        pooling=task.pooling,
        paired=task.paired,
        l_max=task.seq_len,
    ).to(device)
    opt = config.optim
    optimizer = torch.optim.AdamW(param_groups(model, opt.lr, opt.ssm_lr, opt.weight_decay))
    steps_per_epoch = math.ceil(len(task.train) / opt.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(opt, steps_per_epoch * opt.epochs))
    autocast = _autocast(opt.precision, device)
    initial_eigenvalues = [layer.eigenvalues().detach().cpu() for layer in model.ssm_layers()]
    metric = "accuracy" if task.kind == "classification" else "r2"

    state = {
        "epoch": 0,
        "history": [],
        "best": None,
        "best_state": None,
        "status": "completed",
        "diverged": None,
    }
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, model, optimizer, scheduler)

    for epoch in range(state["epoch"], opt.epochs):
        if state["status"] != "completed":
            break
        t0 = time.perf_counter()
        train_loss, tokens, bad_step = _train_epoch(
            model, task, optimizer, scheduler, opt, epoch, config.seed, autocast, device
        )
        if bad_step is not None:
            state["status"], state["diverged"] = "diverged", {"epoch": epoch, "step": bad_step}
            break
        seconds = time.perf_counter() - t0
        val = evaluate(model, task, "val", opt.batch_size, autocast, device)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_metric": val[metric],
            **{f"val_{k}": v for k, v in val.items() if k != "loss"},
            "lr": scheduler.get_last_lr()[0],
            "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        }
        metrics.update(_epoch_diagnostics(config, model, initial_eigenvalues, epoch, seconds))
        state["history"].append(metrics)
        if state["best"] is None or val[metric] > state["best"]["val"][metric]:
            state["best"] = {"epoch": epoch, "val": val}
            state["best_state"] = copy.deepcopy(model.state_dict())
        state["epoch"] = epoch + 1
        if on_epoch is not None and on_epoch(dict(metrics)) is False:
            state["status"] = "pruned"
        if checkpoint is not None:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, state)

    result = TrialResult(
        status=state["status"],
        config_hash=config.hash(),
        metric=metric,
        epochs=state["history"],
        diverged_at=state["diverged"],
        parameters=count_parameters(model),
        device=str(device),
        versions=library_versions(),
    )
    if state["best"] is not None and state["status"] != "diverged":
        model.load_state_dict(state["best_state"])
        test = evaluate(model, task, "test", opt.batch_size, autocast, device)
        fourier = config.diagnostics.fourier
        if fourier is not None and task.kind == "classification":
            from ssm import diagnostics

            result.diagnostics["fourier"] = diagnostics.fourier_noise_robustness(
                model,
                task,
                fourier.frequencies,
                fourier.amplitude,
                batch_size=opt.batch_size,
                seed=config.seed,
            )
        best_val = state["best"]["val"]
        result.best_epoch = state["best"]["epoch"]
        result.val, result.test = best_val, test
        result.val_metric, result.test_metric = best_val[metric], test[metric]
    result.wall_time_s = time.perf_counter() - started
    result.peak_memory_mb = peak_memory_mb(device)
    return result


# --- the pieces of the loop --------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_schedule(opt, total_steps: int) -> Callable[[int], float]:
    """Linear warmup over `warmup_steps`, then constant or cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        if opt.schedule == "constant":
            return 1.0
        progress = (step - opt.warmup_steps) / max(1, total_steps - opt.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _autocast(precision: str, device: torch.device):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


def _batch(dataset, idx: torch.Tensor, device: torch.device):
    return (dataset.x[idx].to(device), dataset.y[idx].to(device), dataset.lengths[idx].to(device))


def _loss(task: Task, out: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    out = out.float()
    if task.kind == "classification":
        return F.cross_entropy(out, y)
    y = y.float().view_as(out)
    if task.output == "sequence":  # mask the padded steps
        mask = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths.view(-1, 1)).to(out.dtype)
        return ((out - y) ** 2 * mask[..., None]).sum() / (mask.sum() * out.shape[-1])
    return F.mse_loss(out, y)


def _train_epoch(model, task, optimizer, scheduler, opt, epoch, seed, autocast, device):
    """One pass over the training split. Returns (mean loss, tokens seen, step of a non-finite loss)."""
    model.train()
    order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    total, n_seen, tokens = 0.0, 0, 0
    for step, idx in enumerate(order.split(opt.batch_size)):
        x, y, lengths = _batch(task.train, idx, device)
        with autocast():
            loss = _loss(task, model(x, lengths), y, lengths)
        if not torch.isfinite(loss):
            return float("nan"), tokens, step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        n_seen += len(idx)
        tokens += int(lengths.sum())
    return total / max(n_seen, 1), tokens, None


@torch.no_grad()
def evaluate(model, task: Task, split: str, batch_size: int, autocast=None, device=None) -> dict[str, float]:
    """Loss and metrics on a split: accuracy for classification; mse and r2 for regression."""
    autocast = autocast or (lambda: torch.autocast("cpu", enabled=False))
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    data = task.split(split)
    loss_sum, correct, n, sq_err, y_all = 0.0, 0, 0, 0.0, []
    for idx in torch.arange(len(data)).split(batch_size):
        x, y, lengths = _batch(data, idx, device)
        with autocast():
            out = model(x, lengths)
        loss_sum += _loss(task, out, y, lengths).item() * len(idx)
        n += len(idx)
        if task.kind == "classification":
            correct += int((out.argmax(-1) == y).sum())
        else:
            sq_err += float(((out.float() - y.float().view_as(out)) ** 2).sum())
            y_all.append(y.float().flatten().cpu())
    model.train(was_training)
    metrics = {"loss": loss_sum / max(n, 1)}
    if task.kind == "classification":
        metrics["accuracy"] = correct / max(n, 1)
    else:
        ys = torch.cat(y_all)
        mse = sq_err / ys.numel()
        metrics["mse"] = mse
        metrics["r2"] = 1.0 - mse / max(float(ys.var(unbiased=False)), 1e-12)
    return metrics


def _epoch_diagnostics(config, model, initial_eigenvalues, epoch, epoch_seconds) -> dict[str, Any]:
    every = config.diagnostics.every
    if not every or (epoch + 1) % every:
        return {}
    from ssm import diagnostics  # only trials that ask for diagnostics pay for the import

    t0 = time.perf_counter()
    gow = diagnostics.grad_over_weight(model)
    drift = diagnostics.eigenvalue_drift(initial_eigenvalues, diagnostics.eigenvalues(model))
    memory = diagnostics.model_memory_functions(model, config.diagnostics.memory_max_lag)
    capacity = [float(np.nanmean(mf.sum(-1))) for mf in memory]  # NaN rows: unstable channels
    cost = time.perf_counter() - t0
    return {
        "grad_over_weight_mean": gow["mean"],
        "grad_over_weight_max": gow["max"],
        "eigenvalue_drift_mean": drift["mean"],
        "eigenvalue_drift_relative": drift["relative"],
        "memory_capacity": capacity,
        "diagnostics_seconds": cost,
        "diagnostics_fraction": cost / epoch_seconds if epoch_seconds > 0 else 0.0,
    }


# --- checkpoints ---------------------------------------------------------------------------------


def _save_checkpoint(path: Path, model, optimizer, scheduler, state) -> None:
    """Atomic: write a temporary file, then rename, so a crash never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "state": state,
    }
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["torch"])
    np.random.set_state(payload["rng"]["numpy"])
    random.setstate(payload["rng"]["python"])
    return payload["state"]


# --- bookkeeping ---------------------------------------------------------------------------------


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters, and frozen ones: eigenvalues and dt held as buffers count as frozen."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen_params = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    frozen_buffers = sum(
        b.numel()
        for layer in getattr(model, "ssm_layers", list)()
        for name, b in layer.named_buffers()
        if name in ("eig.w", "eig.imag", "log_dt")
    )
    frozen = frozen_params + frozen_buffers
    return {"total": trainable + frozen, "trainable": trainable, "frozen": frozen}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20


def library_versions() -> dict[str, str]:
    import ssm

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ssmbench": getattr(ssm, "__version__", "unknown"),
    }
