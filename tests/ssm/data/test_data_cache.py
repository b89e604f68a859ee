"""The preprocessing cache: hits skip the source files, changed options or sources rebuild, writes
are atomic, and memory-mapped tensors survive a rebuild by another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ssm.data.cache as cache
import ssm.data.listops as listops
from ssm.data import get_task


def entries(data_dir: Path, task: str = "listops") -> list[Path]:
    root = data_dir / ".cache" / task
    return sorted(p for p in root.iterdir() if (p / "meta.json").exists()) if root.exists() else []


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every ListOps file the loader parses."""
    reads: list[Path] = []
    original = listops.read_listops_tsv

    def counting(path, bad):
        reads.append(path)
        return original(path, bad)

    monkeypatch.setattr(listops, "read_listops_tsv", counting)
    return reads


def test_second_load_reads_the_cache(published, tmp_path: Path, count_reads: list[Path]):
    published.listops(tmp_path)
    first = get_task("listops", data_dir=tmp_path, max_len=32)
    assert first.metadata["cache"] == "built" and len(count_reads) == 3
    second = get_task("listops", data_dir=tmp_path, max_len=32)
    assert second.metadata["cache"] == "hit" and len(count_reads) == 3  # no source file parsed
    for split in ("train", "val", "test"):
        assert torch.equal(first.split(split).x, second.split(split).x)
        assert torch.equal(first.split(split).y, second.split(split).y)
    assert second.metadata["cache_path"] == str(entries(tmp_path)[0])


def test_changed_option_or_source_rebuilds(published, tmp_path: Path, count_reads: list[Path]):
    published.listops(tmp_path)
    get_task("listops", data_dir=tmp_path, max_len=32)
    assert get_task("listops", data_dir=tmp_path, max_len=16).metadata["cache"] == "built"
    assert len(count_reads) == 6 and len(entries(tmp_path)) == 2  # one entry per option set
    # Subsampling happens after the cache: no rebuild.
    assert get_task("listops", data_dir=tmp_path, max_len=16, n_train=2).metadata["cache"] == "hit"
    # A touched source file (new mtime) selects a new entry; entries of the old files are deleted.
    source = tmp_path / "listops-1000" / "basic_val.tsv"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert get_task("listops", data_dir=tmp_path, max_len=16).metadata["cache"] == "built"
    assert len(entries(tmp_path)) == 1


def test_a_failed_build_leaves_nothing_to_read(published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    published.listops(tmp_path)

    def crash(path, bad):
        yield [1, 2, 3], 4
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(listops, "read_listops_tsv", crash)
    with pytest.raises(RuntimeError, match="killed mid-build"):
        get_task("listops", data_dir=tmp_path)
    assert list((tmp_path / ".cache" / "listops").iterdir()) == []  # no entry, no temporary directory
    monkeypatch.undo()
    assert get_task("listops", data_dir=tmp_path).metadata["cache"] == "built"


def test_a_leftover_temporary_directory_is_never_read(published, tmp_path: Path):
    published.listops(tmp_path)
    task = get_task("listops", data_dir=tmp_path, max_len=8)
    entry = Path(task.metadata["cache_path"])
    # A crash after writing the arrays but before the rename leaves a ".tmp-" directory, here
    # holding garbage; the loader only reads directories named by a key.
    crashed = entry.parent / f".tmp-{entry.name}-crashed"
    crashed.mkdir()
    (crashed / "meta.json").write_text("{not json")
    assert get_task("listops", data_dir=tmp_path, max_len=8).metadata["cache"] == "hit"


def test_a_damaged_entry_is_rebuilt(published, tmp_path: Path):
    published.listops(tmp_path)
    entry = Path(get_task("listops", data_dir=tmp_path).metadata["cache_path"])
    (entry / "train.x.npy").unlink()
    rebuilt = get_task("listops", data_dir=tmp_path)
    assert rebuilt.metadata["cache"] == "built" and rebuilt.train.x.shape == (5, 2048)


def test_concurrent_builders_agree(tmp_path: Path):
    """Two builders of one key: the second to finish finds the entry in place and uses it."""
    calls = []

    def build(writer):
        calls.append(1)
        me = len(calls)
        if me == 1:  # while this build runs, "another process" completes the same entry
            cache.load_or_build(tmp_path, "demo", {}, [], "demo", build)
        writer.allocate("train.x", (2,), np.int64)[:] = [me, 7]
        return {"builder": me}

    entry = cache.load_or_build(tmp_path, "demo", {}, [], "demo", build)
    assert entry.info == {"builder": 2} and entry.arrays["train.x"].tolist() == [2, 7]
    assert [p.name for p in (tmp_path / ".cache" / "demo").iterdir()] == [entry.path.name]


def test_read_only_data_dir_builds_in_memory(published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    published.listops(tmp_path)
    real_mkdtemp = cache.tempfile.mkdtemp

    def refuse_in_data_dir(suffix=None, prefix=None, dir=None):
        if dir is not None and str(dir).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkdtemp(suffix, prefix, dir)

    monkeypatch.setattr(cache.tempfile, "mkdtemp", refuse_in_data_dir)
    task = get_task("listops", data_dir=tmp_path, max_len=16)
    assert task.metadata["cache"] == "uncached" and len(task.train) == 5
    assert not isinstance(task.train.x.numpy(), np.memmap)


def test_tensors_survive_a_rebuild_by_another_process(published, tmp_path: Path):
    published.listops(tmp_path)
    task = get_task("listops", data_dir=tmp_path, max_len=32)
    old_entry = Path(task.metadata["cache_path"])
    expected = task.train.x.clone()
    # Another process changes a source file and loads the task: it builds a new entry and deletes
    # the old one, whose files this process still has mapped.
    script = (
        "import os, sys; from ssm.data import get_task\n"
        "p = sys.argv[1] + '/listops-1000/basic_train.tsv'\n"
        "st = os.stat(p); os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))\n"
        "print(get_task('listops', data_dir=sys.argv[1], max_len=32).metadata['cache'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    assert result.stdout.strip() == "built"
    assert not old_entry.exists()
    assert torch.equal(task.train.x, expected)  # the old mapping still reads the old data
    assert task.train.x[torch.tensor([4, 0])].shape == (2, 32)


def test_cache_metadata_is_json(published, tmp_path: Path):
    published.listops(tmp_path)
    task = get_task("listops", data_dir=tmp_path, max_len=8, skip_bad=True)
    meta = json.loads((Path(task.metadata["cache_path"]) / "meta.json").read_text())
    assert meta["options"] == {"max_len": 8, "skip_bad": True}
    assert meta["info"]["counts"] == {"train": 5, "val": 2, "test": 2}
