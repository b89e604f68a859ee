"""ListOps: the loader on hand-written LRA rows, and the generator checked by an independent
evaluator of LRA's parenthesized tuple format."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
import torch

from ssm.data import DataFormatError, DataNotFoundError, get_task
from ssm.data.generate_listops import generate_listops

VOCAB = {**{str(d): d + 1 for d in range(10)}, "[MIN": 11, "[MAX": 12, "[MED": 13, "[SM": 14, "]": 15}
OPERATORS = {"[MIN", "[MAX", "[MED", "[SM"}


# --- an evaluator of LRA's format, written for the tests ---------------------------------------


def parse_pairs(tokens: list[str], i: int = 0) -> tuple[object, int]:
    """LRA's text is a binary tree of pairs: node := atom | "(" node node ")"."""
    if tokens[i] == "(":
        left, i = parse_pairs(tokens, i + 1)
        right, i = parse_pairs(tokens, i)
        assert tokens[i] == ")", f"expected ')' at token {i}"
        return (left, right), i + 1
    assert tokens[i] != ")", f"unexpected ')' at token {i}"
    return tokens[i], i + 1


def evaluate(node: object) -> object:
    """Fold the pairs left to right: (op, a1) opens a call, (call, a) adds an argument, (call, "]")
    applies the operator."""
    if isinstance(node, str):
        return int(node) if node.isdigit() else node
    left, right = evaluate(node[0]), evaluate(node[1])
    if isinstance(left, str) and left in OPERATORS:
        return (left, [right])
    if right == "]":
        op, args = left
        if op == "[MIN":
            return min(args)
        if op == "[MAX":
            return max(args)
        if op == "[MED":
            return int(statistics.median(args))
        return sum(args) % 10
    op, args = left
    return (op, [*args, right])


def lra_value(source: str) -> int:
    tokens = source.split()
    tree, end = parse_pairs(tokens)
    assert end == len(tokens), "trailing tokens"
    value = evaluate(tree)
    assert isinstance(value, int), "expression does not close"
    return value


def tree_shape(source: str) -> tuple[int, int, int]:
    """(depth as LRA counts it: root operator 1, its arguments 2, ...; fewest and most arguments
    of any operator)."""
    depth, deepest, counts, fewest, most = 0, 0, [], 99, 0
    for token in source.split():
        if token in OPERATORS:
            if counts:
                counts[-1] += 1
            depth += 1
            counts.append(0)
        elif token == "]":
            n = counts.pop()
            fewest, most = min(fewest, n), max(most, n)
            depth -= 1
        elif token.isdigit():
            counts[-1] += 1
            deepest = max(deepest, depth + 1)
    return deepest, fewest, most


def test_evaluator_on_known_expressions(published):
    assert lra_value("( ( ( [MAX 2 ) 9 ) ] )") == 9
    assert lra_value("( ( ( ( [MED 1 ) 2 ) 9 ) ] )") == 2
    assert lra_value("( ( ( [MED 4 ) 7 ) ] )") == 5  # median of an even count, rounded down
    # SM(5, 8, MED(3, 1), 2) = (5 + 8 + 2 + 2) mod 10
    assert lra_value("( ( ( ( ( [SM 5 ) 8 ) ( ( ( [MED 3 ) 1 ) ] ) ) 2 ) ] )") == 7
    for rows in published.LISTOPS_ROWS.values():  # the loader fixture's targets are right
        assert all(lra_value(source) == target for source, target in rows)


# --- loader -------------------------------------------------------------------------------------


def test_loader_reads_the_published_tsv(published, tmp_path: Path):
    rows = published.listops(tmp_path)
    task = get_task("listops", data_dir=tmp_path, max_len=16)
    assert (task.kind, task.n_classes, task.d_input, task.seq_len) == ("classification", 10, 16, 16)
    assert (task.input_type, task.output, task.pooling, task.paired) == ("tokens", "pooled", "mean", False)
    assert task.metadata["source"] == str(rows)
    for split in ("train", "val", "test"):
        dataset = task.split(split)
        expected = _rows(tmp_path, split)
        assert len(dataset) == len(expected)
        assert dataset.x.dtype == torch.int64 and dataset.x.shape == (len(expected), 16)
        assert dataset.y.dtype == torch.int64 and dataset.lengths.dtype == torch.int64
        for i, (source, target) in enumerate(expected):
            tokens = [t for t in source.split() if t not in "()"]
            n = len(tokens)
            assert dataset.lengths[i].item() == n
            assert dataset.x[i, :n].tolist() == [VOCAB[t] for t in tokens]
            assert dataset.x[i, n:].eq(0).all()  # padding id 0
            assert dataset.y[i].item() == int(target) == lra_value(source)


def _rows(data_dir: Path, split: str) -> list[tuple[str, str]]:
    with open(data_dir / "listops-1000" / f"basic_{split}.tsv", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        assert next(reader) == ["Source", "Target"]
        return [(source, target) for source, target in reader]


def test_max_len_truncates(published, tmp_path: Path):
    published.listops(tmp_path)
    task = get_task("listops", data_dir=tmp_path, max_len=3)
    assert task.train.x.shape[1] == 3 and task.train.lengths.max().item() == 3
    assert task.train.x[0].tolist() == [VOCAB["[MAX"], VOCAB["2"], VOCAB["9"]]


def test_missing_split_names_the_file(published, tmp_path: Path):
    published.listops(tmp_path)
    (tmp_path / "listops-1000" / "basic_test.tsv").unlink()
    with pytest.raises(DataNotFoundError, match=r"basic_test\.tsv") as error:
        get_task("listops", data_dir=tmp_path)
    assert "ssmbench data generate listops" in str(error.value)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("( ( ( [MAX 2 ) 9 ) ] )\t9\textra", "expected 2 tab-separated columns"),
        ("( ( ( [FOO 2 ) 9 ) ] )\t9", "unknown ListOps token '\\[FOO'"),
        ("( ( ( [MAX 2 ) 9 ) ] )\t12", "target must be a digit 0-9"),
        ("( )\t3", "empty expression"),
    ],
)
def test_corrupt_rows_name_file_and_line(published, tmp_path: Path, bad_row: str, message: str):
    published.listops(tmp_path)
    path = tmp_path / "listops-1000" / "basic_val.tsv"
    path.write_bytes(path.read_bytes() + (bad_row + "\r\n").encode())  # line 4: header + 2 rows + it
    with pytest.raises(DataFormatError, match=message) as error:
        get_task("listops", data_dir=tmp_path)
    assert str(path) in str(error.value) and "line 4" in str(error.value)
    assert "skip_bad" in str(error.value)
    task = get_task("listops", data_dir=tmp_path, skip_bad=True)
    assert task.metadata["skipped"] == 1 and len(task.val) == 2
    assert "line 4" in task.metadata["skipped_items"][0]


# --- generator ----------------------------------------------------------------------------------

SMALL = {
    "n_train": 60,
    "n_val": 10,
    "n_test": 10,
    "min_len": 10,
    "max_len": 80,
    "max_depth": 5,
    "max_args": 4,
}


def test_generated_labels_equal_an_independent_evaluation(tmp_path: Path):
    root = generate_listops(tmp_path, seed=3, **SMALL)
    sources = []
    for split in ("train", "val", "test"):
        rows = _rows(tmp_path, split)
        assert len(rows) == SMALL[f"n_{split}"]
        for source, target in rows:
            assert lra_value(source) == int(target)
            n_tokens = sum(t not in "()" for t in source.split())
            assert SMALL["min_len"] < n_tokens < SMALL["max_len"]  # strict, as in LRA
            depth, fewest, most = tree_shape(source)
            assert depth <= SMALL["max_depth"]
            assert fewest >= 2 and most <= SMALL["max_args"]
            sources.append(source)
    assert len(set(sources)) == len(sources)  # distinct expressions
    assert (root / "basic_train.tsv").read_bytes().startswith(b"Source\tTarget\r\n")


def test_generator_follows_lra_defaults_on_length(tmp_path: Path):
    generate_listops(tmp_path, n_train=3, n_val=1, n_test=1, seed=0)
    for split in ("train", "val", "test"):
        for source, target in _rows(tmp_path, split):
            assert 500 < sum(t not in "()" for t in source.split()) < 2000
            assert lra_value(source) == int(target)
            assert tree_shape(source)[0] <= 10 and tree_shape(source)[2] <= 10


def test_generator_is_deterministic(tmp_path: Path):
    generate_listops(tmp_path / "a", seed=7, **SMALL)
    generate_listops(tmp_path / "b", seed=7, **SMALL)
    generate_listops(tmp_path / "c", seed=8, **SMALL)
    for name in ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv"):
        a, b, c = ((tmp_path / d / "listops-1000" / name).read_bytes() for d in "abc")
        assert a == b
        assert a != c


def test_loader_reads_what_the_generator_writes(tmp_path: Path):
    generate_listops(tmp_path, seed=1, **SMALL)
    task = get_task("listops", data_dir=tmp_path, max_len=128)
    assert (len(task.train), len(task.val), len(task.test)) == (60, 10, 10)
    assert task.train.y.tolist() == [int(t) for _, t in _rows(tmp_path, "train")]


def test_generator_refuses_impossible_options_and_existing_files(tmp_path: Path):
    with pytest.raises(ValueError, match="min_len < length < max_len"):
        generate_listops(tmp_path, min_len=100, max_len=100)
    with pytest.raises(ValueError, match="unreachable"):
        generate_listops(tmp_path, min_len=100, max_len=1000, max_depth=3, max_args=3)
    generate_listops(tmp_path, seed=0, **SMALL)
    with pytest.raises(FileExistsError, match="--force"):
        generate_listops(tmp_path, seed=0, **SMALL)
    before = (tmp_path / "listops-1000" / "basic_train.tsv").read_bytes()
    generate_listops(tmp_path, seed=5, force=True, **SMALL)
    assert (tmp_path / "listops-1000" / "basic_train.tsv").read_bytes() != before
