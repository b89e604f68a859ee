"""A fast fake trainer for the service's end-to-end tests (`SSMBENCH_FAKE_TRAINER=api_fakes:quick`).

Importable by a `ssmbench serve` subprocess through PYTHONPATH (this directory); the service pickles
it by value to its Ray workers. Deterministic: the test metric depends on the config only.
"""

from __future__ import annotations

import hashlib
import time

from ssm.train import TrialResult


def quick(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """Two short epochs, then completed with an accuracy between 0.5 and 0.9 set by the config."""
    digest = int(hashlib.sha256(config.hash().encode()).hexdigest()[:8], 16)
    accuracy = 0.5 + 0.4 * (digest % 1000) / 1000
    for epoch in range(2):
        time.sleep(0.05)
        metrics = {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_loss": 1.0, "val_metric": accuracy}
        if on_epoch is not None and on_epoch(metrics) is False:
            break
    return TrialResult(
        status="completed",
        config_hash=config.hash(),
        metric="accuracy",
        best_epoch=1,
        val_metric=accuracy,
        test_metric=accuracy,
        parameters={"total": 10, "trainable": 10, "frozen": 0},
    )
