"""A fast fake trainer for the service's end-to-end tests (`SSMBENCH_FAKE_TRAINER=api_fakes:quick`).

Importable by a `ssmbench serve` subprocess through PYTHONPATH (this directory); the service pickles
it by value to its Ray workers. Deterministic: the test metric depends on the config only.
"""

from __future__ import annotations

import hashlib
import time

from ssm.train import TrialResult


def completed(config, accuracy: float, best_epoch: int = 1, **fields) -> TrialResult:
    """A completed result of `config` whose validation and test accuracy are both `accuracy`."""
    return TrialResult(
        status="completed",
        config_hash=config.hash(),
        metric="accuracy",
        best_epoch=best_epoch,
        val_metric=accuracy,
        test_metric=accuracy,
        **fields,
    )


def quick(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """Two short epochs, then completed with an accuracy between 0.5 and 0.9 set by the config."""
    digest = int(hashlib.sha256(config.hash().encode()).hexdigest()[:8], 16)
    accuracy = 0.5 + 0.4 * (digest % 1000) / 1000
    for epoch in range(2):
        time.sleep(0.05)
        metrics = {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_loss": 1.0, "val_metric": accuracy}
        if on_epoch is not None and on_epoch(metrics) is False:
            break
    return completed(config, accuracy, parameters={"total": 10, "trainable": 10, "frozen": 0})


def troubled(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """`quick`, except that the `adding` task's files are missing (DataNotFoundError, as a loader
    raises it when the data vanished after the up-front check) and a learning rate of 1 or more
    diverges: a sweep with failures of two kinds, for `ssmbench run`'s summary."""
    from pathlib import Path

    from ssm.data import DataNotFoundError

    if config.task.name == "adding":
        expected = Path(data_dir or "data") / "listops-1000" / "basic_train.tsv"
        provider = "Generate it with `ssmbench data generate listops --data-dir data`."
        raise DataNotFoundError(expected, provider, what="ListOps split")
    if config.optim.lr >= 1.0:
        return TrialResult(
            status="diverged",
            config_hash=config.hash(),
            metric="accuracy",
            diverged_at={"epoch": 0, "step": 3},
            parameters={"total": 10, "trainable": 10, "frozen": 0},
        )
    return quick(config, on_epoch, checkpoint_dir, data_dir)
