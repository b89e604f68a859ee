"""Fake trainers for orchestrator tests: module-level so Ray can pickle them, fast, and with
behaviour chosen by the trial config (the seed), so one sweep exercises every outcome."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ssm.train import TrialResult


def result(config, status="completed", test=None):
    accuracy = 0.5 + 0.01 * config.seed if test is None else test
    return TrialResult(
        status=status,
        config_hash=config.hash(),
        metric="accuracy",
        best_epoch=1 if status != "diverged" else None,
        val_metric=accuracy if status != "diverged" else None,
        test_metric=accuracy if status != "diverged" else None,
        parameters={"total": 10, "trainable": 10, "frozen": 0},
    )


def quick(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """Two epochs, then completed (seed 7: raises; seed 8: diverges)."""
    if config.seed == 7:
        raise RuntimeError("boom: a bug in training")
    for epoch in range(2):
        if config.seed == 8 and epoch == 1:
            return result(config, "diverged")
        metrics = {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_loss": 1.0, "val_metric": 0.5}
        if on_epoch is not None and on_epoch(metrics) is False:
            return result(config, "pruned")
    return result(config)


def slow(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """Twelve epochs of 0.3 s; writes its pid into its checkpoint directory so a test can kill it."""
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    (Path(checkpoint_dir) / "pid").write_text(str(os.getpid()))
    for epoch in range(12):
        time.sleep(0.3)
        if (
            on_epoch is not None
            and on_epoch({"epoch": epoch, "train_loss": 1.0, "val_loss": 1.0, "val_metric": 0.5}) is False
        ):
            return result(config, "pruned")
    return result(config)


def noop(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """Returns at once: measures the orchestration path alone."""
    return result(config)
