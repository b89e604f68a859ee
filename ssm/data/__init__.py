"""Tasks by name: the six Long Range Arena tasks read from their published files, and synthetic
memory tasks built in memory.

    from ssm.data import get_task
    task = get_task("listops", data_dir="~/lra", max_len=512, n_train=2000)
    x, y, lengths = task.train.x, task.train.y, task.train.lengths

LRA files live under the data directory (argument, else `$SSMBENCH_DATA_DIR`, else
`platformdirs.user_data_dir("ssmbench")/data`) in the layouts their publishers use; see each
loader's module (`listops`, `text`, `image`). Their preprocessed tensors are cached under
`<data_dir>/.cache/` (`cache`). `ssmbench data generate listops|pathfinder` writes stand-ins
for the two tasks whose generators are public (`generate_listops`, `generate_pathfinder`);
`ssmbench data check` reports what a directory holds (`check`). Synthetic tasks: `synthetic`.

Targets: int64 class ids (n,) for classification; float32 (n, d) for pooled regression (adding:
d = 1) and (n, L, d) for per-step regression (memory-exp/poly, linear-filter: d = 1), with
d = `task.n_classes`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssm.data.base import (
    DATA_DIR_ENV,
    SPLITS,
    DataFormatError,
    DataNotFoundError,
    SequenceDataset,
    Task,
    resolve_data_dir,
)
from ssm.data.image import (
    load_image,
    load_pathfinder,
    load_pathx,
    require_cifar_files,
    require_pathfinder_metadata,
)
from ssm.data.listops import load_listops, require_listops_files
from ssm.data.synthetic import (
    make_adding,
    make_delay,
    make_digits,
    make_linear_filter,
    make_memory_exp,
    make_memory_poly,
)
from ssm.data.text import IMDB_DIR, list_imdb_reviews, load_retrieval, load_text, require_retrieval_files

# Loaders that read files take the data directory as their first argument.
FILE_TASKS: dict[str, Callable[..., Task]] = {
    "listops": load_listops,
    "text": load_text,
    "retrieval": load_retrieval,
    "image": load_image,
    "pathfinder": load_pathfinder,
    "pathx": load_pathx,
}
SYNTHETIC_TASKS: dict[str, Callable[..., Task]] = {
    "delay": make_delay,
    "memory-exp": make_memory_exp,
    "memory-poly": make_memory_poly,
    "linear-filter": make_linear_filter,
    "adding": make_adding,
    "digits": make_digits,
}
LRA_TASKS: tuple[str, ...] = tuple(FILE_TASKS)
TASK_NAMES: tuple[str, ...] = (*FILE_TASKS, *SYNTHETIC_TASKS)


def _loader(name: str) -> Callable[..., Task]:
    if name in FILE_TASKS:
        return FILE_TASKS[name]
    if name in SYNTHETIC_TASKS:
        return SYNTHETIC_TASKS[name]
    raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")


def task_options(name: str) -> dict[str, Any]:
    """The options task `name` accepts, with their defaults."""
    signature = inspect.signature(_loader(name))
    return {
        option.name: option.default
        for option in signature.parameters.values()
        if option.kind is inspect.Parameter.KEYWORD_ONLY
    }


def require_data(name: str, data_dir: str | Path | None = None, **options: Any) -> None:
    """Raise `DataNotFoundError` (the path expected, how to get it) when the files task `name` reads
    are not where its loader looks; synthetic tasks need none. Quick: it checks that the files and
    directories exist, not what they hold (`ssmbench data check` reads them)."""
    if name not in FILE_TASKS:
        return
    root = resolve_data_dir(data_dir)
    if name == "listops":
        require_listops_files(root)
    elif name == "retrieval":
        require_retrieval_files(root)
    elif name == "image":
        require_cifar_files(root)
    elif name == "text":
        for split in ("train", "test"):
            list_imdb_reviews(root / IMDB_DIR, split)
    else:  # pathfinder, pathx
        side = 32 if name == "pathfinder" else 128
        level = options.get("level", task_options(name)["level"])
        require_pathfinder_metadata(root, side, level)


def get_task(name: str, data_dir: str | Path | None = None, **options: Any) -> Task:
    """The task called `name` (one of `TASK_NAMES`) with its train/val/test splits.

    Common options: `max_len` (sequence length: truncate/pad; for synthetic tasks an alias of
    `seq_len`), `n_train`/`n_val`/`n_test` (LRA and digits: a deterministic subsample by `seed`;
    synthetic tasks: the number generated), `seed` (default 0); LRA tasks also take `skip_bad`.
    Synthetic tasks ignore `data_dir`. Raises ValueError for an unknown task or option,
    `DataNotFoundError` for missing files and `DataFormatError` for corrupt ones.
    """
    loader = _loader(name)
    valid = task_options(name)
    for option in options:
        if option not in valid:
            raise ValueError(
                f"unknown option {option!r} for task {name!r}; valid options: {', '.join(valid)}"
            )
    if name in FILE_TASKS:
        return loader(resolve_data_dir(data_dir), **options)
    return loader(**options)


__all__ = [
    "DATA_DIR_ENV",
    "FILE_TASKS",
    "LRA_TASKS",
    "SPLITS",
    "SYNTHETIC_TASKS",
    "TASK_NAMES",
    "DataFormatError",
    "DataNotFoundError",
    "SequenceDataset",
    "Task",
    "get_task",
    "require_data",
    "resolve_data_dir",
    "task_options",
]
