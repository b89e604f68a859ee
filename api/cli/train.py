"""`ssmbench train CONFIG`: one trial, no database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from .common import (
    TaskDataOption,
    console,
    fail,
    json_option,
    load_yaml_mapping,
    merge,
    parse_overrides,
    print_json,
    progress_bar,
)

if TYPE_CHECKING:
    from ssm.config import TrialConfig
    from ssm.train import TrialResult


def train_command(
    config_path: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="Trial config YAML (task, model, optim, seed).")
    ],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key, e.g. --set optim.lr=1e-3 (repeatable).")
    ] = None,
    json_output: Annotated[bool, json_option("only the TrialResult as JSON")] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="Checkpoint every epoch into this directory.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the checkpoint in --checkpoint-dir.")
    ] = False,
    data_dir: TaskDataOption = None,
) -> None:
    """Train one trial and print its result table (or its TrialResult with --json); no database.

    Example: ssmbench train examples/train-delay.yaml --set optim.lr=1e-3 --set optim.epochs=2
    """
    from ssm.config import TrialConfig  # torch: imported when a trial runs, not for --help
    from ssm.train import CHECKPOINT_NAME

    raw = merge(load_yaml_mapping(config_path), parse_overrides(set_ or []))
    try:
        config = TrialConfig.model_validate(raw)
    except ValidationError as err:
        fail(_config_error(err, config_path))
    if resume and checkpoint_dir is None:
        fail("--resume needs --checkpoint-dir")
    if checkpoint_dir is not None and (checkpoint_dir / CHECKPOINT_NAME).exists() and not resume:
        fail(
            f"{checkpoint_dir / CHECKPOINT_NAME} exists: pass --resume to continue it, or choose another directory"
        )

    from ssm.data import DataFormatError, DataNotFoundError  # keep `--help` fast
    from ssm.train import train

    try:
        if json_output:
            result = train(config, checkpoint_dir=checkpoint_dir, data_dir=data_dir)
        else:
            result = _train_with_progress(config, checkpoint_dir, data_dir)
    except (DataNotFoundError, DataFormatError) as err:
        fail(str(err))
    except ValueError as err:  # bad task options, an init outside a reparameterization's range, …
        fail(f"{config_path}: {err}")
    if json_output:
        print_json(result.model_dump(mode="json"))
    else:
        console.print(result_table(config, result))


def _config_error(err: ValidationError, path: Path) -> str:
    from .common import validation_message

    return validation_message(err, prefix=f"{path}: ")


def _train_with_progress(config: TrialConfig, checkpoint_dir, data_dir) -> TrialResult:
    from ssm.train import train

    with progress_bar(f"{config.model.layer} on {config.task.name}", config.optim.epochs) as update:

        def on_epoch(m):
            status = f"loss {m['train_loss']:.4f}  val {m['val_metric']:.4f}  {m['tokens_per_s']:,.0f} tok/s"
            update(m["epoch"] + 1, status=status)

        return train(config, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir, data_dir=data_dir)


def result_table(config: TrialConfig, result: TrialResult) -> Table:
    from .tables import metric_text  # accuracy in percent, as the leaderboard shows it

    m = config.model
    table = Table(
        title=f"{m.layer.upper()} · init {m.init} · reparam {m.reparam} · "
        f"{'trained' if m.train_eigenvalues else 'frozen'} eigenvalues · {config.task.name}"
    )
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("status", result.status),
        ("best epoch", str(result.best_epoch)),
        ("val (best epoch)", metric_text(result.val_metric, result.metric)),
        ("test (at the best val epoch)", metric_text(result.test_metric, result.metric)),
        (
            "parameters (trainable / frozen)",
            f"{result.parameters['trainable']:,} / {result.parameters['frozen']:,}",
        ),
        ("wall time", f"{result.wall_time_s:.1f} s"),
        ("peak memory", f"{result.peak_memory_mb:.0f} MB"),
        ("config hash", result.config_hash[:12]),
    ]
    if result.diverged_at:
        rows.insert(
            1, ("diverged at", f"epoch {result.diverged_at['epoch']}, step {result.diverged_at['step']}")
        )
    for row in rows:
        table.add_row(*row)
    return table
