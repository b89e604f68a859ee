"""Parameter groups: SSM parameters (eigenvalues, dt, B) get their own learning rate and no weight
decay, as in S4; other weights decay except biases, norms and embeddings' padding-free scale. And
the optimizer a config names (`make_optimizer`)."""

from __future__ import annotations

import torch
from torch import nn


def is_ssm_parameter(p) -> bool:
    return getattr(p, "_ssm_parameter", False)


def param_groups(model: nn.Module, lr: float, ssm_lr: float | None, weight_decay: float) -> list[dict]:
    """Three groups for `torch.optim.AdamW`: decayed weights (matrices), undecayed (biases, norms,
    the skip term D, 1-D tensors) at `lr`, and SSM parameters at `ssm_lr` (default `lr`) without
    decay. Frozen parameters (requires_grad False) and buffers are left out; empty groups dropped."""
    decay, no_decay, ssm = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if is_ssm_parameter(p):
            ssm.append(p)
        elif p.dim() >= 2 and not p.is_complex():
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
        {"name": "ssm", "params": ssm, "lr": ssm_lr if ssm_lr is not None else lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, opt) -> torch.optim.Optimizer:
    """The optimizer `opt` (an `OptimConfig`) names, over `param_groups`: AdamW, or plain SGD with a
    constant step (no momentum; the config guarantees no weight decay)."""
    groups = param_groups(model, opt.lr, opt.ssm_lr, opt.weight_decay)
    if opt.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=0.0)
    return torch.optim.AdamW(groups)
