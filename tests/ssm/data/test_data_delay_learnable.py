"""The delay task's defaults are learnable by a small SSM on a CPU: a 2-layer S4D (d_model 32),
written here in a few lines so the claim about the data does not depend on `ssm.layers`."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssm.data import get_task


class TinyS4D(nn.Module):
    """Diagonal SSM convolution per channel (S4D-Lin init, ZOH), REFERENCE.md §1."""

    def __init__(self, width: int, state: int = 32) -> None:
        super().__init__()
        self.log_dt = nn.Parameter(torch.rand(width) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.log_neg_real = nn.Parameter(torch.full((width, state // 2), math.log(0.5)))
        self.imag = nn.Parameter(math.pi * torch.arange(state // 2).float().repeat(width, 1))
        self.C = nn.Parameter(torch.randn(width, state // 2, 2) * 0.5**0.5)
        self.D = nn.Parameter(torch.randn(width))

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        length = u.shape[1]
        lam = -torch.exp(self.log_neg_real) + 1j * self.imag  # (H, N/2)
        dt_lam = lam * torch.exp(self.log_dt)[:, None]
        C = torch.view_as_complex(self.C) * (torch.exp(dt_lam) - 1) / lam
        kernel = 2 * torch.einsum("hn,hnl->hl", C, torch.exp(dt_lam[..., None] * torch.arange(length))).real
        y = torch.fft.irfft(
            torch.fft.rfft(u.transpose(1, 2), 2 * length) * torch.fft.rfft(kernel, 2 * length)
        )
        return (y[..., :length] + u.transpose(1, 2) * self.D[:, None]).transpose(1, 2)


class Classifier(nn.Module):
    def __init__(self, vocab: int, n_classes: int, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.ssms = nn.ModuleList(TinyS4D(width) for _ in range(depth))
        self.mix = nn.ModuleList(nn.Linear(width, 2 * width) for _ in range(depth))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for norm, ssm, mix in zip(self.norms, self.ssms, self.mix, strict=True):
            h = h + nn.functional.glu(mix(nn.functional.gelu(ssm(norm(h)))))
        return self.head(h[:, -1])  # the task recommends last-step pooling


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread (and do not fight other processes for the CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_layer_s4d_learns_delay_to_90_percent(one_thread):
    torch.manual_seed(0)
    task = get_task("delay")
    assert task.pooling == "last"
    model = Classifier(task.d_input, task.n_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    accuracy = 0.0
    for _ in range(8):  # reaches 0.9 in about three epochs
        for idx in torch.randperm(len(task.train)).split(64):
            loss = nn.functional.cross_entropy(model(task.train.x[idx]), task.train.y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (model(task.test.x).argmax(-1) == task.test.y).float().mean().item()
        if accuracy >= 0.9:
            break
    assert accuracy >= 0.9
