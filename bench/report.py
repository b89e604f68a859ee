"""Time `ssmbench report` on a synthetic 10⁴-trial sweep (issue 15 §3: ≤ 60 s).

    python bench/report.py                    # 10⁴ trials in two shapes, SQLite in a temporary directory
    python bench/report.py --trials 1000      # a smaller run
    python bench/report.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dbench

The database is filled by bulk inserts shaped like a finished sweep: every trial completed with a
result, `--epochs` epoch rows each carrying the per-epoch diagnostics that `ssm.train` records
(grad-over-weight, eigenvalue drift, memory capacity per layer), a Fourier-noise table per result
and small diagnostic arrays (eigenvalues, MF(τ) at init / best / end). Two shapes of the same size:
- `search`: many configuration groups with few seeds (an Optuna search over lr × the grid axes);
- `grid`: few groups with many seeds.
Timed phases: `load` (the report's queries: `load_report_data` + the arrays), `render` (figures as
PNG + SVG, summary.json, index.html), `total` (both, as the CLI runs them, without process start).
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from orchestrator.db import make_engine, session_factory, transaction, upgrade
from orchestrator.models import EpochMetric, Result, Sweep, Trial
from orchestrator.report import load_report_data, write_report
from orchestrator.report.build import diagnostic_runs
from orchestrator.report.data import load_diagnostic_arrays
from orchestrator.spec import group_key
from ssm.config import TrialConfig

INITS = ("legs", "inv", "lin", "real")
REPARAMS = ("exp", "softplus", "none", "best")
FREQUENCIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def fill_sweep(sessions, n_groups: int, n_seeds: int, n_epochs: int, name: str, rng: random.Random) -> int:
    """A completed sweep of n_groups × n_seeds trials on the delay task; returns its id."""
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        sweep = Sweep(name=name, state="completed", spec={"name": name, "tasks": ["delay"]}, created_at=now)
        s.add(sweep)
        s.flush()
        sweep_id = sweep.id

        trials, quality = [], []
        for g in range(n_groups):
            init, reparam = INITS[g % 4], REPARAMS[(g // 4) % 4]
            trained = (g // 16) % 2 == 0
            lr = float(f"{10 ** (-4 + 2 * ((g // 32) + 0.5) / max(1, math.ceil(n_groups / 32))):.2g}")
            skill = rng.uniform(0.55, 0.95)
            for seed in range(n_seeds):
                config = TrialConfig.model_validate(
                    {
                        "task": {"name": "delay"},
                        "model": {"init": init, "reparam": reparam, "train_eigenvalues": trained},
                        "optim": {"lr": lr, "epochs": n_epochs},
                        "seed": seed,
                    }
                )
                trials.append(
                    {
                        "sweep_id": sweep_id,
                        "number": len(trials),
                        "state": "completed",
                        "attempt": 1,
                        "config": config.model_dump(mode="json"),
                        "config_hash": config.hash(),
                        "group_key": group_key(config),
                        "task": "delay",
                        "layer": "s4d",
                        "init": init,
                        "reparam": reparam,
                        "train_eigenvalues": trained,
                        "seed": seed,
                        "resources": {},
                        "created_at": now,
                        "finished_at": now,
                    }
                )
                quality.append(skill)
        ids = s.scalars(insert(Trial).returning(Trial.id, sort_by_parameter_order=True), trials).all()

        results, epochs = [], []
        for trial_id, skill in zip(ids, quality, strict=True):
            curve = [
                min(0.99, skill * (1 - math.exp(-(e + 1) / 3)) + rng.gauss(0, 0.01)) for e in range(n_epochs)
            ]
            best = max(range(n_epochs), key=curve.__getitem__)
            test = curve[best] + rng.gauss(0, 0.01)
            results.append(
                {
                    "trial_id": trial_id,
                    "attempt": 1,
                    "status": "completed",
                    "metric": "accuracy",
                    "best_epoch": best,
                    "val_metric": curve[best],
                    "test_metric": test,
                    "payload": {"status": "completed", "diagnostics": _diagnostics(rng, test)},
                    "created_at": now,
                }
            )
            for e, value in enumerate(curve):
                metrics = {
                    "epoch": e,
                    "train_loss": 1.0 / (e + 1),
                    "val_loss": 1 - value,
                    "val_metric": value,
                    "grad_over_weight_mean": 10 ** rng.uniform(-4, -2),
                    "grad_over_weight_max": 10 ** rng.uniform(-3, -1),
                    "eigenvalue_drift_mean": 0.01 * e,
                    "eigenvalue_drift_relative": 0.002 * e * skill,
                    "memory_capacity": [20 + e + rng.random(), 15 + e],
                }
                epochs.append(
                    {
                        "trial_id": trial_id,
                        "attempt": 1,
                        "epoch": e,
                        "train_loss": metrics["train_loss"],
                        "val_loss": metrics["val_loss"],
                        "val_metric": value,
                        "metrics": metrics,
                        "created_at": now,
                    }
                )
        s.execute(insert(Result), results)
        s.execute(insert(EpochMetric), epochs)
    return sweep_id


def _diagnostics(rng: random.Random, clean: float) -> dict:
    fourier = [{"frequency": None, "accuracy": clean}]
    fourier += [{"frequency": f, "accuracy": clean * (1 - 0.6 * f) + rng.gauss(0, 0.01)} for f in FREQUENCIES]

    def layer(shift: float) -> dict:
        return {
            "eigenvalues": [[-0.5 - shift * rng.random(), math.pi * n] for n in range(8)],
            "dt": [0.01] * 4,
            "Ab": [[0.9, 0.1]] * 8,
            "memory_function": [[math.exp(-k / (20 + 10 * shift)) for k in range(64)] for _ in range(2)],
            "memory_capacity": [20.0, 21.0],
        }

    return {"fourier": fourier, "arrays": {"init": [layer(0), layer(0)], "end": [layer(1), layer(1)]}}


def time_report(sessions, sweep_id: int, out: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    with sessions() as s:
        data = load_report_data(s, [sweep_id])
        arrays = load_diagnostic_arrays(s, diagnostic_runs(data))
    t1 = time.perf_counter()
    write_report(data, out, arrays=arrays)
    t2 = time.perf_counter()
    n_figures = len(list((out / "figures").glob("*.png")))
    return {"load": t1 - t0, "render": t2 - t1, "total": t2 - t0, "figures": n_figures}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        sessions = session_factory(make_engine(url))
        rng = random.Random(0)
        shapes = {"search": (args.trials // 5, 5), "grid": (max(1, args.trials // 100), 100)}
        print(
            f"machine: {platform.node()} · {platform.processor() or platform.machine()} · Python {platform.python_version()}"
        )
        print(f"database: {url.split('?')[0]}")
        print()
        print(
            "| shape | trials | groups × seeds | epoch rows | fill s | load s | render s | total s | figures |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for shape, (n_groups, n_seeds) in shapes.items():
            t0 = time.perf_counter()
            sweep_id = fill_sweep(sessions, n_groups, n_seeds, args.epochs, f"bench-{shape}", rng)
            fill = time.perf_counter() - t0
            timing = time_report(sessions, sweep_id, Path(tmp) / f"report-{shape}")
            trials = n_groups * n_seeds
            print(
                f"| {shape} | {trials:,} | {n_groups} × {n_seeds} | {trials * args.epochs:,} | {fill:.1f} "
                f"| {timing['load']:.2f} | {timing['render']:.2f} | {timing['total']:.2f} | {timing['figures']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
