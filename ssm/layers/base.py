"""What S4, S4D and S5 share: eigenvalue storage under a reparameterization, the step size, the
frozen (reservoir) mode, the output mixing of the S4D paper's layer, and the discrete system that
the diagnostics read (`SSMLayer.discrete_system`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssm import reparam as reparam_lib
from ssm.init import DIAGONAL_INITS, DiagonalInit, diag_init
from ssm.kernels import DISCRETIZATIONS, at_least_fp32


def mark_ssm_parameter(p: torch.Tensor) -> torch.Tensor:
    """Tag a parameter as an SSM parameter (eigenvalues, dt, B): `ssm.optim.param_groups` gives these
    their own learning rate and no weight decay, as S4 does."""
    p._ssm_parameter = True
    return p


def complex_storage(x: torch.Tensor) -> torch.Tensor:
    """A complex tensor as a real one with a trailing (re, im) dimension of 2 (a copy).

    Real storage keeps `module.double()`, `.to(dtype)`, `.half()` and every optimizer correct: they
    treat complex parameters inconsistently (`.to(torch.float64)` silently drops the imaginary part).
    Read it back with `as_complex`.
    """
    return torch.view_as_real(x.resolve_conj()).clone()


def complex_parameter(x: torch.Tensor) -> nn.Parameter:
    """A complex tensor stored as a real parameter (`complex_storage`)."""
    return nn.Parameter(complex_storage(x))


def as_complex(p: torch.Tensor) -> torch.Tensor:
    """The complex view of a tensor made by `complex_storage` / `complex_parameter`."""
    return torch.view_as_complex(p)


def register_state_tensor(module: nn.Module, name: str, value: torch.Tensor, trainable: bool) -> None:
    """Register a piece of the state matrix (eigenvalues, dt, S4's P) on `module` as `name`.

    trainable: an SSM parameter (`mark_ssm_parameter`). Frozen (`train_eigenvalues=False`, the
    reservoir setting): a buffer, recorded so that `frozen_state_tensors` finds it.
    """
    if trainable:
        setattr(module, name, mark_ssm_parameter(nn.Parameter(value)))
    else:
        module.register_buffer(name, value)
        module._frozen_state_buffers = (*getattr(module, "_frozen_state_buffers", ()), name)


def frozen_state_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The frozen state-matrix tensors (buffers from `register_state_tensor`) anywhere in `model`:
    parameters of the model that training does not change, e.g. for counting them."""
    return [getattr(m, name) for m in model.modules() for name in getattr(m, "_frozen_state_buffers", ())]


def sorted_eigenvalues(matrix: torch.Tensor) -> torch.Tensor:
    """eig of a batch of square matrices (..., n, n), each row sorted by real, then imaginary part:
    an order that follows the eigenvalues as the matrix changes a little, for drift and storage."""
    lam = torch.linalg.eigvals(matrix)
    lam = lam.gather(-1, torch.sort(lam.imag, dim=-1, stable=True).indices)
    return lam.gather(-1, torch.sort(lam.real, dim=-1, stable=True).indices)


@dataclass(frozen=True)
class DiscreteSystem:
    """The discrete linear system a layer runs: x_k = Ab x_{k−1} + Bb u_k (REFERENCE.md §1).

    diagonal=True (S4D, S5): the state is N/2 complex conjugate-pair slots; Ab (..., N/2) holds the
      discrete eigenvalues and broadcasts against Bb (S4D: (H, N/2), one system per channel; S5:
      (N/2,), one state shared by all channels); outputs y = 2 Re(C x) + D u.
    diagonal=False (S4): the full complex state in the basis [slots, conjugates]; Ab (H, N, N);
      outputs y = Re(C x) + D u.
    Bb: (H, n) with n = N/2 or N — row h is the input column of input channel h.
    C: (directions, H, n) — the output rows; direction 1 (bidirectional layers) reads the reversed
      sequence.
    dt: real — the step per channel (H,) for S4 and S4D, per slot (N/2,) for S5.
    Ab and Bb are complex128 (the discretization runs in double precision), C is in the layer's
    complex dtype, dt in its real dtype. Tensors are attached to the autograd graph.
    """

    Ab: torch.Tensor
    Bb: torch.Tensor
    C: torch.Tensor
    dt: torch.Tensor
    diagonal: bool = True


class Eigenvalues(nn.Module):
    """Complex eigenvalues λ stored as Re λ = f(w) (the reparameterization f) and Im λ.

    `trainable=False` registers w and Im λ as buffers: the reservoir-computing setting, where the
    eigenvalues stay exactly at their initial values.
    """

    def __init__(self, lam: torch.Tensor, reparam: reparam_lib.Reparam, trainable: bool = True):
        super().__init__()
        self.reparam = reparam
        register_state_tensor(self, "w", reparam.inverse(lam.real.to(torch.float64)).float(), trainable)
        register_state_tensor(self, "imag", lam.imag.float(), trainable)

    def forward(self) -> torch.Tensor:
        return torch.complex(self.reparam(self.w), self.imag)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.w.shape)}, reparam={self.reparam!r}, trainable={isinstance(self.w, nn.Parameter)}"


def log_dt_init(n: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """log dt drawn log-uniformly in [dt_min, dt_max] (REFERENCE.md §1)."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min ≤ dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    return torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


class SSMLayer(nn.Module):
    """Base class: a linear SSM over (B, L, H) followed by GELU → dropout → Linear(H, 2H) → GLU.

    `linear=True` drops everything after the SSM: the layer is the linear map u ↦ K * u + D u (the
    linear SSM of the learning-dynamics study, CLAIMS.md §3). The SSM itself always computes in
    fp32 or better, autocast or not; only the output mixing may run in bf16.

    Subclasses implement `ssm(u) -> (B, L, H)` (the linear part, skip term D included),
    `ssm_step(u_t, state) -> (y_t, state)`, `default_state(batch)` and `discrete_system()`.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        init: str = "legs",
        reparam: str | reparam_lib.Reparam = "exp",
        train_eigenvalues: bool = True,
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        ptd_eps: float = 0.1,
        ptd_perturbation: str = "optimized",
        linear: bool = False,
    ):
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive integer, got {d_model!r}")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(
                f"unknown discretization {discretization!r}; valid: {', '.join(DISCRETIZATIONS)}"
            )
        if init not in DIAGONAL_INITS:
            raise ValueError(f"unknown init {init!r}; valid: {', '.join(DIAGONAL_INITS)}")
        self.d_model, self.d_state = d_model, d_state
        self.init_name, self.discretization = init, discretization
        self.train_eigenvalues, self.bidirectional = train_eigenvalues, bidirectional
        self.ptd_eps, self.ptd_perturbation = ptd_eps, ptd_perturbation
        log_dt_init(1, dt_min, dt_max)  # validates the range before any parameter is built
        self.dt_min, self.dt_max = dt_min, dt_max
        self.reparam = reparam_lib.make(reparam) if isinstance(reparam, str) else reparam
        self.linear = linear
        self.D = nn.Parameter(torch.randn(d_model))
        if not linear:
            self.dropout = nn.Dropout(dropout)
            self.output_linear = nn.Linear(d_model, 2 * d_model)

    # --- the shared pieces -------------------------------------------------------------------
    def _diagonal_init(self, N: int) -> DiagonalInit:
        # `rand` and the random PTD perturbation draw from a seed taken from torch's generator, so
        # torch.manual_seed governs them.
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        return diag_init(self.init_name, N, eps=self.ptd_eps, seed=seed, perturbation=self.ptd_perturbation)

    def _make_log_dt(self, n: int) -> None:
        register_state_tensor(
            self, "log_dt", log_dt_init(n, self.dt_min, self.dt_max), self.train_eigenvalues
        )

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        if self.linear:
            return y
        y = self.dropout(F.gelu(y))
        return F.glu(self.output_linear(y), dim=-1)

    def _check_input(self, u: torch.Tensor) -> None:
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"expected input of shape (B, L, {self.d_model}), got {tuple(u.shape)}")

    # --- the public interface ----------------------------------------------------------------
    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, L, H) → (B, L, H)."""
        self._check_input(u)
        with torch.autocast(u.device.type, enabled=False):
            y = self.ssm(at_least_fp32(u))
        return self._mix(y)

    def step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: u_t (B, H), state → (y_t (B, H), next state). Stepping a sequence
        equals `forward` on it."""
        if self.bidirectional:
            raise ValueError("a bidirectional layer sees the future: it has no recurrent (step) mode")
        if u_t.dim() != 2 or u_t.shape[-1] != self.d_model:
            raise ValueError(f"expected u_t of shape (B, {self.d_model}), got {tuple(u_t.shape)}")
        with torch.autocast(u_t.device.type, enabled=False):
            y, state = self.ssm_step(at_least_fp32(u_t), state)
        return self._mix(y), state

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ssm_step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def default_state(self, batch: int) -> torch.Tensor:
        raise NotImplementedError

    def discrete_system(self) -> DiscreteSystem:
        """The discrete system (Ab, Bb, C, dt) the layer runs now, from its current parameters."""
        raise NotImplementedError

    def eigenvalues(self) -> torch.Tensor:
        """The continuous-time eigenvalues λ of the state matrix currently in use (complex):
        (H, N/2) for S4D, (N/2,) for S5 — one per conjugate pair. S4 overrides it (eig(A))."""
        return self.eig()

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, init={self.init_name!r}, "
            f"discretization={self.discretization!r}, train_eigenvalues={self.train_eigenvalues}, "
            f"bidirectional={self.bidirectional}" + (", linear=True" if self.linear else "")
        )
