"""`ssmbench data`: generate the ListOps and Pathfinder stand-ins, and check which tasks are on disk.

    ssmbench data generate listops --data-dir DIR [--n-train N --n-val N --n-test N --min-len L --max-len L --seed S]
    ssmbench data generate pathfinder --data-dir DIR [--size 32|128 --contour-length 14 --n-images N --seed S]
    ssmbench data check [DIR | --data-dir DIR] [--json] [--skip-bad]

DIR defaults to the data directory (`$SSMBENCH_DATA_DIR`, else the per-user data directory).
Progress goes to stderr; `--json` prints one JSON document on stdout. Bad input prints one line on
stderr and exits 2. `check` exits 1 when a task's files are corrupt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .common import JsonOption, console, err_console, fail, print_json, progress_bar

# ssm.data (and torch) are imported inside the commands, to keep `--help` fast.
DATA_DIR_ENV = "SSMBENCH_DATA_DIR"
SPLITS = ("train", "val", "test")

data_app = typer.Typer(
    help="Generate the ListOps and Pathfinder stand-ins and check which tasks are on disk.",
    no_args_is_help=True,
)
generate_app = typer.Typer(
    help="Write a generated data set in the LRA release's file layout.", no_args_is_help=True
)
data_app.add_typer(generate_app, name="generate")

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help=f"Data directory to write into (default: ${DATA_DIR_ENV}, else the per-user data directory).",
    ),
]
# `--out`, the former name of --data-dir, still works (hidden from the help, last in the commands).
OutAlias = Annotated[Path | None, typer.Option("--out", hidden=True)]
SeedOption = Annotated[int, typer.Option(help="Random seed: the same seed writes byte-identical files.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace files that already exist.")]


def _generate(description: str, total: int, generate: Callable[..., Path]) -> Path:
    """`generate(progress=update)`'s directory, with a progress bar of `total` items on stderr when it
    is a terminal (nothing otherwise); its ValueError or OSError (a bad option, a full disk, files
    there already) is one line, exit 2."""
    try:
        with progress_bar(
            description, total, out=err_console, clock="remaining", transient=True, terminal_only=True
        ) as update:
            return generate(progress=update)
    except (ValueError, OSError) as error:
        fail(escape(str(error)))


def _report(summary: dict[str, Any], json_output: bool, line: str) -> None:
    if json_output:
        print_json(summary)
    else:
        console.print(escape(line), highlight=False, soft_wrap=True)


@generate_app.command("listops")
def generate_listops_command(
    data_dir: DataDirOption = None,
    n_train: Annotated[int, typer.Option(help="Training expressions.")] = 96_000,
    n_val: Annotated[int, typer.Option(help="Validation expressions.")] = 2_000,
    n_test: Annotated[int, typer.Option(help="Test expressions.")] = 2_000,
    min_len: Annotated[int, typer.Option(help="Keep expressions with more tokens than this.")] = 500,
    max_len: Annotated[int, typer.Option(help="Keep expressions with fewer tokens than this.")] = 2_000,
    max_depth: Annotated[int, typer.Option(help="Maximum tree depth.")] = 10,
    max_args: Annotated[int, typer.Option(help="Maximum arguments per operator.")] = 10,
    seed: SeedOption = 0,
    force: ForceOption = False,
    json_output: JsonOption = False,
    out: OutAlias = None,
) -> None:
    """ListOps expressions (LRA's generator algorithm) as listops-1000/basic_{train,val,test}.tsv.

    Example: ssmbench data generate listops --data-dir data --n-train 2000 --n-val 200 --n-test 200
    """
    from ssm.data import resolve_data_dir
    from ssm.data.generate_listops import generate_listops

    out_dir = resolve_data_dir(data_dir or out)
    total = n_train + n_val + n_test
    root = _generate(
        "ListOps",
        total,
        partial(
            generate_listops,
            out_dir,
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            min_len=min_len,
            max_len=max_len,
            max_depth=max_depth,
            max_args=max_args,
            seed=seed,
            force=force,
        ),
    )
    summary = {
        "task": "listops",
        "path": str(root),
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "seed": seed,
    }
    _report(summary, json_output, f"wrote {total} ListOps expressions to {root}")


@generate_app.command("pathfinder")
def generate_pathfinder_command(
    data_dir: DataDirOption = None,
    size: Annotated[int, typer.Option(help="Image side: 32 (pathfinder) or 128 (pathx).")] = 32,
    contour_length: Annotated[int, typer.Option(help="Dashes per target path (LRA: 6, 9, 14).")] = 14,
    n_images: Annotated[int, typer.Option("--n-images", "-n", help="Images to draw.")] = 20_000,
    images_per_batch: Annotated[
        int, typer.Option(help="Images per imgs/<b>/ directory and metadata file.")
    ] = 1000,
    workers: Annotated[
        int, typer.Option(help="Processes drawing in parallel (the files do not depend on it).")
    ] = (os.cpu_count() or 1),
    seed: SeedOption = 0,
    force: ForceOption = False,
    json_output: JsonOption = False,
    out: OutAlias = None,
) -> None:
    """Pathfinder images and metadata as pathfinder<size>/<level>/{imgs,metadata}/ (level
    curv_contour_length_<N>, or curv_baseline for 6). The 80/10/10 split is made when loading.

    Example: ssmbench data generate pathfinder --data-dir data --size 32 --n-images 2000
    """
    from ssm.data import resolve_data_dir
    from ssm.data.generate_pathfinder import generate_pathfinder

    out_dir = resolve_data_dir(data_dir or out)
    level_dir = _generate(
        f"Pathfinder {size}x{size}",
        n_images,
        partial(
            generate_pathfinder,
            out_dir,
            size=size,
            contour_length=contour_length,
            n_images=n_images,
            seed=seed,
            images_per_batch=images_per_batch,
            workers=workers,
            force=force,
        ),
    )
    summary = {
        "task": "pathfinder" if size == 32 else "pathx",
        "path": str(level_dir),
        "n_images": n_images,
        "size": size,
        "contour_length": contour_length,
        "seed": seed,
    }
    _report(summary, json_output, f"wrote {n_images} Pathfinder images to {level_dir}")


@data_app.command("check")
def check_command(
    directory: Annotated[
        Path | None,
        typer.Argument(help=f"Data directory (default: ${DATA_DIR_ENV}, else the per-user data directory)."),
    ] = None,
    json_output: JsonOption = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip corrupt items (and count them) instead of failing.")
    ] = False,
    data_dir_option: Annotated[
        Path | None, typer.Option("--data-dir", help="The data directory (the same as DIR).")
    ] = None,
) -> None:
    """For each task: found, missing or corrupt, its split sizes, the path it read or expected,
    and for a missing task the command or source that provides it. Loading builds the caches.

    Example: ssmbench data check --data-dir data
    """
    from ssm.data import resolve_data_dir
    from ssm.data.check import check_tasks

    directory = directory or data_dir_option

    data_dir = resolve_data_dir(directory)
    named = directory is not None or bool(os.environ.get(DATA_DIR_ENV))
    if named and not data_dir.is_dir():
        fail(escape(f"data directory not found: {data_dir}"))
    if err_console.is_terminal:
        with err_console.status("checking tasks") as status:
            rows = check_tasks(
                data_dir, skip_bad=skip_bad, on_task=lambda name: status.update(f"checking {name}")
            )
    else:
        rows = check_tasks(data_dir, skip_bad=skip_bad)
    if json_output:
        print_json({"data_dir": str(data_dir), "tasks": rows})
    else:
        console.print(_check_table(data_dir, rows))
    if any(row["status"] == "corrupt" for row in rows):
        raise typer.Exit(1)


_STATUS_STYLE = {"found": "green", "built-in": "cyan", "missing": "yellow", "corrupt": "red"}


def _check_table(data_dir: Path, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Tasks in {data_dir}")
    table.add_column("task")
    table.add_column("status")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("how to get it / notes", overflow="fold")
    for row in rows:
        sizes = row["sizes"] or {}
        if row["status"] == "missing":
            note = row["provides"]
        elif row["status"] == "corrupt":
            note = row["message"]
        elif row["skipped"]:
            note = f"{row['skipped']} bad items skipped"
        else:
            note = row["provides"] or ""
        style = _STATUS_STYLE.get(row["status"], "")
        table.add_row(
            row["name"],
            f"[{style}]{row['status']}[/{style}]",
            *(str(sizes.get(split, "")) for split in SPLITS),
            escape(row["path"] or ""),
            escape(note),
        )
    return table
