"""S4: the diagonal-plus-low-rank SSM of HiPPO-LegS, kernel by Cauchy + Woodbury (Gu et al. 2022)."""

from __future__ import annotations

import torch

from ssm.init import diag_init, hippo_legs_nplr
from ssm.kernels import dplr_kernel, fft_conv

from .base import (
    DiscreteSystem,
    Eigenvalues,
    SSMLayer,
    as_complex,
    complex_parameter,
    complex_storage,
    mark_ssm_parameter,
    register_state_tensor,
    sorted_eigenvalues,
)


class S4(SSMLayer):
    """S4 layer: A = Λ − P P* per channel in the eigenbasis of HiPPO-LegS's normal part, bilinear.

    Λ (stored under `reparam`), P, B come from HiPPO-LegS (init "legs"); C is S4's
    C̃ = C (I − Ā^l_max), the output row of the generating function truncated at `l_max` — the kernel
    for any L ≤ l_max is the first L taps of that one. `train_eigenvalues=False` freezes the whole
    state matrix A = Λ − P P* and dt (buffers): the eigenvalues of A, not only Λ, stay put.
    Recurrent mode runs the dense system (`discrete_system`), rebuilt from the current parameters
    at every step.
    """

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
        # The eigenbasis of HiPPO-LegS's normal part: legs's eigenvalues, V* (to_slots) and V (from_slots).
        legs = diag_init("legs", d_state)
        _, P, B = hippo_legs_nplr(d_state)
        in_slots = lambda x: (legs.to_slots @ x.to(torch.complex128)).to(torch.complex64).repeat(H, 1)  # noqa: E731
        self.eig = Eigenvalues(legs.lam.repeat(H, 1), self.reparam, self.train_eigenvalues)
        self._make_log_dt(H)
        register_state_tensor(self, "P", complex_storage(in_slots(P)), self.train_eigenvalues)  # (H N2 2)
        self.B = mark_ssm_parameter(complex_parameter(in_slots(B)))  # (H N2 2)
        n_directions = 2 if self.bidirectional else 1
        C = torch.randn(n_directions, H, d_state, dtype=torch.float64).to(torch.complex128) @ legs.from_slots
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

    # --- the dense system: recurrent mode and diagnostics -------------------------------------
    def dense_system(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The continuous system (A, B): A = Λ − P P* (H, N, N) and B (H, N), complex128, on the full
        complex basis [slots, conjugates] (where A is similar to a real matrix: HiPPO-LegS at init)."""
        full = lambda x: torch.cat([x, x.conj()], -1).to(torch.complex128)  # noqa: E731
        lam, P, B = full(self.eig()), full(as_complex(self.P)), full(as_complex(self.B))
        return torch.diag_embed(lam) - P[..., :, None] * P.conj()[..., None, :], B

    def discrete_system(self) -> DiscreteSystem:
        """Bilinear discretization of `dense_system`: Ab (H, N, N), Bb (H, N) complex128; C
        (directions, H, N) complex128, the output rows behind C̃ (C = C̃ (I − Ā^l_max)⁻¹); dt (H,)."""
        A, B = self.dense_system()
        dt = torch.exp(self.log_dt)
        step = dt.to(torch.float64)[:, None, None]
        I = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        left = I - step / 2 * A
        Ab = torch.linalg.solve(left, I + step / 2 * A)
        Bb = torch.linalg.solve(left, step[..., 0] * B)
        C_tilde = as_complex(self.C).to(torch.complex128)
        C_tilde = torch.cat([C_tilde, C_tilde.conj()], -1)  # (directions H N)
        # C̃ = C (I − Ā^l_max)  ⇒  Cᵀ = ((I − Ā^l_max)ᵀ)⁻¹ C̃ᵀ, per direction
        truncation = (I - torch.linalg.matrix_power(Ab, self.l_max)).transpose(-1, -2)
        C = torch.linalg.solve(truncation, C_tilde[..., None])[..., 0]
        return DiscreteSystem(Ab, Bb, C, dt, diagonal=False)

    def eigenvalues(self) -> torch.Tensor:
        """eig(A) of the full state matrix A = Λ − P P*: complex128 (H, N), all N of them (HiPPO-LegS's
        are real, −1 … −N, so they do not come in conjugate pairs), sorted by real then imaginary part."""
        return sorted_eigenvalues(self.dense_system()[0])

    def default_state(self, batch: int) -> torch.Tensor:
        H, N = self.d_model, 2 * self.B.shape[-2]
        return torch.zeros(batch, H, N, dtype=torch.complex128, device=self.B.device)

    def ssm_step(self, u_t, state):
        system = self.discrete_system()  # from the current parameters: nothing cached across updates
        state = torch.einsum("hnm,bhm->bhn", system.Ab, state) + system.Bb * u_t[..., None].to(
            system.Bb.dtype
        )
        y = (system.C[0] * state).sum(-1).real + self.D.to(torch.float64) * u_t
        return y.to(u_t.dtype), state
