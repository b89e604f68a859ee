"""ListOps (LRA): the value (0–9) of a nested expression of list operations on digits.

Files, as in the LRA release: `<data_dir>/listops-1000/basic_{train,val,test}.tsv`. Each is
tab-separated with the header `Source\tTarget` and was written by Python's csv module (CRLF line
ends). `Source` is the expression with the generator's tree parentheses, e.g.
`( ( ( [MAX 2 ) 9 ) ] )` for MAX(2, 9); `Target` is its value.

Tokens: parentheses are dropped, as LRA's tokenizer does. Vocabulary (d_input 16): padding 0,
digits 0–9 → 1–10, `[MIN [MAX [MED [SM` → 11–14, `]` → 15. Sequences are truncated or zero-padded
to `max_len` (2048 by default, LRA's length).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ssm.data.base import BadItems, FileTaskOptions, Task, count_lines, file_task, require_split_files
from ssm.data.cache import items_builder, load_or_build, lra_task

LISTOPS_DIR = "listops-1000"
SPLIT_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
HEADER = "Source\tTarget"
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
CLOSE = "]"
PAD_ID = 0
VOCAB: dict[str, int] = {
    **{str(digit): 1 + digit for digit in range(10)},
    **{op: 11 + i for i, op in enumerate(OPERATORS)},
    CLOSE: 15,
}
VOCAB_SIZE = 1 + len(VOCAB)  # with the padding id
PROVIDER = (
    "Generate it with `ssmbench data generate listops --data-dir {data_dir}`, or unpack the LRA release "
    "(lra_release.gz from https://github.com/google-research/long-range-arena) into {data_dir}."
)


def read_listops_tsv(path: Path, bad: BadItems) -> Iterator[tuple[list[int], int]]:
    """(token ids, target) for each well-formed row of one ListOps TSV file.

    Bad rows (wrong column count, unknown token, target not in 0–9, empty expression, invalid
    UTF-8) go to `bad`, which raises a `DataFormatError` naming the file and line unless skipping.
    Blank lines and the `Source\tTarget` header are ignored.
    """
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError:
                bad.report(path, "not valid UTF-8", line=line_no)
                continue
            if not line or (line_no == 1 and line == HEADER):
                continue
            columns = line.split("\t")
            if len(columns) != 2:
                bad.report(
                    path,
                    f"expected 2 tab-separated columns (Source, Target), found {len(columns)}",
                    line=line_no,
                )
                continue
            source, target = columns
            if target.strip() not in {str(v) for v in range(10)}:
                bad.report(path, f"target must be a digit 0-9, got {target!r}", line=line_no)
                continue
            ids = []
            for token in source.split():
                if token in ("(", ")"):
                    continue
                if token not in VOCAB:
                    bad.report(path, f"unknown ListOps token {token!r}", line=line_no)
                    break
                ids.append(VOCAB[token])
            else:
                if not ids:
                    bad.report(path, "empty expression", line=line_no)
                    continue
                yield ids, int(target)


def require_listops_files(data_dir: Path) -> dict[str, Path]:
    """The split files under `<data_dir>/listops-1000/`; DataNotFoundError for the first missing."""
    return require_split_files(
        data_dir / LISTOPS_DIR, SPLIT_FILES, PROVIDER.format(data_dir=data_dir), what="ListOps split"
    )


@file_task(max_len=2048)
def load_listops(data_dir: Path, common: FileTaskOptions) -> Task:
    """The ListOps task from `<data_dir>/listops-1000/` (10 classes, tokens, mean pooling)."""
    paths = require_listops_files(data_dir)

    def examples(split: str, bad: BadItems) -> Iterator[tuple[list[int], int, int]]:
        for ids, target in read_listops_tsv(paths[split], bad):
            ids = ids[: common.max_len]
            yield ids, target, len(ids)

    def capacity() -> dict[str, int]:
        return {split: count_lines(path) for split, path in paths.items()}

    build = items_builder(common.skip_bad, capacity, (common.max_len,), np.int64, examples)
    options = {"max_len": common.max_len, "skip_bad": common.skip_bad}
    entry = load_or_build(data_dir, "listops", options, paths.values(), LISTOPS_DIR, build)
    return lra_task(
        entry,
        "listops",
        common,
        options,
        data_dir / LISTOPS_DIR,
        n_classes=10,
        d_input=VOCAB_SIZE,
        input_type="tokens",
    )
