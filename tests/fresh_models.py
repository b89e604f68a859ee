"""The model `ssm.train.train` builds for a config, at its initialization, built here independently:
for the tests that compare stored or trained numbers with it (tests/ssm, tests/api)."""

from __future__ import annotations

from ssm.config import TrialConfig
from ssm.data import get_task
from ssm.model import SequenceModel
from ssm.train import seed_everything


def fresh_model(config: TrialConfig):
    """The model `train` builds for `config`, at its initialization, and the task."""
    seed_everything(config.seed)
    task = get_task(config.task.name, **config.task.options)
    model = SequenceModel(
        config.model, task.d_input, task.n_classes, input_type=task.input_type, output=task.output,
        pooling=task.pooling, paired=task.paired, l_max=task.seq_len,
    )  # fmt: skip
    return model, task
