"""What every task loader returns, the errors loaders raise, and where the data lives.

A `Task` is three `SequenceDataset` splits plus the facts a model needs to be built for them
(input kind and width, number of classes, sequence length, recommended pooling). Datasets hold
whole tensors so a trainer can batch by fancy indexing (`ds.x[idx]`) without a DataLoader.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import platformdirs
import torch
from torch.utils.data import Dataset

DATA_DIR_ENV = "SSMBENCH_DATA_DIR"
SPLITS = ("train", "val", "test")
VAL_SPLIT_SEED = 42  # S4 carves validation sets with this seed
SKIP_BAD_HINT = "pass skip_bad=True (CLI: --skip-bad) to skip bad items"
OPTIONAL_EXTRA = "pip install 'ssmbench[tasks]'"


class DataNotFoundError(FileNotFoundError):
    """A file or directory that a task needs is missing.

    Attributes: `path`, the exact path expected; `provider`, the command or download source that
    provides it. The message names both.
    """

    def __init__(self, path: str | Path, provider: str, what: str = "data") -> None:
        self.path = Path(path)
        self.provider = provider
        super().__init__(f"{what} not found: expected {self.path}. {provider}")


def import_optional(module: str, distribution: str, needed_by: str) -> ModuleType:
    """`module`, imported where it is used: a dependency of one task, not of the `ssm` core
    (pyproject.toml's `tasks` extra). Missing, it raises ModuleNotFoundError naming what needs it and
    the install command."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or module.split(".")[0] != error.name.split(".")[0]:
            raise  # the package is there but broken: its own error says more
        raise ModuleNotFoundError(
            f"{needed_by} needs {distribution}, which is not installed: "
            f"pip install {distribution} (or {OPTIONAL_EXTRA})",
            name=error.name,
        ) from None


class DataFormatError(ValueError):
    """A source file is malformed: the message names the file and the line (1-based) or item."""

    def __init__(
        self, path: str | Path, problem: str, *, line: int | None = None, item: str | None = None
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.item = item
        self.problem = problem
        where = str(self.path)
        if line is not None:
            where += f", line {line}"
        if item is not None:
            where += f" ({item})"
        super().__init__(f"{where}: {problem}")


class SequenceDataset(Dataset):
    """Whole-tensor dataset: `x`, `y` and `lengths` share their first dimension (examples).

    Shapes by task family (n examples, L steps, C channels, d outputs):
    - tokens: `x` int64 (n, L), padding id 0; retrieval: (n, 2, L) with `lengths` (n, 2);
    - continuous: `x` float32 (n, L, C);
    - `lengths` int64 (n,): non-padding steps of each sequence;
    - `y`: int64 (n,) for classification, float32 (n, d) for pooled regression,
      float32 (n, L, d) for per-step regression.
    LRA tensors are memory-mapped from the cache, copy-on-write (writing to them never changes the
    files); indexing with an index tensor copies the selected rows into memory.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> None:
        if not (x.shape[0] == y.shape[0] == lengths.shape[0]):
            raise ValueError(
                f"x, y and lengths must have the same number of examples, "
                f"got {x.shape[0]}, {y.shape[0]}, {lengths.shape[0]}"
            )
        self.x = x
        self.y = y
        self.lengths = lengths

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i], self.lengths[i]

    def subset(self, index: np.ndarray | torch.Tensor) -> SequenceDataset:
        """The examples at `index` (copied out of any memory map)."""
        index = torch.as_tensor(index, dtype=torch.int64)
        return SequenceDataset(self.x[index], self.y[index], self.lengths[index])

    def __repr__(self) -> str:
        return (
            f"SequenceDataset(n={len(self)}, x={tuple(self.x.shape)} {self.x.dtype}, "
            f"y={tuple(self.y.shape)} {self.y.dtype})"
        )


@dataclass(frozen=True)
class Task:
    """A task ready to train on.

    `n_classes` is the number of classes, or the output dimension per target for regression.
    `d_input` is the vocabulary size including the padding id 0 for token inputs, or the number of
    channels for continuous inputs. `output` is "pooled" (one target per sequence) or "sequence"
    (one target per step; `pooling` is then unused). `paired` is True only for retrieval (two
    documents per example, `x` of shape (n, 2, L)).
    """

    name: str
    train: SequenceDataset
    val: SequenceDataset
    test: SequenceDataset
    kind: Literal["classification", "regression"]
    n_classes: int
    d_input: int
    seq_len: int
    input_type: Literal["tokens", "continuous"]
    output: Literal["pooled", "sequence"] = "pooled"
    pooling: Literal["mean", "last"] = "mean"
    paired: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> SequenceDataset:
        """The split called `name` ("train", "val" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        return getattr(self, name)


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else `$SSMBENCH_DATA_DIR`, else the per-user data directory
    (`platformdirs.user_data_dir("ssmbench")/data`)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path(platformdirs.user_data_dir("ssmbench")) / "data"


def check_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """`value` as an int ≥ `minimum` (None passes when `allow_none`); ValueError naming the option."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"option {name!r} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"option {name!r} must be ≥ {minimum}, got {value}")
    return int(value)


def check_sizes(n_train: Any, n_val: Any, n_test: Any, *, allow_none: bool = True) -> dict[str, int | None]:
    """The split sizes {"train": n_train, ...} after checking each is a positive int (or None)."""
    return {
        split: check_int(f"n_{split}", value, allow_none=allow_none)
        for split, value in zip(SPLITS, (n_train, n_val, n_test), strict=True)
    }


def check_bool(name: str, value: Any) -> bool:
    """`value` if it is a bool; ValueError naming the option otherwise (a string "false" is not)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"option {name!r} must be true or false, got {value!r}")
    return bool(value)


def carve_validation(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), both sorted: a fixed permutation of range(n) (seed
    `VAL_SPLIT_SEED`, not the task seed) keeps its first `int(n·(1−val_fraction))` entries in train."""
    permutation = np.random.default_rng(VAL_SPLIT_SEED).permutation(n)
    n_train = int(n * (1.0 - val_fraction))
    return np.sort(permutation[:n_train]), np.sort(permutation[n_train:])


@dataclass(frozen=True)
class FileTaskOptions:
    """The options every LRA loader takes, checked: sequence length, split sizes, subsampling seed,
    and whether corrupt items are skipped."""

    max_len: int
    sizes: dict[str, int | None]
    seed: int
    skip_bad: bool


def check_file_task_options(
    max_len: Any, n_train: Any, n_val: Any, n_test: Any, seed: Any, skip_bad: Any
) -> FileTaskOptions:
    """The common LRA options after checking each; ValueError naming the first bad one."""
    return FileTaskOptions(
        max_len=check_int("max_len", max_len),
        sizes=check_sizes(n_train, n_val, n_test),
        seed=check_int("seed", seed, minimum=0),
        skip_bad=check_bool("skip_bad", skip_bad),
    )


def option(name: str, default: Any, annotation: str) -> inspect.Parameter:
    """A keyword-only option of a loader's public signature (annotations are strings, as this package's
    modules write them)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_common_options(
    make: Callable[..., Task],
    positional: Sequence[inspect.Parameter],
    before: Sequence[inspect.Parameter],
    after: Sequence[inspect.Parameter],
    check: Callable[..., Any],
) -> Callable[..., Task]:
    """`make(*positional, checked, **own)` as a loader that also takes options several loaders share.

    The result's signature, which `ssm.data.task_options` reads, lists `positional`, the shared options
    `before`, the keyword-only options of `make`, then the shared options `after`. A call binds its
    arguments to that signature, passes the shared options through `check(**shared)` (which raises
    ValueError naming a bad one) and calls `make` with the result as `checked`."""
    own = [p for p in inspect.signature(make).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    signature = inspect.Signature([*positional, *before, *own, *after], return_annotation="Task")

    @functools.wraps(make)
    def load(*args: Any, **kwargs: Any) -> Task:
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        values = dict(arguments.arguments)
        leading = [values.pop(p.name) for p in positional]
        checked = check(**{p.name: values.pop(p.name) for p in (*before, *after)})
        return make(*leading, checked, **values)

    load.__signature__ = signature
    return load


def file_task(
    *, max_len: int, own_options_first: bool = False
) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator for an LRA loader written `make(data_dir, common: FileTaskOptions, *, <its own options>)`:
    the loader takes `data_dir`, the options every LRA loader takes (`max_len`, default `max_len`;
    `n_train`, `n_val`, `n_test`, default None; `seed`, default 0; `skip_bad`, default False), checked
    by `check_file_task_options` before `make` is called, and its own options: after the common ones,
    or before them with `own_options_first`."""
    common = [
        option("max_len", max_len, "int"),
        *(option(f"n_{split}", None, "int | None") for split in SPLITS),
        option("seed", 0, "int"),
        option("skip_bad", False, "bool"),
    ]
    before, after = ([], common) if own_options_first else (common, [])
    data_dir = inspect.Parameter("data_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Path")
    return lambda make: with_common_options(make, [data_dir], before, after, check_file_task_options)


def require_files(paths: Iterable[Path], provider: str, what: str) -> None:
    """DataNotFoundError for the first of `paths` that is not a file."""
    for path in paths:
        if not path.is_file():
            raise DataNotFoundError(path, provider, what=what)


def require_split_files(root: Path, names: Mapping[str, str], provider: str, what: str) -> dict[str, Path]:
    """{split: root / names[split]}; DataNotFoundError for the first that is not a file."""
    paths = {split: root / names[split] for split in SPLITS}
    require_files(paths.values(), provider, what)
    return paths


def check_fraction(name: str, value: object) -> float:
    """`value` as a float in [0, 1); ValueError naming the option otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"option {name!r} must be a number in [0, 1), got {value!r}")
    return float(value)


def split_rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream for (seed, *stream): splits and tasks never share draws."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def subsample(dataset: SequenceDataset, n: int | None, *, seed: int, split: str) -> SequenceDataset:
    """`n` examples of `dataset` chosen uniformly without replacement, in their original order.

    Deterministic in (seed, split); `None` or the full size returns `dataset` itself (no copy).
    """
    if n is None or n == len(dataset):
        return dataset
    if n > len(dataset):
        raise ValueError(f"n_{split}={n} but the {split} split has only {len(dataset)} examples")
    rng = split_rng(seed, SPLITS.index(split))
    index = np.sort(rng.choice(len(dataset), size=n, replace=False))
    return dataset.subset(index)


def count_lines(path: Path) -> int:
    """Number of lines in a file (a last line without a newline counts), read in 1 MiB chunks."""
    count = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def make_splits(
    arrays: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    sizes: Mapping[str, int | None],
    *,
    seed: int,
) -> dict[str, SequenceDataset]:
    """Datasets over each split's (x, y, lengths) arrays (memory maps are wrapped, not copied),
    subsampled to `sizes[split]` examples when given."""
    splits = {}
    for split in SPLITS:
        x, y, lengths = (torch.from_numpy(a) for a in arrays[split])
        dataset = SequenceDataset(x, y, lengths)
        splits[split] = subsample(dataset, sizes.get(split), seed=seed, split=split)
    return splits


class BadItems:
    """Corrupt source items: raised at once, or (with `skip`) counted and skipped."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.count = 0
        self.examples: list[str] = []

    def report(
        self, path: str | Path, problem: str, *, line: int | None = None, item: str | None = None
    ) -> None:
        """Raise a `DataFormatError` unless skipping; when skipping, count it (the first 20 are kept)."""
        if not self.skip:
            raise DataFormatError(path, f"{problem} ({SKIP_BAD_HINT})", line=line, item=item)
        self.count += 1
        if len(self.examples) < 20:
            self.examples.append(str(DataFormatError(path, problem, line=line, item=item)))
