"""Sweep specs: the grid, and errors that name the key path and line before anything is stored."""

import json

import pytest
import yaml

from orchestrator.errors import key_path
from orchestrator.spec import SpecError, SweepSpec, group_key, load_spec, parse_spec, plan

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


# --- one parser: JSON and YAML alike, coded errors, the trial budget -----------------------------------

SEARCH = """\
name: s
tasks: [delay, adding]
model: {init: [inv, lin, legs], d_state: 16}
seeds: [4, 5]
budget: {max_trials: BUDGET}
search:
  n_trials: 5
  space:
    optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
    model.d_model:
      low: 0
      high: 64
"""


def test_json_and_yaml_make_the_same_spec_and_yaml_errors_have_lines():
    spec = parse_spec(QUICKSTART, "application/yaml")
    as_json = json.dumps(yaml.safe_load(QUICKSTART))
    assert parse_spec(as_json, "application/json") == spec == load_spec(QUICKSTART)
    bad = QUICKSTART.replace("lr: 3.0e-3", "lr: -1")
    with pytest.raises(SpecError) as yaml_error:
        parse_spec(bad, "text/yaml")
    with pytest.raises(SpecError) as json_error:
        parse_spec(json.dumps(yaml.safe_load(bad)), "application/json")
    assert yaml_error.value.path == json_error.value.path == "optim.lr"
    assert (yaml_error.value.line, json_error.value.line) == (5, None)
    with pytest.raises(SpecError, match="not valid JSON"):
        parse_spec("{nope", "application/json")
    with pytest.raises(ValueError, match="text/plain"):
        parse_spec(QUICKSTART, "text/plain")


def test_errors_carry_a_code_for_programs():
    with pytest.raises(SpecError) as too_many:
        parse_spec(QUICKSTART, max_trials=31)
    assert too_many.value.code == "too_many_trials" and too_many.value.path == ""
    assert parse_spec(QUICKSTART, max_trials=32).n_trials() == 32  # the limit itself is allowed
    with pytest.raises(SpecError) as invalid:
        parse_spec(QUICKSTART.replace("d_state: 16", "d_state: 15"), max_trials=31)
    assert invalid.value.code == "invalid_spec"


def test_a_search_error_under_a_dotted_key_names_its_path_and_line():
    # optim.lr is one key of search.space: the path keeps it whole and the line is the bound's own
    with pytest.raises(SpecError) as info:
        load_spec(SEARCH.replace("BUDGET", "100"))
    assert info.value.path == "search.space.model.d_model.low"
    assert info.value.line == 11 and "not a valid d_model" in info.value.message


def test_the_trial_budget_is_what_the_sweep_stores():
    grid = load_spec(QUICKSTART + "budget: {max_trials: 3}\n")
    assert grid.trial_budget() == grid.n_trials() == 2 * 2 * 2 * 2 * 2  # a grid plans every trial
    text = SEARCH.replace("low: 0", "low: 8")
    # 2 tasks × 3 cells × n_trials 5 (seeds do not multiply a search: it uses the first)
    assert load_spec(text.replace("BUDGET", "100")).trial_budget() == 30
    assert load_spec(text.replace("BUDGET", "7")).trial_budget() == 7
    assert load_spec(text.replace("BUDGET", "7")).n_trials() == 30  # what the size limit counts


def test_a_spec_survives_its_storage_round_trip():
    spec = load_spec(SEARCH.replace("BUDGET", "9").replace("low: 0", "low: 8"))
    stored = json.loads(json.dumps(spec.model_dump(mode="json")))
    assert SweepSpec.model_validate(stored) == spec


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("model", "init", 1), "model.init[1]"),
        (("search", "space", "optim.lr", "low"), "search.space.optim.lr.low"),
        (("tasks", 0, 2), "tasks[0][2]"),
        ((0,), "[0]"),
        ((), ""),
    ],
)
def test_key_path(loc, path):
    assert key_path(loc) == path
