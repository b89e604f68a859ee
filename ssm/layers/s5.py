"""S5: one MIMO diagonal SSM shared by all channels, run by a parallel scan (Smith et al. 2023)."""

from __future__ import annotations

import torch

from ssm.kernels import discretize, linear_scan

from .base import DiscreteSystem, Eigenvalues, SSMLayer, as_complex, complex_parameter, mark_ssm_parameter


class S5(SSMLayer):
    """S5 layer: x_k = Āx_{k−1} + B̄u_k (state: N/2 complex slots), y_k = 2 Re(C̃x_k) + D u_k.

    Eigenvalues from `init` (S5's HiPPO-N is "legs"; S5-PTD is "ptd"), optionally as `blocks` (J)
    copies of an init of size N/J on the diagonal, as in S5. B̃ (N/2, H) and C̃ (H, N/2) are a random
    real B and C carried into the eigenbasis; dt is per state. Bidirectional: a second C̃ reads a scan
    of the reversed sequence.
    """

    def __init__(self, d_model: int, d_state: int = 64, blocks: int = 1, **kwargs):
        super().__init__(d_model, d_state, **kwargs)
        if blocks < 1 or d_state % blocks or (d_state // blocks) % 2:
            raise ValueError(f"d_state={d_state} must split into blocks={blocks} blocks of even size")
        self.blocks = blocks
        H = d_model
        inits = [self._diagonal_init(d_state // blocks) for _ in range(blocks)]
        lam = torch.cat([i.lam for i in inits])
        n_directions = 2 if self.bidirectional else 1
        B_parts, C_parts = [], []
        for i in inits:
            n2 = i.lam.shape[0]
            if i.to_slots is not None:
                M = i.to_slots.shape[1]
                B_real = torch.randn(M, H, dtype=torch.float64) / H**0.5  # lecun normal
                C_real = torch.randn(n_directions, H, M, dtype=torch.float64) / M**0.5
                B_parts.append(i.to_slots @ B_real.to(torch.complex128))
                C_parts.append(C_real.to(torch.complex128) @ i.from_slots)
            else:
                B_parts.append(torch.randn(n2, H, dtype=torch.complex128) / H**0.5)
                C_parts.append(torch.randn(n_directions, H, n2, dtype=torch.complex128) / (2 * n2) ** 0.5)
        self.eig = Eigenvalues(lam, self.reparam, self.train_eigenvalues)  # (N2,)
        self._make_log_dt(lam.shape[0])  # one dt per state
        self.B = mark_ssm_parameter(complex_parameter(torch.cat(B_parts, 0).to(torch.complex64)))  # (N2 H 2)
        self.C = complex_parameter(torch.cat(C_parts, -1).to(torch.complex64))  # (directions H N2 2)

    def discrete_system(self) -> DiscreteSystem:
        """Ab (N/2,) complex128 — one state shared by all channels —, Bb (H, N/2) complex128 (row h:
        the state's input column for channel h), C (directions, H, N/2), dt (N/2,) per state."""
        dt = torch.exp(self.log_dt)
        Ab, Bb = discretize(self.eig()[:, None], as_complex(self.B), dt[:, None], self.discretization)
        return DiscreteSystem(Ab[:, 0], Bb.transpose(0, 1), as_complex(self.C), dt)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ab (N2,) and Bb (H, N2) in the layer's complex dtype."""
        system, dtype = self.discrete_system(), as_complex(self.B).dtype
        return system.Ab.to(dtype), system.Bb.to(dtype)

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        Ab, Bb = self._discrete()
        Bu = u.to(Bb.dtype) @ Bb  # (B L N2)
        C = as_complex(self.C)
        y = 2 * (linear_scan(Ab, Bu) @ C[0].transpose(0, 1)).real
        if self.bidirectional:
            x_rev = linear_scan(Ab, Bu.flip(1)).flip(1)
            y = y + 2 * (x_rev @ C[1].transpose(0, 1)).real
        return y + u * self.D

    def default_state(self, batch: int) -> torch.Tensor:
        B = as_complex(self.B)
        return torch.zeros(batch, B.shape[0], dtype=B.dtype, device=B.device)

    def ssm_step(self, u_t, state):
        Ab, Bb = self._discrete()
        state = Ab * state + u_t.to(Bb.dtype) @ Bb
        y = 2 * (state @ as_complex(self.C[0]).transpose(0, 1)).real + self.D * u_t
        return y.to(u_t.dtype), state

    def extra_repr(self) -> str:
        return super().extra_repr() + f", blocks={self.blocks}"
