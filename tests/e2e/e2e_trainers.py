"""Fake trainers for the end-to-end cluster tests (`SSMBENCH_FAKE_TRAINER=e2e_trainers:resumable`).

They have the signature of `ssm.train.train` and behave like it where the cluster test looks: one
`on_epoch` call per epoch, a checkpoint after every epoch in `checkpoint_dir`, and a retried attempt
that resumes after the last checkpointed epoch — so a trial whose node died continues on another node
from the shared checkpoint directory. Module-level functions: `ssmbench serve` pickles the module by
value to the Ray workers, and the `ray start` processes also get it on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ssm.train import TrialResult

EPOCHS = int(os.environ.get("E2E_TRAINER_EPOCHS", "6"))
EPOCH_SECONDS = float(os.environ.get("E2E_TRAINER_EPOCH_SECONDS", "0.4"))


def _save(checkpoint: Path, epoch: int) -> None:
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.with_suffix(".tmp")
    tmp.write_text(json.dumps({"epoch": epoch, "pid": os.getpid()}))
    tmp.replace(checkpoint)  # atomic: a reader never sees half a checkpoint


def resumable(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """EPOCHS epochs of EPOCH_SECONDS each, checkpointed; resumes after the last checkpointed epoch."""
    checkpoint = Path(checkpoint_dir) / "state.json" if checkpoint_dir else None
    start = 0
    if checkpoint is not None and checkpoint.exists():
        start = json.loads(checkpoint.read_text())["epoch"] + 1
    epochs = []
    for epoch in range(start, EPOCHS):
        time.sleep(EPOCH_SECONDS)
        metrics = {
            "epoch": epoch,
            "train_loss": 1.0 / (epoch + 1),
            "val_loss": 1.0 / (epoch + 1),
            "val_metric": 0.5 + 0.01 * epoch,
            "resumed_from": start,
            "pid": os.getpid(),
        }
        epochs.append(metrics)
        if on_epoch is not None and on_epoch(metrics) is False:
            return _result(config, "pruned", epochs)
        if checkpoint is not None:
            _save(checkpoint, epoch)
    return _result(config, "completed", epochs)


def _result(config, status: str, epochs: list[dict]) -> TrialResult:
    accuracy = 0.5 + 0.01 * config.seed
    return TrialResult(
        status=status,
        config_hash=config.hash(),
        metric="accuracy",
        best_epoch=EPOCHS - 1,
        val_metric=accuracy,
        test_metric=accuracy,
        epochs=epochs,
        parameters={"total": 10, "trainable": 10, "frozen": 0},
    )
