"""Sweep specs: the grid, and errors that name the key path and line before anything is stored."""

import pytest

from orchestrator.spec import SpecError, group_key, load_spec, plan

QUICKSTART = """\
name: quickstart
tasks: [delay, {name: listops, max_len: 256, n_train: 2000}]
model: {layer: s4d, init: [inv, lin], reparam: [exp, best], train_eigenvalues: [true, false],
        d_model: 32, d_state: 16, n_layers: 2}
optim: {lr: 3.0e-3, epochs: 3, batch_size: 32}
seeds: [0, 1]
resources: {cpus: 1, gpus: 0.25}
"""


def test_the_design_example_plans_its_grid():
    spec = load_spec(QUICKSTART)
    configs = plan(spec)
    assert spec.n_trials() == len(configs) == 2 * 2 * 2 * 2 * 2
    assert len({c.hash() for c in configs}) == len(configs)
    combos = {
        (c.task.name, c.model.init, c.model.reparam, c.model.train_eigenvalues, c.seed) for c in configs
    }
    assert len(combos) == 32
    listops = next(c for c in configs if c.task.name == "listops")
    assert listops.task.options == {"max_len": 256, "n_train": 2000}
    assert listops.model.d_model == 32 and listops.optim.epochs == 3
    # a configuration group is the same across tasks and seeds
    groups = {group_key(c) for c in configs}
    assert len(groups) == 8


@pytest.mark.parametrize(
    ("edit", "path", "line"),
    [
        (("init: [inv, lin]", "init: [inv, lim]"), "model.init[1]", 3),
        (("d_state: 16", "d_state: 15"), "model.d_state", 4),
        (("seeds: [0, 1]", "seedz: [0, 1]"), "seedz", 6),
        (("delay,", "dalay,"), "tasks[0]", 2),
        (("max_len: 256", "maxlen: 256"), "tasks[1]", 2),
        (("lr: 3.0e-3", "lr: -1"), "optim.lr", 5),
        (("layer: s4d", "layerz: s4d"), "model.layerz", 3),
        (("gpus: 0.25", "gpus: -1"), "resources.gpus", 7),
        (("seeds: [0, 1]", "seeds: [0, 0]"), "seeds", 6),
    ],
)
def test_errors_name_the_key_path_and_line(edit, path, line):
    with pytest.raises(SpecError) as info:
        load_spec(QUICKSTART.replace(*edit))
    assert info.value.path == path
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}: ")


def test_cross_field_errors_name_the_grid_cell():
    text = "name: x\ntasks: [delay]\nmodel: {layer: s4, init: [legs, lin]}\n"
    with pytest.raises(SpecError, match=r"init must be 'legs'.*init=lin"):
        load_spec(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "mapping at the top level"),
        ("name: x\ntasks: [delay\n", "not valid YAML"),
        ("name: x\ntasks: []\n", "tasks"),
        ("name: x\ntasks: [delay]\nmodel: {init: []}\n", "empty grid"),
        ("name: x\ntasks: [delay]\nsearch: {space: {model.nope: {low: 1, high: 2}}}\n", "not a searchable"),
        (
            "name: x\ntasks: [delay]\nsearch: {space: {optim.lr: {low: 2, high: 1}}}\n",
            "low must be below high",
        ),
        ("!!python/object:os.system {}", "not valid YAML"),
    ],
)
def test_bad_specs_are_rejected(text, message):
    with pytest.raises(SpecError, match=message):
        load_spec(text)


def test_size_limit():
    with pytest.raises(SpecError, match="32 trials, more than the limit of 10"):
        load_spec(QUICKSTART, max_trials=10)
