"""S4D: one diagonal SSM per channel, convolved by FFT (Gu, Gupta, Goel, Ré 2022)."""

from __future__ import annotations

import torch

from ssm.kernels import discretize, fft_conv, s4d_kernel

from .base import DiscreteSystem, Eigenvalues, SSMLayer, as_complex, complex_parameter, mark_ssm_parameter


class S4D(SSMLayer):
    """Diagonal SSM layer: kernel → FFT convolution → skip D → GELU → dropout → Linear + GLU.

    Per channel h: eigenvalues λ[h] (N/2 slots, from `init`, stored under `reparam`), B[h], C[h],
    dt[h]. `train_eigenvalues=False` freezes λ and dt (buffers). Any diagonal init works.
    """

    def __init__(self, d_model: int, d_state: int = 64, **kwargs):
        super().__init__(d_model, d_state, **kwargs)
        H = d_model
        init = self._diagonal_init(d_state)
        N2 = init.lam.shape[0]
        self.eig = Eigenvalues(init.lam.repeat(H, 1), self.reparam, self.train_eigenvalues)  # (H N2)
        self._make_log_dt(H)
        self.B = mark_ssm_parameter(complex_parameter(init.B.to(torch.complex64).repeat(H, 1)))  # (H N2 2)
        n_directions = 2 if self.bidirectional else 1
        if init.from_slots is not None:  # a real output row carried into the slots
            C = torch.randn(n_directions, H, init.from_slots.shape[0], dtype=torch.float64).to(
                torch.complex128
            )
            C = C @ init.from_slots
        else:
            C = torch.randn(n_directions, H, N2, dtype=torch.complex128)
        self.C = complex_parameter(C.to(torch.complex64))  # (directions H N2 2)

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel (H, L) (the causal one for a bidirectional layer)."""
        return self._kernels(L)[0]

    def _kernels(self, L: int) -> list[torch.Tensor]:
        lam, dt = self.eig(), torch.exp(self.log_dt)
        B = as_complex(self.B)
        return [s4d_kernel(lam, B, as_complex(C), dt, L, self.discretization) for C in self.C]

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        k = self._kernels(u.shape[1])
        return fft_conv(u, k[0], k[1] if self.bidirectional else None) + u * self.D

    def discrete_system(self) -> DiscreteSystem:
        """Ab, Bb (H, N/2) complex128, C (directions, H, N/2), dt (H,): one system per channel."""
        dt = torch.exp(self.log_dt)
        Ab, Bb = discretize(self.eig(), as_complex(self.B), dt[:, None], self.discretization)
        return DiscreteSystem(Ab, Bb, as_complex(self.C), dt)

    def default_state(self, batch: int) -> torch.Tensor:
        B = as_complex(self.B)
        return torch.zeros(batch, *B.shape, dtype=B.dtype, device=B.device)

    def ssm_step(self, u_t, state):
        system = self.discrete_system()
        state = system.Ab.to(state.dtype) * state + system.Bb.to(state.dtype) * u_t[..., None]
        y = 2 * (system.C[0] * state).sum(-1).real + self.D * u_t
        return y.to(u_t.dtype), state
