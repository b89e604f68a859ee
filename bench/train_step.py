"""Training throughput of S4D, S5 and S4 next to an LSTM and a Transformer encoder of similar size,
in the same run, plus the data wait of the trainer's batching.

    python bench/train_step.py [--length 1024] [--batch 8] [--width 64] [--layers 2] [--steps 5]

A "step" is forward + backward + AdamW on a random token batch of an LRA-like shape. Reported:
tokens/s, the ratio to S4D, and parameter counts (the baselines' widths are chosen so their parameter
counts match S4D's within ~20%). Data wait: the time `ssm.train` spends indexing a batch out of a
`SequenceDataset` (fancy indexing of whole tensors) as a fraction of the step time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from ssm.config import ModelConfig
from ssm.data import SequenceDataset
from ssm.model import SequenceModel

VOCAB, CLASSES = 16, 10


class LSTMClassifier(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.lstm = nn.LSTM(width, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x, lengths=None):
        return self.head(self.lstm(self.embed(x))[0].mean(1))


class TransformerClassifier(nn.Module):
    def __init__(self, width: int, layers: int, length: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(torch.zeros(1, length, width))
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x, lengths=None):
        return self.head(self.encoder(self.embed(x) + self.position[:, : x.shape[1]]).mean(1))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def time_steps(model: nn.Module, data: SequenceDataset, batch: int, steps: int) -> tuple[float, float]:
    """Median seconds per training step, and median seconds spent fetching the batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step_times, fetch_times = [], []
    for i in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        idx = torch.randint(0, len(data), (batch,))
        x, y, lengths = data.x[idx], data.y[idx], data.lengths[idx]  # what ssm.train does per step
        t1 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x, lengths), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        if i:
            step_times.append(t2 - t0)
            fetch_times.append(t1 - t0)
    return statistics.median(step_times), statistics.median(fetch_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--state", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    L, B, H = args.length, args.batch, args.width
    data = SequenceDataset(
        torch.randint(1, VOCAB, (512, L)), torch.randint(0, CLASSES, (512,)), torch.full((512,), L)
    )
    models: dict[str, nn.Module] = {}
    for layer in ("s4d", "s5", "s4"):
        config = ModelConfig(layer=layer, d_model=H, d_state=args.state, n_layers=args.layers)
        models[layer.upper()] = SequenceModel(config, VOCAB, CLASSES, input_type="tokens", l_max=L)
    target = n_params(models["S4D"])
    # widths for the baselines whose parameter counts come closest to S4D's
    lstm_width = min(
        range(8, 4 * H + 1, 4), key=lambda w: abs(n_params(LSTMClassifier(w, args.layers)) - target)
    )
    models["LSTM"] = LSTMClassifier(lstm_width, args.layers)
    tf_width = min(
        range(8, 4 * H + 1, 4), key=lambda w: abs(n_params(TransformerClassifier(w, args.layers, L)) - target)
    )
    models["Transformer"] = TransformerClassifier(tf_width, args.layers, L)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; B={B}, L={L}, H={H}, layers={args.layers}"
    )
    rows = []
    for name, model in models.items():
        step, fetch = time_steps(model, data, B, args.steps)
        rows.append((name, n_params(model), B * L / step, step, fetch / step))
    s4d_rate = rows[0][2]
    print(f"{'model':<12} {'params':>9} {'tokens/s':>10} {'vs S4D':>7} {'step ms':>9} {'data wait':>10}")
    for name, params, rate, step, wait in rows:
        print(
            f"{name:<12} {params:>9,} {rate:>10,.0f} {rate / s4d_rate:>7.2f} {1000 * step:>9.1f} {wait:>10.2%}"
        )
    worst = max(r[4] for r in rows)
    print(f"data wait < 5% of a step: {'yes' if worst < 0.05 else 'no'} (worst {worst:.2%})")
    print("per-epoch diagnostics cost: see bench/diagnostics.py")


if __name__ == "__main__":
    main()
