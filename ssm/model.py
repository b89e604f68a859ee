"""The sequence model around the SSM layers: encoder → blocks → pooling → decoder."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ssm import reparam as reparam_lib
from ssm.config import ModelConfig
from ssm.layers import LAYERS, SSMLayer


def build_layer(config: ModelConfig, l_max: int) -> SSMLayer:
    """One SSM layer as `config` describes it."""
    kwargs = dict(
        d_state=config.d_state,
        init=config.init,
        reparam=reparam_lib.make("best", a=config.reparam_a, b=config.reparam_b)
        if config.reparam == "best"
        else config.reparam,
        train_eigenvalues=config.train_eigenvalues,
        dt_min=config.dt_min,
        dt_max=config.dt_max,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        ptd_eps=config.ptd_eps,
        ptd_perturbation=config.ptd_perturbation,
        linear=config.linear,
    )
    if config.discretization is not None:
        kwargs["discretization"] = config.discretization
    if config.layer == "s4":
        kwargs["l_max"] = l_max
    if config.layer == "s5":
        kwargs["blocks"] = config.s5_blocks
    return LAYERS[config.layer](config.d_model, **kwargs)


class Block(nn.Module):
    """SSM layer → dropout → residual, with the norm before (prenorm) or after it; for the linear SSM
    (`config.linear`) the SSM layer alone."""

    def __init__(self, config: ModelConfig, l_max: int):
        super().__init__()
        self.layer = build_layer(config, l_max)
        self.linear = config.linear
        self.prenorm = config.prenorm
        self.norm_kind = config.norm
        self.norm = {
            "layer": lambda: nn.LayerNorm(config.d_model),
            "batch": lambda: nn.BatchNorm1d(config.d_model),
            "none": nn.Identity,
        }[config.norm]()
        self.dropout = nn.Dropout(config.dropout)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_kind == "batch":  # BatchNorm1d normalizes dim 1: (B, H, L)
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.linear:
            return self.layer(x)
        z = self._normalize(x) if self.prenorm else x
        x = x + self.dropout(self.layer(z))
        return x if self.prenorm else self._normalize(x)


class SequenceModel(nn.Module):
    """Encoder → n_layers × Block → pooling → decoder.

    `input_type`: "tokens" (x int64 (B, L), id 0 = padding, d_input = vocabulary size) or
    "continuous" (x float (B, L, d_input)). `output`: "pooled" → logits (B, n_classes);
    "sequence" → (B, L, n_classes). `paired` (LRA retrieval): x (B, 2, L), both documents through the
    same encoder and blocks, classified from [x1, x2, x1·x2, x1 − x2]. `lengths` (B,) or (B, 2)
    lets pooling ignore padding. `l_max` bounds the sequence length for S4.

    `model_config.linear`: the linear SSM y = K * u + D u — identity encoder and decoder around one
    linear SSM layer; it needs continuous input with d_input = 1 and n_classes = 1 (regression).
    """

    def __init__(
        self,
        model_config: ModelConfig,
        d_input: int,
        n_classes: int,
        *,
        input_type: Literal["tokens", "continuous"] = "continuous",
        output: Literal["pooled", "sequence"] = "pooled",
        pooling: Literal["mean", "last"] | None = None,
        paired: bool = False,
        l_max: int = 1024,
    ):
        super().__init__()
        if input_type not in ("tokens", "continuous"):
            raise ValueError(f"input_type must be 'tokens' or 'continuous', got {input_type!r}")
        if output not in ("pooled", "sequence"):
            raise ValueError(f"output must be 'pooled' or 'sequence', got {output!r}")
        if paired and output != "pooled":
            raise ValueError("a paired (two-document) task has one label per pair: output must be 'pooled'")
        self.config = model_config
        self.input_type, self.output, self.paired = input_type, output, paired
        self.pooling = model_config.pooling or pooling or "mean"
        H = model_config.d_model
        if model_config.linear and (input_type != "continuous" or d_input != 1 or n_classes != 1 or paired):
            raise ValueError(
                "the linear SSM (model.linear) maps one continuous input channel to one output: it needs "
                f"a regression task with d_input 1, got input_type={input_type!r}, d_input={d_input}, "
                f"n_classes={n_classes}{', paired' if paired else ''}"
            )
        if model_config.linear:
            self.encoder: nn.Module = nn.Identity()
        elif input_type == "tokens":
            self.encoder = nn.Embedding(d_input, H, padding_idx=0)
        else:
            self.encoder = nn.Linear(d_input, H)
        self.blocks = nn.ModuleList(Block(model_config, l_max) for _ in range(model_config.n_layers))
        if model_config.linear:
            self.decoder: nn.Module = nn.Identity()
        elif paired:
            self.decoder = nn.Sequential(nn.Linear(4 * H, H), nn.GELU(), nn.Linear(H, n_classes))
        else:
            self.decoder = nn.Linear(H, n_classes)

    def ssm_layers(self) -> list[SSMLayer]:
        return [block.layer for block in self.blocks]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder and blocks: (B, L[, C]) → (B, L, H)."""
        h = self.encoder(x)
        for block in self.blocks:
            h = block(h)
        return h

    def _pool(self, h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        B, L, _ = h.shape
        if lengths is None:
            lengths = torch.full((B,), L, device=h.device)
        lengths = lengths.clamp(1, L)
        if self.pooling == "last":
            return h[torch.arange(B, device=h.device), lengths - 1]
        mask = (torch.arange(L, device=h.device)[None, :] < lengths[:, None]).to(h.dtype)
        return (h * mask[..., None]).sum(1) / lengths[:, None].to(h.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.paired:
            if x.dim() != 3 or x.shape[1] != 2:
                raise ValueError(f"a paired model expects x of shape (B, 2, L), got {tuple(x.shape)}")
            B = x.shape[0]
            flat_lengths = None if lengths is None else lengths.reshape(2 * B)
            pooled = self._pool(self.features(x.reshape(2 * B, -1)), flat_lengths).view(B, 2, -1)
            x1, x2 = pooled[:, 0], pooled[:, 1]
            return self.decoder(torch.cat([x1, x2, x1 * x2, x1 - x2], -1))
        expected = 2 if self.input_type == "tokens" else 3
        if x.dim() != expected:
            shape = "(B, L)" if expected == 2 else "(B, L, C)"
            raise ValueError(f"expected {self.input_type} input of shape {shape}, got {tuple(x.shape)}")
        h = self.features(x)
        if self.output == "sequence":
            return self.decoder(h)
        return self.decoder(self._pool(h, lengths))
