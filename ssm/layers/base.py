"""What S4, S4D and S5 share: eigenvalue storage under a reparameterization, the step size, the
frozen (reservoir) mode, and the output mixing of the S4D paper's layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssm import reparam as reparam_lib
from ssm.init import DIAGONAL_INITS, DiagonalInit, diag_init
from ssm.kernels import DISCRETIZATIONS


def mark_ssm_parameter(p: torch.Tensor) -> torch.Tensor:
    """Tag a parameter as an SSM parameter (eigenvalues, dt, B): `ssm.optim.param_groups` gives these
    their own learning rate and no weight decay, as S4 does."""
    p._ssm_parameter = True
    return p


def complex_parameter(x: torch.Tensor) -> nn.Parameter:
    """A complex tensor stored as a real parameter with a trailing (re, im) dimension of 2.

    Real storage keeps `module.double()`, `.to(dtype)`, `.half()` and every optimizer correct: they
    treat complex parameters inconsistently (`.to(torch.float64)` silently drops the imaginary part).
    Read it back with `as_complex`.
    """
    return nn.Parameter(torch.view_as_real(x.resolve_conj()).clone())


def as_complex(p: torch.Tensor) -> torch.Tensor:
    """The complex view of a parameter made by `complex_parameter`."""
    return torch.view_as_complex(p)


class Eigenvalues(nn.Module):
    """Complex eigenvalues λ stored as Re λ = f(w) (the reparameterization f) and Im λ.

    `trainable=False` registers w and Im λ as buffers: the reservoir-computing setting, where the
    eigenvalues stay exactly at their initial values.
    """

    def __init__(self, lam: torch.Tensor, reparam: reparam_lib.Reparam, trainable: bool = True):
        super().__init__()
        self.reparam = reparam
        w = reparam.inverse(lam.real.to(torch.float64)).float()
        imag = lam.imag.float()
        if trainable:
            self.w = mark_ssm_parameter(nn.Parameter(w))
            self.imag = mark_ssm_parameter(nn.Parameter(imag))
        else:
            self.register_buffer("w", w)
            self.register_buffer("imag", imag)

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

    Subclasses implement `ssm(u) -> (B, L, H)` (the linear part, skip term D included),
    `ssm_step(u_t, state) -> (y_t, state)` and `default_state(batch)`.
    """

    layer_name = ""

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
        self.D = nn.Parameter(torch.randn(d_model))
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(d_model, 2 * d_model)

    # --- the shared pieces -------------------------------------------------------------------
    def _diagonal_init(self, N: int) -> DiagonalInit:
        # `rand` and the random PTD perturbation draw from a seed taken from torch's generator, so
        # torch.manual_seed governs them.
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        return diag_init(self.init_name, N, eps=self.ptd_eps, seed=seed, perturbation=self.ptd_perturbation)

    def _make_log_dt(self, n: int) -> None:
        log_dt = log_dt_init(n, self.dt_min, self.dt_max)
        if self.train_eigenvalues:
            self.log_dt = mark_ssm_parameter(nn.Parameter(log_dt))
        else:
            self.register_buffer("log_dt", log_dt)

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        y = self.dropout(F.gelu(y))
        return F.glu(self.output_linear(y), dim=-1)

    def _check_input(self, u: torch.Tensor) -> None:
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"expected input of shape (B, L, {self.d_model}), got {tuple(u.shape)}")

    # --- the public interface ----------------------------------------------------------------
    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, L, H) → (B, L, H)."""
        self._check_input(u)
        return self._mix(self.ssm(u))

    def step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: u_t (B, H), state → (y_t (B, H), next state). Stepping a sequence
        equals `forward` on it."""
        if self.bidirectional:
            raise ValueError("a bidirectional layer sees the future: it has no recurrent (step) mode")
        if u_t.dim() != 2 or u_t.shape[-1] != self.d_model:
            raise ValueError(f"expected u_t of shape (B, {self.d_model}), got {tuple(u_t.shape)}")
        y, state = self.ssm_step(u_t, state)
        return self._mix(y), state

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ssm_step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def default_state(self, batch: int) -> torch.Tensor:
        raise NotImplementedError

    def eigenvalues(self) -> torch.Tensor:
        """The continuous-time eigenvalues λ currently in use (complex)."""
        return self.eig()

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, init={self.init_name!r}, "
            f"discretization={self.discretization!r}, train_eigenvalues={self.train_eigenvalues}, "
            f"bidirectional={self.bidirectional}"
        )
