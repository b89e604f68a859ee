"""Every file in examples/ is valid: sweep specs plan, trial configs validate."""

from pathlib import Path

import pytest
import yaml

from orchestrator.spec import load_spec
from ssm.config import TrialConfig

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path):
    if path.name.startswith("train-"):
        TrialConfig.model_validate(yaml.safe_load(path.read_text()))
    else:
        assert load_spec(path.read_text()).n_trials() > 0


def test_the_quickstart_is_small_enough_for_a_demo():
    spec = load_spec((EXAMPLES[0].parent / "quickstart.yaml").read_text())
    assert spec.n_trials() == 32 and spec.optim["epochs"] <= 5
