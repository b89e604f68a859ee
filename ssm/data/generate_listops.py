"""ListOps generator: the algorithm of LRA's generator (Tay et al. 2021), written for this project.

A tree is drawn top-down from the root at depth 1. A node at depth < `max_depth` is an operator with
probability 1/4 (MIN, MAX, MED, SM chosen uniformly) with 2..`max_args` children drawn the same way;
otherwise, and always at `max_depth`, it is a digit 0–9. Trees are kept when their token count
(digits, operators and `]`; the parentheses are not tokens) lies strictly between `min_len` and
`max_len`, as in LRA; duplicates are dropped. The first `n_train` distinct trees are the train
split, the next `n_val` val, then `n_test` test.

A tree is abandoned as soon as its token count reaches `max_len`, which LRA's generator would reject
after drawing it in full: the kept trees have the same distribution, drawn faster.

Values: MIN, MAX; MED the median, rounded down when the count is even (LRA's `int(np.median)`);
SM the sum modulo 10. Output: `<out>/listops-1000/basic_{train,val,test}.tsv` in the published
format (see `ssm.data.listops`), each file written atomically.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Callable
from pathlib import Path

from ssm.data.base import check_int
from ssm.data.listops import CLOSE, HEADER, LISTOPS_DIR, OPERATORS, SPLIT_FILES

OPERATOR_PROBABILITY = 0.25  # LRA's VALUE_P: a node below max_depth is a digit with probability 3/4
MAX_ATTEMPTS_PER_TREE = 100_000

Node = int | tuple[str, list["Node"]]


class _TooLong(Exception):
    """The tree being drawn has reached the token limit."""


def random_tree(rng: random.Random, max_depth: int, max_args: int, max_len: int) -> tuple[Node, int]:
    """(tree, token count) of one tree; raises `_TooLong` once its count reaches `max_len`."""
    count = 0

    def draw(depth: int) -> Node:
        nonlocal count
        if depth < max_depth and rng.random() < OPERATOR_PROBABILITY:
            count += 2  # the operator and its closing bracket
            op = rng.choice(OPERATORS)
            children = [draw(depth + 1) for _ in range(rng.randint(2, max_args))]
            return op, children
        count += 1
        if count >= max_len:
            raise _TooLong
        return rng.randrange(10)

    tree = draw(1)
    if count >= max_len:
        raise _TooLong
    return tree, count


def tree_value(node: Node) -> int:
    """The value 0–9 of a tree."""
    if isinstance(node, int):
        return node
    op, children = node
    values = sorted(tree_value(child) for child in children)
    if op == "[MIN":
        return values[0]
    if op == "[MAX":
        return values[-1]
    if op == "[MED":
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) // 2
    return sum(values) % 10  # "[SM"


def tree_source(node: Node) -> str:
    """The LRA text of a tree. LRA nests one pair per argument, ((((op, a1), a2), ...), "]"), and
    wraps every pair in parentheses: MAX(2, 9) is `( ( ( [MAX 2 ) 9 ) ] )`."""
    parts: list[str] = []

    def emit(node: Node) -> None:
        if isinstance(node, int):
            parts.append(str(node))
            return
        op, children = node
        parts.extend(["("] * (len(children) + 1))
        parts.append(op)
        for child in children:
            emit(child)
            parts.append(")")
        parts.extend([CLOSE, ")"])

    emit(node)
    return " ".join(parts)


def generate_listops(
    out_dir: str | Path,
    *,
    n_train: int = 96_000,
    n_val: int = 2_000,
    n_test: int = 2_000,
    min_len: int = 500,
    max_len: int = 2_000,
    max_depth: int = 10,
    max_args: int = 10,
    seed: int = 0,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ListOps splits under `<out_dir>/listops-1000/`; returns that directory.

    Deterministic in its arguments. `progress(k)` is called with the number of trees kept so far.
    Raises ValueError for impossible options and FileExistsError if the files exist and not `force`.
    """
    sizes = {
        "train": check_int("n_train", n_train),
        "val": check_int("n_val", n_val),
        "test": check_int("n_test", n_test),
    }
    min_len = check_int("min_len", min_len, minimum=0)
    max_len = check_int("max_len", max_len, minimum=5)
    max_depth = check_int("max_depth", max_depth, minimum=2)
    max_args = check_int("max_args", max_args, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    if max_len - min_len < 2:
        raise ValueError(
            f"need min_len < length < max_len for some length; got min_len={min_len}, max_len={max_len}"
        )
    longest = _longest_tree(max_depth, max_args)
    if min_len + 1 > longest:
        raise ValueError(
            f"min_len={min_len} is unreachable: trees of depth ≤ {max_depth} with ≤ {max_args} arguments "
            f"have at most {longest} tokens"
        )
    root = Path(out_dir) / LISTOPS_DIR
    paths = {split: root / name for split, name in SPLIT_FILES.items()}
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; pass force=True (CLI: --force) to replace it")

    rng = random.Random(seed)
    total = sum(sizes.values())
    kept: dict[str, int] = {}  # source text -> value, in the order drawn
    attempts = 0
    while len(kept) < total:
        attempts += 1
        if attempts > MAX_ATTEMPTS_PER_TREE * total:
            raise ValueError(
                f"too few trees have between {min_len} and {max_len} tokens; widen the length range"
            )
        try:
            tree, length = random_tree(rng, max_depth, max_args, max_len)
        except _TooLong:
            continue
        if length <= min_len:
            continue
        source = tree_source(tree)
        if source not in kept:
            kept[source] = tree_value(tree)
            if progress is not None:
                progress(len(kept))

    rows = list(kept.items())
    root.mkdir(parents=True, exist_ok=True)
    start = 0
    for split in ("train", "val", "test"):
        _write_tsv(paths[split], rows[start : start + sizes[split]])
        start += sizes[split]
    return root


def _longest_tree(max_depth: int, max_args: int) -> int:
    """Token count of the largest tree: every node above max_depth an operator with max_args children."""
    length = 1
    for _ in range(max_depth - 1):
        length = 2 + max_args * length
    return length


def _write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    """Write `Source\tTarget` rows with Python's csv module (CRLF, as LRA's files), atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(HEADER.split("\t"))
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
