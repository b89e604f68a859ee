"""Preprocessed LRA tensors, cached on disk and opened as copy-on-write memory maps.

Layout: `<data_dir>/.cache/<task>/<key>/{<array>.npy, meta.json}`. The key hashes the cache format,
the task, its preprocessing options and every source file's (relative path, size, mtime), so a
changed option or a touched source file selects a new entry and the old one is never read again.

Writes are atomic: an entry is built in a temporary sibling directory (`.tmp-*`) and renamed into
place, so a reader sees a complete entry or none, and a crash leaves only a `.tmp-*` directory that
nobody reads (removed a day later). An entry is never modified in place; entries whose sources
changed are deleted after a rebuild. On POSIX a deleted file stays readable through existing memory
maps, so tensors another process loaded earlier remain valid when this one rebuilds.

If the data directory is read-only, the arrays are built in a scratch directory and held in memory.

The end of the module is what every LRA loader does with an entry: fill its splits one example at a
time (`fill_splits`, `build_info`) and make the Task over it (`lra_task`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssm.data.base import SPLITS, BadItems, FileTaskOptions, Task, make_splits

CACHE_FORMAT = 1
CACHE_DIR_NAME = ".cache"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 24 * 3600


class CacheWriter:
    """Allocates the arrays of one cache entry as zero-filled `.npy` memory maps in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._arrays: dict[str, np.memmap] = {}
        self._rows: dict[str, int] = {}

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.memmap:
        """A zero-filled array of `shape` (at least one row, so that empty splits still map), whose
        first `shape[0]` rows are valid unless `set_rows` says fewer."""
        padded = (max(1, shape[0]), *shape[1:])
        array = np.lib.format.open_memmap(
            self.directory / f"{name}.npy", mode="w+", dtype=dtype, shape=padded
        )
        self._arrays[name] = array
        self._rows[name] = shape[0]
        return array

    def set_rows(self, name: str, rows: int) -> None:
        """Declare that only the first `rows` rows of array `name` hold data (skipped items)."""
        self._rows[name] = rows

    def close(self) -> dict[str, dict[str, Any]]:
        """Flush every array to disk; returns their descriptions for meta.json."""
        description = {}
        for name, array in self._arrays.items():
            array.flush()
            description[name] = {
                "rows": self._rows[name],
                "shape": list(array.shape),
                "dtype": str(array.dtype),
            }
        self._arrays.clear()
        return description


@dataclass
class CacheEntry:
    """Loaded arrays (memory-mapped unless `status == "uncached"`) and the builder's `info` dict.

    `status`: "hit" (read from disk), "built" (just preprocessed) or "uncached" (read-only data dir).
    """

    arrays: dict[str, np.ndarray]
    info: dict[str, Any]
    status: str
    path: Path | None


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def fingerprint(files: Iterable[Path], root: Path) -> list[list[Any]]:
    """(path relative to `root`, size in bytes, mtime in ns) of each file, sorted by path; a
    missing file has size and mtime −1."""
    rows = []
    for path in files:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = str(path)
        try:
            stat = path.stat()
        except FileNotFoundError:  # listed but absent: the loader reports it as a bad item
            rows.append([name, -1, -1])
            continue
        rows.append([name, stat.st_size, stat.st_mtime_ns])
    return sorted(rows)


def load_or_build(
    data_dir: Path,
    task: str,
    options: dict[str, Any],
    sources: Iterable[Path],
    source_root: str,
    build: Callable[[CacheWriter], dict[str, Any]],
) -> CacheEntry:
    """The cache entry for (task, options, sources), building it with `build(writer)` if absent.

    `build` allocates and fills arrays through the writer and returns a JSON-serializable info dict.
    `source_root` names the source tree (e.g. "listops-1000"): after a rebuild, entries of the same
    tree built from different file versions are deleted.
    """
    source_hash = _digest(fingerprint(sources, data_dir))
    key = _digest([CACHE_FORMAT, task, options, source_hash])[:24]
    task_dir = data_dir / CACHE_DIR_NAME / task
    entry_dir = task_dir / key

    loaded = _load_entry(entry_dir)
    if loaded is not None:
        return CacheEntry(*loaded, status="hit", path=entry_dir)

    try:
        task_dir.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=task_dir))
    except OSError:
        return _build_in_memory(build)

    try:
        writer = CacheWriter(tmp_dir)
        info = build(writer)
        meta = {
            "format": CACHE_FORMAT,
            "task": task,
            "options": options,
            "source_root": source_root,
            "source_hash": source_hash,
            "arrays": writer.close(),
            "info": info,
            "created": time.time(),
        }
        with open(tmp_dir / "meta.json", "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        if entry_dir.exists() and _load_entry(entry_dir) is None:
            # An unreadable leftover (files deleted by hand): move it aside.
            shutil.rmtree(_move_aside(entry_dir, task_dir), ignore_errors=True)
        try:
            os.rename(tmp_dir, entry_dir)
        except OSError:
            # Another process completed the same entry first; use theirs.
            shutil.rmtree(tmp_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise

    _prune(task_dir, keep=entry_dir, source_root=source_root, source_hash=source_hash)
    loaded = _load_entry(entry_dir)
    if loaded is None:
        raise RuntimeError(f"cache entry {entry_dir} could not be read back after it was written")
    return CacheEntry(*loaded, status="built", path=entry_dir)


def _load_entry(entry_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays (copy-on-write memory maps, valid rows only) and info of a complete entry, or None."""
    try:
        meta = json.loads((entry_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != CACHE_FORMAT:
        return None
    arrays = {}
    for name, spec in meta["arrays"].items():
        try:
            array = np.load(entry_dir / f"{name}.npy", mmap_mode="c")
        except (OSError, ValueError):
            return None
        if list(array.shape) != spec["shape"] or str(array.dtype) != spec["dtype"]:
            return None
        arrays[name] = array[: spec["rows"]]
    return arrays, meta["info"]


def _build_in_memory(build: Callable[[CacheWriter], dict[str, Any]]) -> CacheEntry:
    with tempfile.TemporaryDirectory(prefix="ssmbench-data-") as scratch:
        writer = CacheWriter(Path(scratch))
        info = build(writer)
        arrays = {}
        for name, spec in writer.close().items():
            arrays[name] = np.array(np.load(Path(scratch) / f"{name}.npy")[: spec["rows"]])
    return CacheEntry(arrays, info, status="uncached", path=None)


def _move_aside(path: Path, parent: Path) -> Path:
    aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}trash-", dir=parent)) / path.name
    os.rename(path, aside)
    return aside.parent


def _prune(task_dir: Path, *, keep: Path, source_root: str, source_hash: str) -> None:
    """Delete entries of `source_root` built from other file versions, and stale temp directories."""
    now = time.time()
    for child in task_dir.iterdir():
        if child == keep:
            continue
        if child.name.startswith(TMP_PREFIX):
            try:
                if now - child.stat().st_mtime > STALE_TMP_SECONDS:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                pass
            continue
        try:
            meta = json.loads((child / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("source_root") == source_root and meta.get("source_hash") != source_hash:
            shutil.rmtree(child, ignore_errors=True)


class SplitArrays:
    """One split's `x`, `y` and `lengths` arrays in a cache entry, filled one example at a time.

    Loaders write example `n` with `append(x, y, length)`, or into `x[n]`, `y[n]`, `lengths[n]`
    themselves followed by `next()` (x is zero-filled: padding is free); `close()` records how many
    examples were written.
    """

    def __init__(
        self,
        writer: CacheWriter,
        split: str,
        capacity: int,
        x_shape: tuple[int, ...],
        x_dtype: type,
        *,
        y_shape: tuple[int, ...] = (),
        y_dtype: type = np.int64,
        lengths_shape: tuple[int, ...] = (),
    ) -> None:
        self.writer = writer
        self.split = split
        self.x = writer.allocate(f"{split}.x", (capacity, *x_shape), x_dtype)
        self.y = writer.allocate(f"{split}.y", (capacity, *y_shape), y_dtype)
        self.lengths = writer.allocate(f"{split}.lengths", (capacity, *lengths_shape), np.int64)
        self.n = 0

    def next(self) -> None:
        self.n += 1

    def append(self, x: np.ndarray, y: Any, length: Any) -> None:
        """Write one example at row `n` and move on. `x` may be shorter than a row along each axis:
        it fills the leading part, the rest stays zero (padding)."""
        x = np.asarray(x)
        self.x[(self.n, *(slice(0, size) for size in x.shape))] = x
        self.y[self.n] = y
        self.lengths[self.n] = length
        self.n += 1

    def close(self) -> int:
        for part in ("x", "y", "lengths"):
            self.writer.set_rows(f"{self.split}.{part}", self.n)
        return self.n


def entry_split(entry: CacheEntry, split: str) -> tuple[Any, Any, Any]:
    """The (x, y, lengths) arrays of `split` in a loaded entry."""
    return tuple(entry.arrays[f"{split}.{part}"] for part in ("x", "y", "lengths"))


def entry_metadata(entry: CacheEntry) -> dict[str, Any]:
    """What a Task's metadata reports about its cache entry and the builder's info."""
    return {
        "cache": entry.status,
        "cache_path": str(entry.path) if entry.path is not None else None,
        **entry.info,
    }


def fill_splits(
    writer: CacheWriter,
    capacity: Mapping[str, int],
    x_shape: tuple[int, ...],
    x_dtype: type,
    examples: Callable[[str], Iterable[tuple[np.ndarray, Any, Any]]],
) -> dict[str, int]:
    """Each split's arrays filled with the (x, y, length) of `examples(split)`, at most
    `capacity[split]` of them; returns the number written per split."""
    counts = {}
    for split in SPLITS:
        arrays = SplitArrays(writer, split, capacity[split], x_shape, x_dtype)
        for x, y, length in examples(split):
            arrays.append(x, y, length)
        counts[split] = arrays.close()
    return counts


def items_builder(
    skip_bad: bool,
    capacity: Callable[[], Mapping[str, int]],
    x_shape: tuple[int, ...],
    x_dtype: type,
    examples: Callable[[str, BadItems], Iterable[tuple[np.ndarray, Any, Any]]],
    *earlier_bad: BadItems,
) -> Callable[[CacheWriter], dict[str, Any]]:
    """The `build` (for `load_or_build`) of a loader that reads its items one by one:
    `examples(split, bad)` yields each split's (x, y, length) and reports corrupt items to `bad`;
    `capacity()` bounds each split (called only when building: it may read the files); `earlier_bad`
    holds items found corrupt before building (while listing), counted first."""

    def build(writer: CacheWriter) -> dict[str, Any]:
        bad = BadItems(skip_bad)
        counts = fill_splits(writer, capacity(), x_shape, x_dtype, lambda split: examples(split, bad))
        return build_info(counts, *earlier_bad, bad)

    return build


def build_info(counts: dict[str, int], *bad: BadItems) -> dict[str, Any]:
    """The info dict a loader's `build` returns: examples per split and the corrupt items skipped."""
    return {
        "counts": counts,
        "skipped": sum(b.count for b in bad),
        "skipped_items": [example for b in bad for example in b.examples],
    }


def lra_task(
    entry: CacheEntry,
    name: str,
    common: FileTaskOptions,
    options: dict[str, Any],
    source: Path,
    **facts: Any,
) -> Task:
    """LRA task `name` over a loaded cache entry: its splits subsampled to `common.sizes`, a pooled
    classification with mean pooling and length `common.max_len`. `facts` are the remaining `Task`
    fields (`n_classes`, `d_input`, `input_type`, `paired`). The metadata records the source, the
    cache status, the builder's info, and the preprocessing `options` with the seed."""
    splits = make_splits({s: entry_split(entry, s) for s in SPLITS}, common.sizes, seed=common.seed)
    return Task(
        name=name,
        **splits,
        kind="classification",
        seq_len=common.max_len,
        output="pooled",
        pooling="mean",
        **facts,
        metadata={
            "source": str(source),
            **entry_metadata(entry),
            "options": {**options, "seed": common.seed},
        },
    )
