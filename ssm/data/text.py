"""LRA's byte-level text tasks: IMDB sentiment ("text") and AAN document matching ("retrieval").

Both read raw bytes: token id = byte value + 1, padding 0, so d_input is 257.

text — IMDB reviews as their owners publish them (aclImdb_v1.tar.gz), one review per file:
`<data_dir>/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt` (label neg 0, pos 1; `unsup/` is
ignored). Each review is truncated to `max_len` bytes (4096 by default, S4's length for LRA text).
Validation is carved from train deterministically, as S4's `split_train_val` does: a fixed
permutation (seed 42, independent of `seed`) puts `int(n·(1−val_fraction))` reviews in train and the
rest in val.

retrieval — the LRA release's AAN pairs: `<data_dir>/tsv_data/new_aan_pairs.{train,eval,test}.tsv`
("eval" is our val). Tab-separated, no header, no quoting (LRA reads them with
`use_quote_delim=False`), five columns: label (0/1, possibly written as a float such as `1.0`),
id1, id2, text1, text2. Each text is tokenized verbatim, truncated to `max_len` bytes (4000 by
default, LRA's length). `x` is (n, 2, max_len) and `lengths` (n, 2).

Documents with no bytes are corrupt items (mean pooling over zero steps is undefined).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ssm.data.base import (
    SPLITS,
    BadItems,
    DataNotFoundError,
    FileTaskOptions,
    Task,
    carve_validation,
    check_fraction,
    count_lines,
    file_task,
    require_split_files,
)
from ssm.data.cache import CacheWriter, SplitArrays, build_info, items_builder, load_or_build, lra_task

BYTE_VOCAB_SIZE = 257  # padding 0, then bytes 0..255 as 1..256

IMDB_DIR = "aclImdb"
IMDB_LABELS = {"neg": 0, "pos": 1}
IMDB_PROVIDER = (
    "Download the IMDB reviews (aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/sentiment/) "
    "and unpack them into {data_dir}."
)

AAN_DIR = "tsv_data"
AAN_FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
AAN_PROVIDER = (
    "Unpack the LRA release (lra_release.gz from https://github.com/google-research/long-range-arena) "
    "into {data_dir}; the AAN pairs are its tsv_data/ directory."
)


def byte_ids(data: bytes) -> np.ndarray:
    """Token ids of raw bytes: byte value + 1 (0 is padding)."""
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64) + 1


# --- text (IMDB) --------------------------------------------------------------------------------


def list_imdb_reviews(root: Path, split: str) -> list[tuple[Path, int]]:
    """(file, label) of every review in `aclImdb/<split>/{neg,pos}`, negatives first, by file name."""
    provider = IMDB_PROVIDER.format(data_dir=root.parent)
    reviews = []
    for label_name, label in IMDB_LABELS.items():
        directory = root / split / label_name
        if not directory.is_dir():
            raise DataNotFoundError(directory, provider, what="IMDB review directory")
        names = sorted(entry.name for entry in os.scandir(directory) if entry.name.endswith(".txt"))
        if not names:
            raise DataNotFoundError(directory / "*.txt", provider, what="IMDB reviews")
        reviews.extend((directory / name, label) for name in names)
    return reviews


def read_document(path: Path, max_len: int, bad: BadItems) -> bytes | None:
    """The first `max_len` bytes of a file, or None (reported to `bad`) if unreadable or empty."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_len)
    except OSError as error:
        bad.report(path, f"unreadable: {error.strerror}")
        return None
    if not data:
        bad.report(path, "empty document")
        return None
    return data


@file_task(max_len=4096)
def load_text(data_dir: Path, common: FileTaskOptions, *, val_fraction: float = 0.1) -> Task:
    """LRA text: IMDB reviews from `<data_dir>/aclImdb/` (2 classes, byte tokens, mean pooling)."""
    val_fraction = check_fraction("val_fraction", val_fraction)
    root = data_dir / IMDB_DIR
    train_reviews = list_imdb_reviews(root, "train")
    train_index, val_index = carve_validation(len(train_reviews), val_fraction)
    reviews = {
        "train": [train_reviews[i] for i in train_index],
        "val": [train_reviews[i] for i in val_index],
        "test": list_imdb_reviews(root, "test"),
    }

    def examples(split: str, bad: BadItems) -> Iterator[tuple[np.ndarray, int, int]]:
        for path, label in reviews[split]:
            data = read_document(path, common.max_len, bad)
            if data is not None:
                yield byte_ids(data), label, len(data)

    def capacity() -> dict[str, int]:
        return {split: len(reviews[split]) for split in SPLITS}

    build = items_builder(common.skip_bad, capacity, (common.max_len,), np.int64, examples)
    options = {"max_len": common.max_len, "skip_bad": common.skip_bad, "val_fraction": val_fraction}
    sources = (path for split in SPLITS for path, _ in reviews[split])
    entry = load_or_build(data_dir, "text", options, sources, IMDB_DIR, build)
    return lra_task(
        entry, "text", common, options, root, n_classes=2, d_input=BYTE_VOCAB_SIZE, input_type="tokens"
    )


# --- retrieval (AAN) ----------------------------------------------------------------------------


def read_aan_tsv(path: Path, bad: BadItems) -> Iterator[tuple[int, bytes, bytes]]:
    """(label, text1, text2) for each well-formed row of one AAN pairs file.

    Bad rows (not 5 tab-separated columns, label not 0/1, an empty text) go to `bad`, which raises a
    `DataFormatError` naming the file and line unless skipping. Blank lines are ignored, and so is a
    first line `label\t...` (a header some re-exports add; the LRA files have none).
    """
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\r\n")
            if not line or (line_no == 1 and line.startswith(b"label\t")):
                continue
            columns = line.split(b"\t")
            if len(columns) != 5:
                bad.report(
                    path,
                    f"expected 5 tab-separated columns (label, id1, id2, text1, text2), found {len(columns)}",
                    line=line_no,
                )
                continue
            try:
                label = float(columns[0])
            except ValueError:
                label = -1.0
            if label not in (0.0, 1.0):
                bad.report(path, f"label must be 0 or 1, got {columns[0][:20]!r}", line=line_no)
                continue
            if not columns[3] or not columns[4]:
                bad.report(path, "empty document", line=line_no)
                continue
            yield int(label), columns[3], columns[4]


def require_retrieval_files(data_dir: Path) -> dict[str, Path]:
    """The AAN pair files under `<data_dir>/tsv_data/`; DataNotFoundError for the first missing."""
    return require_split_files(
        data_dir / AAN_DIR, AAN_FILES, AAN_PROVIDER.format(data_dir=data_dir), what="AAN pairs file"
    )


@file_task(max_len=4000)
def load_retrieval(data_dir: Path, common: FileTaskOptions) -> Task:
    """LRA retrieval: AAN document pairs from `<data_dir>/tsv_data/` (2 classes, paired byte tokens)."""
    paths = require_retrieval_files(data_dir)

    def build(writer: CacheWriter) -> dict:
        bad = BadItems(common.skip_bad)
        counts = {}
        for split, path in paths.items():
            arrays = SplitArrays(
                writer, split, count_lines(path), (2, common.max_len), np.int64, lengths_shape=(2,)
            )
            for label, text1, text2 in read_aan_tsv(path, bad):
                for j, text in enumerate((text1[: common.max_len], text2[: common.max_len])):
                    arrays.x[arrays.n, j, : len(text)] = byte_ids(text)
                    arrays.lengths[arrays.n, j] = len(text)
                arrays.y[arrays.n] = label
                arrays.next()
            counts[split] = arrays.close()
        return build_info(counts, bad)

    options = {"max_len": common.max_len, "skip_bad": common.skip_bad}
    entry = load_or_build(data_dir, "retrieval", options, paths.values(), AAN_DIR, build)
    facts = {"n_classes": 2, "d_input": BYTE_VOCAB_SIZE, "input_type": "tokens", "paired": True}
    return lra_task(entry, "retrieval", common, options, data_dir / AAN_DIR, **facts)
