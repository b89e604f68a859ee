"""Learning on CPU within a budget: the models train to real accuracies, not just run.

Budgets measured on the 2-core CI machine with one torch thread: about 15–25 s per test.
"""

import pytest
import torch

from ssm.config import TrialConfig
from ssm.train import train

OPTIM = {"lr": 1e-2, "ssm_lr": 1e-2, "weight_decay": 0.0, "batch_size": 32}


@pytest.fixture(autouse=True)
def one_thread():
    # Two workers share two cores in `make test`; more threads only contend.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(task, model, epochs):
    return train(
        TrialConfig(
            task=task,
            model={"d_model": 32, "d_state": 32, "n_layers": 2, **model},
            optim={**OPTIM, "epochs": epochs},
        )
    )


@pytest.mark.slow
def test_s4d_learns_the_delay_task():
    result = run({"name": "delay", "seq_len": 32, "delay": 8, "n_train": 2000}, {}, epochs=4)
    assert result.test_metric >= 0.90, result.test_metric


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layer", "epochs", "threshold"), [("s4d", 8, 0.85), ("s5", 6, 0.80), ("s4", 6, 0.80)]
)
def test_layers_learn_digits(layer, epochs, threshold):
    result = run({"name": "digits"}, {"layer": layer}, epochs)
    assert result.test_metric >= threshold, (layer, result.test_metric)
