"""Benchmark of `ssm.data`: generator throughput, and per task the preprocessing time (first load,
building the cache) against the cached load time.

    python bench/data.py [--quick] [--repeats 5] [--workdir DIR]

Data sets are written in a temporary directory: ListOps and Pathfinder by our generators, the other
LRA tasks as synthetic files in their publishers' formats (random bytes and pixels, realistic
sizes per item, fewer items than the real releases). Timings are wall-clock seconds on this
machine; the cached load maps the arrays (no copy), so a column also times one full read of `x`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ssm.data import get_task
from ssm.data.generate_listops import generate_listops
from ssm.data.generate_pathfinder import generate_pathfinder


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# --- files in the publishers' formats ------------------------------------------------------------


def write_imdb(data_dir: Path, n_per_label: int, rng: np.random.Generator) -> None:
    """aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt with printable bytes (~1.3 kB, like IMDB)."""
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            directory = data_dir / "aclImdb" / split / label
            directory.mkdir(parents=True)
            for i in range(n_per_label):
                size = int(rng.integers(200, 2400))
                (directory / f"{i}_5.txt").write_bytes(rng.integers(32, 127, size, dtype=np.uint8).tobytes())


def write_aan(data_dir: Path, sizes: dict[str, int], rng: np.random.Generator) -> None:
    """tsv_data/new_aan_pairs.<split>.tsv: label, id1, id2, text1, text2 (texts of 1–6 kB)."""
    directory = data_dir / "tsv_data"
    directory.mkdir(parents=True)
    for split, n in sizes.items():
        with open(directory / f"new_aan_pairs.{split}.tsv", "wb") as f:
            for i in range(n):
                texts = [
                    rng.integers(32, 127, int(rng.integers(1000, 6000)), dtype=np.uint8).tobytes()
                    for _ in "ab"
                ]
                f.write(b"\t".join([str(i % 2).encode(), b"A%d" % i, b"B%d" % i, *texts]) + b"\n")


def write_cifar(data_dir: Path, n_per_batch: int, rng: np.random.Generator) -> None:
    """cifar-10-batches-py/{data_batch_1..5,test_batch}: pickled dicts with b"data", b"labels"."""
    directory = data_dir / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n_per_batch).tolist(),
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


# --- measurements --------------------------------------------------------------------------------


def disk_megabytes(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def measure_task(name: str, data_dir: Path, repeats: int, **options: object) -> dict[str, object]:
    """Preprocessing (cold cache) and cached load times of one task."""
    shutil.rmtree(data_dir / ".cache" / name, ignore_errors=True)
    build_s, task = timed(lambda: get_task(name, data_dir=data_dir, **options))
    assert task.metadata["cache"] == "built"
    loads, reads = [], []
    for _ in range(repeats):
        load_s, cached = timed(lambda: get_task(name, data_dir=data_dir, **options))
        assert cached.metadata["cache"] == "hit"
        read_s, _ = timed(lambda c=cached: [float(c.split(s).x.sum()) for s in ("train", "val", "test")])
        loads.append(load_s)
        reads.append(load_s + read_s)
    n = sum(len(task.split(s)) for s in ("train", "val", "test"))
    return {
        "task": name,
        "examples": n,
        "cache_mb": disk_megabytes(Path(task.metadata["cache_path"])),
        "build_s": build_s,
        "load_s": statistics.median(loads),
        "read_s": statistics.median(reads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the default sizes")
    parser.add_argument("--repeats", type=int, default=5, help="cached loads per task (median reported)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to write (default: a temporary dir)"
    )
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rng = np.random.default_rng(0)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ssmbench-bench-data-"))
    workdir.mkdir(parents=True, exist_ok=True)

    print(f"# ssm.data benchmark — {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}")  # fmt: skip
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; data in {workdir}\n")

    # Generators.
    n_listops = max(10, int(600 * scale))
    n_train = n_listops - 2 * (n_listops // 10)
    seconds, _ = timed(lambda: generate_listops(workdir, n_train=n_train, n_val=n_listops // 10,
                                                n_test=n_listops // 10, seed=0, force=True))  # fmt: skip
    rows = [("ListOps (LRA lengths 500–2000)", n_listops, "trees", seconds)]
    for size, n in ((32, max(20, int(1000 * scale))), (128, max(10, int(100 * scale)))):
        seconds, _ = timed(lambda size=size, n=n: generate_pathfinder(
            workdir, size=size, contour_length=14, n_images=n, seed=0, workers=1, force=True))  # fmt: skip
        rows.append((f"Pathfinder {size}x{size}, 14 dashes (1 process)", n, "images", seconds))
    print("## Generation\n")
    print("| generator | items | seconds | items/s |")
    print("|---|---:|---:|---:|")
    for label, n, unit, seconds in rows:
        print(f"| {label} | {n} {unit} | {seconds:.2f} | {n / seconds:.1f} |")

    # Publishers' formats for the tasks we cannot generate.
    write_imdb(workdir, max(50, int(1000 * scale)), rng)
    write_aan(workdir, {"train": max(20, int(1000 * scale)), "eval": max(5, int(100 * scale)),
                        "test": max(5, int(100 * scale))}, rng)  # fmt: skip
    write_cifar(workdir, max(50, int(2000 * scale)), rng)

    print("\n## Preprocessing (cold cache) vs cached load\n")
    print(
        "| task | examples | cache MB | preprocess s | cached load s | cached / uncached | load + read x s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    tasks = [("listops", {}), ("text", {}), ("retrieval", {}), ("image", {}),
             ("pathfinder", {}), ("pathx", {})]  # fmt: skip
    for name, options in tasks:
        r = measure_task(name, workdir, args.repeats, **options)
        print(
            f"| {r['task']} | {r['examples']} | {r['cache_mb']:.1f} | {r['build_s']:.3f} | {r['load_s']:.4f} "
            f"| {r['load_s'] / r['build_s']:.4f} | {r['read_s']:.3f} |"
        )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
