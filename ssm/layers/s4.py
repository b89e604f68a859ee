"""S4: the diagonal-plus-low-rank SSM of HiPPO-LegS, kernel by Cauchy + Woodbury (Gu et al. 2022)."""

from __future__ import annotations

import torch

from ssm.init import _normal_part_eigen, hippo_legs_nplr
from ssm.kernels import dplr_kernel, fft_conv

from .base import Eigenvalues, SSMLayer, as_complex, complex_parameter, mark_ssm_parameter


class S4(SSMLayer):
    """S4 layer: A = Λ − P P* per channel in the eigenbasis of HiPPO-LegS's normal part, bilinear.

    Λ (stored under `reparam`, frozen with `train_eigenvalues=False`), P, B come from HiPPO-LegS
    (init "legs"); C is S4's C̃ = C (I − Ā^l_max), the output row of the generating function
    truncated at `l_max` — the kernel for any L ≤ l_max is the first L taps of that one. Recurrent
    mode solves for C once per call of `default_state`.
    """

    layer_name = "s4"

    def __init__(self, d_model: int, d_state: int = 64, l_max: int = 1024, **kwargs):
        kwargs.setdefault("init", "legs")
        kwargs.setdefault("discretization", "bilinear")
        if kwargs["init"] != "legs":
            raise ValueError(
                f"S4 is the DPLR form of HiPPO-LegS: init must be 'legs', got {kwargs['init']!r}"
            )
        if kwargs["discretization"] != "bilinear":
            raise ValueError("S4's Cauchy kernel is derived for the bilinear discretization")
        super().__init__(d_model, d_state, **kwargs)
        if d_state % 2:
            raise ValueError(f"d_state={d_state} must be even: one slot per conjugate pair")
        if l_max < 1:
            raise ValueError(f"l_max must be ≥ 1, got {l_max}")
        self.l_max = l_max
        H = d_model
        lam, V = _normal_part_eigen(d_state)
        _, P, B = hippo_legs_nplr(d_state)
        to_slots = V.conj().T
        self.eig = Eigenvalues(lam.repeat(H, 1), self.reparam, self.train_eigenvalues)
        self._make_log_dt(H)
        self.P = mark_ssm_parameter(
            complex_parameter((to_slots @ P.to(V.dtype)).to(torch.complex64).repeat(H, 1))
        )
        self.B = mark_ssm_parameter(
            complex_parameter((to_slots @ B.to(V.dtype)).to(torch.complex64).repeat(H, 1))
        )
        n_directions = 2 if self.bidirectional else 1
        C = torch.randn(n_directions, H, d_state, dtype=torch.float64).to(V.dtype) @ V
        self.C = complex_parameter(C.to(torch.complex64))  # C̃ (directions H N2 2)

    def kernel(self, L: int) -> torch.Tensor:
        return self._kernels(L)[0]

    def _kernels(self, L: int) -> list[torch.Tensor]:
        if self.l_max < L:
            raise ValueError(f"S4 layer was built for sequences up to l_max={self.l_max}, got L={L}")
        lam, dt = self.eig(), torch.exp(self.log_dt)
        P, B = as_complex(self.P), as_complex(self.B)
        return [dplr_kernel(lam, P, B, as_complex(C), dt, self.l_max)[:, :L] for C in self.C]

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        k = self._kernels(u.shape[1])
        return fft_conv(u, k[0], k[1] if self.bidirectional else None) + u * self.D

    # --- recurrent mode: the full N-dimensional complex state, dense Ā -------------------------
    def _dense_system(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ā (H, N, N), B̄ (H, N), C (H, N) in complex128 on the full basis [slots, conjugates]."""
        full = lambda x: torch.cat([x, x.conj()], -1).to(torch.complex128)  # noqa: E731
        lam, P, B, C_tilde = (full(x) for x in (self.eig(), *map(as_complex, (self.P, self.B, self.C[0]))))
        dt = torch.exp(self.log_dt).to(torch.float64)[:, None, None]
        A = torch.diag_embed(lam) - P[..., :, None] * P.conj()[..., None, :]
        I = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        left = I - dt / 2 * A
        Ab = torch.linalg.solve(left, I + dt / 2 * A)
        Bb = torch.linalg.solve(left, dt[..., 0] * B)
        # C̃ = C (I − Ā^l_max)  ⇒  C = C̃ (I − Ā^l_max)⁻¹
        C = torch.linalg.solve((I - torch.linalg.matrix_power(Ab, self.l_max)).transpose(-1, -2), C_tilde)
        return Ab, Bb, C

    def default_state(self, batch: int) -> torch.Tensor:
        self._step_system = self._dense_system()
        H, N = self.d_model, 2 * self.B.shape[-2]
        return torch.zeros(batch, H, N, dtype=torch.complex128, device=self.B.device)

    def ssm_step(self, u_t, state):
        Ab, Bb, C = getattr(self, "_step_system", None) or self._dense_system()
        state = torch.einsum("hnm,bhm->bhn", Ab, state) + Bb * u_t[..., None].to(Bb.dtype)
        y = (C * state).sum(-1).real + self.D.to(torch.float64) * u_t
        return y.to(u_t.dtype), state
