"""What a data directory holds: each task found, missing (with the path expected and how to get it)
or corrupt (with the file and line), and its split sizes. Used by `ssmbench data check`.

Checking loads each task through `get_task`, so it also builds the preprocessing caches (slow the
first time on the full LRA release, fast afterwards).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssm.data import FILE_TASKS, SPLITS, TASK_NAMES, get_task
from ssm.data.base import DataFormatError, DataNotFoundError

BUILT_IN_SOURCES = {
    "digits": "scikit-learn's bundled digits (sklearn.datasets.load_digits)",
}


def check_task(name: str, data_dir: Path, *, skip_bad: bool = False) -> dict[str, Any]:
    """One task's status: a dict with `name`, `status` ("found", "built-in", "missing",
    "corrupt"), `sizes` ({split: n} or None), `path` (where it was read or expected), `provides`
    (how to get a missing task), `skipped` (bad items skipped) and `message` (the error, if any)."""
    row: dict[str, Any] = {
        "name": name,
        "status": None,
        "sizes": None,
        "path": None,
        "provides": None,
        "skipped": 0,
        "message": None,
    }
    options = {"skip_bad": True} if skip_bad and name in FILE_TASKS else {}
    try:
        task = get_task(name, data_dir, **options)
    except DataNotFoundError as error:
        return {
            **row,
            "status": "missing",
            "path": str(error.path),
            "provides": error.provider,
            "message": str(error),
        }
    except DataFormatError as error:
        return {**row, "status": "corrupt", "path": str(error.path), "message": str(error)}
    sizes = {split: len(task.split(split)) for split in SPLITS}
    if name in FILE_TASKS:
        return {
            **row,
            "status": "found",
            "sizes": sizes,
            "path": task.metadata["source"],
            "skipped": task.metadata.get("skipped", 0),
        }
    source = BUILT_IN_SOURCES.get(name, "generated in memory from the seed")
    return {**row, "status": "built-in", "sizes": sizes, "provides": source}


def check_tasks(
    data_dir: Path,
    *,
    skip_bad: bool = False,
    names: tuple[str, ...] = TASK_NAMES,
    on_task: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """`check_task` for each of `names` (all tasks by default); `on_task(name)` is called before
    each one (for progress display)."""
    rows = []
    for name in names:
        if on_task is not None:
            on_task(name)
        rows.append(check_task(name, data_dir, skip_bad=skip_bad))
    return rows
