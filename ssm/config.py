"""Typed configuration of one trial: model, task, optimizer, seed, diagnostics.

Pydantic validates every field and names it in errors (`model.d_state: ...`). `TrialConfig.hash()`
is the identity of a trial across processes and machines: the orchestrator reuses a completed
result whose hash matches instead of training again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ssm.init import DIAGONAL_INITS, PTD_PERTURBATIONS
from ssm.reparam import REPARAMS

LayerName = Literal["s4", "s4d", "s5"]
InitName = Literal[DIAGONAL_INITS]  # type: ignore[valid-type]
ReparamName = Literal[tuple(REPARAMS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The sequence model: `n_layers` blocks of an SSM layer with norm, dropout and residual."""

    layer: LayerName = "s4d"
    init: InitName = "legs"
    reparam: ReparamName = "exp"
    reparam_a: float = Field(
        1.0, gt=0, le=1e6, description="a of the 'best' reparameterization −1/(a w² + b)"
    )
    reparam_b: float = Field(
        0.5, gt=0, le=1e6, description="b of the 'best' reparameterization −1/(a w² + b)"
    )
    train_eigenvalues: bool = Field(
        True, description="False: eigenvalues and dt frozen (reservoir computing)"
    )
    discretization: Literal["zoh", "bilinear"] | None = Field(
        None, description="None: the layer's own default (bilinear for S4, zoh otherwise)"
    )
    # Upper bounds keep one trial within what a GPU holds; papers use d_model ≤ 1024, N ≤ 256, ≤ 12 layers.
    d_model: int = Field(64, ge=1, le=8192)
    d_state: int = Field(64, ge=2, le=4096)
    n_layers: int = Field(4, ge=1, le=128)
    dropout: float = Field(0.0, ge=0, lt=1)
    norm: Literal["layer", "batch", "none"] = "layer"
    prenorm: bool = False
    bidirectional: bool = False
    pooling: Literal["mean", "last"] | None = Field(None, description="None: the task's recommendation")
    dt_min: float = Field(1e-3, gt=0, le=100)  # in steps of the sequence
    dt_max: float = Field(1e-1, gt=0, le=100)
    ptd_eps: float = Field(0.1, gt=0, le=1e3, description="spectral norm of the PTD perturbation")
    ptd_perturbation: Literal[PTD_PERTURBATIONS] = Field(  # type: ignore[valid-type]
        "optimized", description="PTD's E: 'optimized' (small κ(V), the paper's) or 'random' (the control)"
    )
    s5_blocks: int = Field(1, ge=1, le=4096, description="S5: number of blocks J of the diagonal init")
    linear: bool = Field(
        False,
        description="the linear SSM: one SSM layer, no nonlinearity, no GLU, identity input and output "
        "maps, one input and one output channel (d_model 1, n_layers 1, norm none, the defaults then)",
    )

    @model_validator(mode="before")
    @classmethod
    def _linear_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("linear") is True:
            data = {"d_model": 1, "n_layers": 1, "norm": "none", **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.linear:
            wrong = {
                "d_model": (self.d_model, 1),
                "n_layers": (self.n_layers, 1),
                "norm": (self.norm, "none"),
                "dropout": (self.dropout, 0.0),
            }
            for name, (value, required) in wrong.items():
                if value != required:
                    raise ValueError(
                        f"the linear SSM (linear: true) needs {name} = {required!r}, got {value!r}"
                    )
        if self.d_state % 2:
            raise ValueError(f"d_state={self.d_state} must be even (one slot per conjugate pair)")
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must not exceed dt_max={self.dt_max}")
        if self.layer == "s4" and self.init != "legs":
            raise ValueError("layer 's4' is the DPLR form of HiPPO-LegS: init must be 'legs'")
        if self.layer == "s4" and self.discretization == "zoh":
            raise ValueError("layer 's4' uses the bilinear discretization")
        if self.layer == "s5" and (self.d_state % self.s5_blocks or (self.d_state // self.s5_blocks) % 2):
            raise ValueError(f"d_state={self.d_state} must split into s5_blocks={self.s5_blocks} even blocks")
        return self


class TaskConfig(_Strict):
    """A task by name plus its options; `{name: listops, max_len: 256}` and
    `{name: listops, options: {max_len: 256}}` mean the same."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat_options(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, dict):
            data = dict(data)
            extra = {k: data.pop(k) for k in list(data) if k not in ("name", "options")}
            if extra:
                data["options"] = {**data.get("options", {}), **extra}
        return data

    @model_validator(mode="after")
    def _known_task(self) -> TaskConfig:
        from ssm.data import task_options  # ssm.data imports this module's neighbours

        valid = task_options(self.name)  # raises ValueError listing the valid task names
        unknown = sorted(set(self.options) - set(valid))
        if unknown:
            raise ValueError(
                f"task {self.name!r} has no option {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"
            )
        return self


class OptimConfig(_Strict):
    """AdamW with an SSM learning rate, warmup and a cosine or constant schedule; or plain SGD.

    `sgd`: gradient descent with a constant step — no momentum, no schedule, no warmup, no weight
    decay (`schedule` defaults to constant and `weight_decay` to 0 there; anything else is an error). The SSM
    parameters still take `ssm_lr` (None: the same step `lr` for every parameter).
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    # Learning rates up to 1e6: divergence itself is studied (tests, the reparam study's ssm_lr axis)
    lr: float = Field(3e-3, gt=0, le=1e6)
    ssm_lr: float | None = Field(
        1e-3, gt=0, le=1e6, description="learning rate of eigenvalues, dt and B (no weight decay); None: lr"
    )
    weight_decay: float = Field(0.01, ge=0, le=100)
    warmup_steps: int = Field(0, ge=0, le=10_000_000)
    schedule: Literal["cosine", "constant"] = "cosine"
    epochs: int = Field(10, ge=1, le=10_000)  # the LRA papers train for at most a few hundred
    batch_size: int = Field(32, ge=1, le=65_536)
    full_batch: bool = Field(
        False, description="every step on the whole training split (batch_size then sizes evaluation only)"
    )
    grad_clip: float | None = Field(None, gt=0, le=1e6)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, else fp32"
    )

    @model_validator(mode="before")
    @classmethod
    def _sgd_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("optimizer") == "sgd":
            data = {"schedule": "constant", "weight_decay": 0.0, **data}
        return data

    @model_validator(mode="after")
    def _plain_sgd(self) -> OptimConfig:
        if self.optimizer == "sgd":
            required = {"schedule": "constant", "warmup_steps": 0, "weight_decay": 0.0}
            for name, value in required.items():
                if getattr(self, name) != value:
                    raise ValueError(
                        f"optimizer 'sgd' takes a constant step: {name} must be {value!r}, got {getattr(self, name)!r}"
                    )
        return self


class FourierConfig(_Strict):
    """Test accuracy under sinusoidal input noise, per frequency (cycles per step), at the end."""

    frequencies: list[float] = Field(default_factory=lambda: [0.01, 0.05, 0.1, 0.25, 0.5])
    amplitude: float = Field(0.5, ge=0, le=1e3)


class DiagnosticsConfig(_Strict):
    """Per-epoch diagnostics (gradient-over-weight, eigenvalue drift, memory capacity), the per-layer
    arrays at init, best epoch and end, and the end-of-trial Fourier robustness table; their cost is
    reported as a fraction of epoch time. The training loss of every step, on request."""

    every: int = Field(
        0,
        ge=0,
        le=10_000,
        description="compute diagnostics every this many epochs (and the arrays); 0 disables them",
    )
    memory_max_lag: int = Field(256, ge=1, le=65_536)
    fourier: FourierConfig | None = None
    loss_every_step: bool = Field(False, description="keep the training loss of every step in the result")
    loss_threshold: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="steps_to_threshold: the first step whose training loss is below this fraction of the first step's",
    )


class TrialConfig(_Strict):
    """Everything that determines one training run; two equal configs give equal results on CPU."""

    task: TaskConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    seed: int = 0
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, every default spelled out: the same on every process."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """sha256 hex digest of `canonical_json()`."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


__all__ = ["DiagnosticsConfig", "FourierConfig", "ModelConfig", "OptimConfig", "TaskConfig", "TrialConfig"]
