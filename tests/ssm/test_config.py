"""Trial configuration: validation names the field, the hash is canonical and stable."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from ssm.config import ModelConfig, TaskConfig, TrialConfig


def test_hash_is_stable_across_processes():
    config = TrialConfig(
        task={"name": "listops", "max_len": 256}, model={"layer": "s5", "d_state": 16}, seed=3
    )
    code = (
        "from ssm.config import TrialConfig;"
        "print(TrialConfig(task={'name': 'listops', 'max_len': 256}, model={'d_state': 16, 'layer': 's5'}, seed=3).hash())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == config.hash()
    assert len(config.hash()) == 64


def test_hash_depends_on_every_field_and_not_on_spelling():
    base = TrialConfig(task="delay")
    assert TrialConfig(task={"name": "delay"}).hash() == base.hash()
    assert TrialConfig(task={"name": "delay", "options": {}}).hash() == base.hash()
    assert TrialConfig(task="delay", seed=1).hash() != base.hash()
    assert TrialConfig(task="delay", model={"reparam_a": 2.0}).hash() != base.hash()
    assert TrialConfig(task={"name": "delay", "delay": 4}).hash() != base.hash()


def test_flat_task_options():
    assert TaskConfig.model_validate({"name": "listops", "max_len": 256}).options == {"max_len": 256}
    assert TaskConfig.model_validate("digits").name == "digits"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"model": {"d_state": 7}}, "model"),
        ({"model": {"layer": "lstm"}}, "model.layer"),
        ({"model": {"init": "hippo"}}, "model.init"),
        ({"model": {"reparam": "cubic"}}, "model.reparam"),
        ({"model": {"reparam_b": 0}}, "model.reparam_b"),
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"optim": {"learning_rate": 1}}, "optim.learning_rate"),
        ({"model": {"layer": "s4", "init": "lin"}}, "model"),
    ],
)
def test_validation_errors_name_the_field(data, field):
    with pytest.raises(ValidationError) as info:
        TrialConfig(task="delay", **data)
    locs = [".".join(map(str, e["loc"])) for e in info.value.errors()]
    assert field in locs, locs


def test_model_config_is_frozen():
    with pytest.raises(ValidationError):
        ModelConfig().d_model = 3
