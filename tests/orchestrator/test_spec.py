"""Sweep specs: the grid, and errors that name the key path and line before anything is stored."""

import json

import pytest
import yaml

from api.routes.sweeps import QUICKSTART_YAML
from orchestrator.errors import key_path
from orchestrator.spec import SpecError, SweepSpec, group_key, load_spec, parse_spec, plan

# The API's documented example (OpenAPI) with resources added; the tests below edit it by line.
QUICKSTART = QUICKSTART_YAML + "resources: {cpus: 1, gpus: 0.25}\n"


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
    "model",
    [
        "{dt_min: 0.3, dt_max: 0.5}",  # fixed: valid together, not with dt_max's default 0.1
        "{dt_min: [0.01, 0.3], dt_max: [0.5, 1.0]}",  # every combination valid
        "{dt_max: [0.5], dt_min: 0.3}",
        "{linear: true, d_model: 1, d_state: [4, 8]}",
    ],
)
def test_a_value_valid_with_the_other_fields_is_accepted_though_not_with_their_defaults(model):
    spec = load_spec(f"name: x\ntasks: [delay]\nmodel: {model}\n")
    assert all(c.model.dt_min <= c.model.dt_max for c in plan(spec))
    assert len(plan(spec)) == spec.n_trials()


@pytest.mark.parametrize(
    ("model", "path", "message"),
    [
        ("{dt_min: [0.01, 0.3]}", "model.dt_min[1]", r"dt_min=0.3 must not exceed dt_max=0.1"),
        ("{dt_min: [0.01, 0.3], dt_max: 0.2}", "model.dt_min[1]", r"dt_max=0.2 .*dt_min=0.3, dt_max=0.2"),
        ("{dt_min: 0.3, dt_max: 0.2}", "model.dt_min", r"must not exceed dt_max=0.2"),
        ("{d_state: [64, 3]}", "model.d_state[1]", r"must be even"),
        ("{dt_min: [0.01, -1], dt_max: 0.5}", "model.dt_min[1]", r"greater than 0"),  # the field alone
    ],
)
def test_a_combination_invalid_in_itself_names_its_key_path_and_line(model, path, message):
    with pytest.raises(SpecError, match=message) as info:
        load_spec(f"name: x\ntasks: [delay]\nmodel: {model}\n")
    assert info.value.path == path and info.value.line == 3


def test_a_combination_is_checked_in_a_search_sweep_too():
    base = "name: x\ntasks: [delay]\nsearch: {space: {optim.lr: {low: 1.0e-4, high: 1.0e-2}}, n_trials: 2}\n"
    assert load_spec(base + "model: {dt_min: 0.3, dt_max: 0.5}\n").search is not None
    with pytest.raises(SpecError, match="must not exceed") as info:
        load_spec(base + "model: {dt_min: [0.01, 0.3]}\n")
    assert info.value.path == "model.dt_min[1]"


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


@pytest.mark.parametrize(
    "custom",
    [
        "{CPU: 1}",
        "{memory: 1}",
        "{'1abc': 1}",
        "{'a b': 1}",
        "{w: 0}",
        "{w: 0.00001}",
        "{w: 2000000}",
        "{w: x}",
        "{" + ", ".join(f"r{i}: 1" for i in range(17)) + "}",  # 16 at most
    ],
)
def test_custom_resources_that_ray_would_refuse_are_spec_errors(custom):
    with pytest.raises(SpecError) as info:
        load_spec(f"name: c\ntasks: [delay]\nresources: {{custom: {custom}}}\n")
    assert info.value.path.startswith("resources.custom"), info.value.path


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


# --- issue 13: what a spec may ask for is bounded, and a spec survives its own storage ------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from spec_strategies import spec_body, valid_specs  # noqa: E402  (tests/spec_strategies.py)

from orchestrator.spec import MAX_DEPTH, MAX_NODES, TaskOptionLimits, validate_spec  # noqa: E402


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(data=valid_specs(), as_yaml=st.booleans())
def test_a_valid_spec_re_validates_from_its_stored_form_to_the_same_spec(data, as_yaml):
    content_type, body = spec_body(data, as_yaml)
    spec = parse_spec(body.decode(), content_type, max_trials=10_000)
    stored = json.loads(json.dumps(spec.model_dump(mode="json"), allow_nan=False))  # as the database holds it
    again = validate_spec(stored, max_trials=10_000)
    assert again == spec
    assert again.model_dump(mode="json") == stored
    assert [c.hash() for c in plan(again)] == [c.hash() for c in plan(spec)] if spec.search is None else True


def refused(text: str) -> pytest.ExceptionInfo[SpecError]:
    """The SpecError of a minimal spec (name x, task delay) with `text` added (a `tasks:` in `text`
    replaces the delay)."""
    with pytest.raises(SpecError) as info:
        load_spec(f"name: x\ntasks: [delay]\n{text}\n".replace("tasks: [delay]\ntasks", "tasks"))
    return info


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("search: {space: {optim.lr: {low: 0.001, high: .inf}}}", "search.space.optim.lr.high"),
        ("search: {space: {optim.lr: {low: .nan, high: 0.1}}}", "search.space.optim.lr.low"),
        ("resources: {cpus: .inf}", "resources.cpus"),
        ("optim: {lr: [0.1, .nan]}", "optim.lr[1]"),
        ("model: {dropout: -.inf}", "model.dropout"),
        ("tasks: [{name: memory-exp, T: 1.0e+400}]", "tasks[0].T"),
        ("tasks: [{name: delay, options: {delay: .inf}}]", "tasks[0].options.delay"),
        ("diagnostics: {fourier: {frequencies: [0.1, .inf]}}", "diagnostics.fourier.frequencies[1]"),
    ],
)
def test_a_non_finite_number_anywhere_is_refused_naming_its_field(text, path):
    info = refused(text)
    assert info.value.path == path and "finite" in info.value.message, info.value


def test_non_finite_json_numbers_are_refused_too():
    for literal in ("Infinity", "-Infinity", "NaN", "1e400"):
        with pytest.raises(SpecError) as info:
            parse_spec(
                '{"name": "x", "tasks": ["delay"], "resources": {"cpus": LITERAL}}'.replace(
                    "LITERAL", literal
                ),
                "application/json",
            )
        assert info.value.path == "resources.cpus" and "finite" in info.value.message


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("!!set {a, b}", "a set"),
        ("!!binary gIGC", "binary data"),
        ("2020-01-01", "a date"),
        ("2020-01-01T10:00:00Z", "a date"),
    ],
)
def test_a_yaml_value_that_is_not_json_is_refused(value, kind):
    """Sets, bytes and timestamps would not survive the JSON the spec is stored as (nor the config hash)."""
    with pytest.raises(SpecError) as info:
        load_spec(f"name: x\ntasks: [{{name: pathx, level: {value}}}]\n")
    assert info.value.path == "tasks[0].level" and kind in info.value.message and info.value.line == 2


def test_nul_characters_lone_surrogates_and_text_keys():
    for text, path in (
        ('{"name": "a\\u0000b", "tasks": ["delay"]}', "name"),
        ('{"name": "\\ud800", "tasks": ["delay"]}', "name"),
    ):
        with pytest.raises(SpecError) as info:
            parse_spec(text, "application/json")
        assert info.value.path == path
    with pytest.raises(SpecError) as info:
        load_spec("name: x\ntasks: [delay]\nmodel: {1: 2}\n")
    assert info.value.path == "model" and "key must be text" in info.value.message


def test_yaml_aliases_are_counted_expanded_and_refused_past_the_bound():
    """A billion laughs in a few hundred bytes: refused while composing, before anything is built."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "name: x\ntasks: [delay]\n" + "\n".join(lines) + "\n"
    assert len(bomb) < 600
    with pytest.raises(SpecError) as info:
        load_spec(bomb)
    assert info.value.code == "spec_too_large" and f"{MAX_NODES} values" in info.value.message
    with pytest.raises(SpecError) as info:  # one long string aliased many times
        load_spec(
            "name: x\ntasks: [delay]\ns: &s " + "y" * 20_000 + "\nt: [" + ", ".join(["*s"] * 20) + "]\n"
        )
    assert info.value.code == "spec_too_large" and "characters" in info.value.message
    with pytest.raises(SpecError) as info:
        load_spec("name: &n [*n]\ntasks: [delay]\n")
    assert "inside its own anchor" in info.value.message
    # aliases within the bounds work as before
    spec = load_spec("name: x\ntasks: [delay]\nmodel: {d_model: &d 16, d_state: *d}\n")
    assert spec.model == {"d_model": 16, "d_state": 16}


def test_nesting_is_bounded_in_yaml_and_json():
    deep = "[" * 300 + "]" * 300
    with pytest.raises(SpecError) as info:
        load_spec(f"name: x\ntasks: [{{name: delay, delay: {deep}}}]\n")
    assert f"more than {MAX_DEPTH} levels" in info.value.message and info.value.line == 2
    with pytest.raises(SpecError) as info:
        parse_spec(
            '{"name": "x", "tasks": [{"name": "delay", "delay": DEEP}]}'.replace("DEEP", deep),
            "application/json",
        )
    assert f"more than {MAX_DEPTH} levels" in info.value.message and info.value.path.startswith(
        "tasks[0].delay"
    )
    very_deep = "[" * 100_000 + "]" * 100_000  # deeper than Python's recursion limit
    with pytest.raises(SpecError):
        parse_spec(very_deep, "application/json")
    with pytest.raises(SpecError):
        load_spec(very_deep)


def test_integers_beyond_64_bits_and_beyond_python_s_digit_limit():
    with pytest.raises(SpecError) as info:
        parse_spec(
            json.dumps({"name": "x", "tasks": [{"name": "delay", "options": {"bogus": 2**64}}]}),
            "application/json",
        )
    assert info.value.path == "tasks[0].options.bogus" and "64 bits" in info.value.message
    for text in (f"name: x\ntasks: [delay]\nseeds: [{'9' * 5000}]\n",):
        with pytest.raises(SpecError) as info:
            load_spec(text)
        assert "digits" in info.value.message


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("optim: {epochs: 1000000000000}", "optim.epochs"),
        ("model: {d_model: 100000000}", "model.d_model"),
        ("model: {d_state: [2, 100000]}", "model.d_state[1]"),
        ("model: {n_layers: 100000}", "model.n_layers"),
        ("optim: {batch_size: 10000000}", "optim.batch_size"),
        ("tasks: [{name: delay, n_train: 1000000000000}]", "tasks[0].n_train"),
        ("tasks: [{name: listops, max_len: 10000000}]", "tasks[0].max_len"),
        ("tasks: [{name: delay, options: {n_test: 0}}]", "tasks[0].n_test"),
        ("seeds: [0, 4294967296]", "seeds[1]"),
        ("resources: {cpus: 100000}", "resources.cpus"),
        ("resources: {gpus: 1000}", "resources.gpus"),
        ("priority: 9223372036854775807", "priority"),
        ("max_concurrent: 10000000", "max_concurrent"),
        ("search: {n_trials: 100000000, space: {optim.lr: {low: 0.001, high: 0.1}}}", "search.n_trials"),
        ("search: {space: {model.d_model: {low: 1, high: 100000000}}}", "search.space.model.d_model.high"),
        ("diagnostics: {memory_max_lag: 100000000}", "diagnostics.memory_max_lag"),
    ],
)
def test_every_numeric_field_has_an_upper_bound(text, path):
    info = refused(text)
    assert info.value.path == path, info.value
    assert "less than" in info.value.message or "greater than" in info.value.message


def test_task_option_bounds_cover_every_numeric_option_of_every_task():
    """A new numeric task option needs a bound in TaskOptionLimits (else it is unbounded)."""
    from ssm.data import TASK_NAMES, task_options

    for task in TASK_NAMES:
        for option, default in task_options(task).items():
            if option not in TaskOptionLimits.model_fields:
                assert default is not None and not isinstance(default, int | float), (task, option)


def test_a_search_step_that_overflows_is_refused_at_the_step():
    with pytest.raises(SpecError) as info:
        load_spec(
            "name: x\ntasks: [delay]\nsearch: {space: {optim.lr: {low: 1.0e-4, high: 1.0e-2, step: 5.0e-324}}}\n"
        )
    assert info.value.path == "search.space.optim.lr.step"


def test_the_grid_limit_is_checked_before_planning_and_the_plan_is_made_once(monkeypatch):
    axes = ", ".join(
        f"{k}: [{','.join(str(v) for v in values)}]"
        for k, values in {
            "d_model": range(1, 11),
            "n_layers": range(1, 11),
            "dropout": [i / 10 for i in range(10)],
            "d_state": range(2, 22, 2),
        }.items()
    )
    optim = ", ".join(
        f"{k}: [{','.join(str(v) for v in range(1, 11))}]" for k in ("epochs", "batch_size", "warmup_steps")
    )
    text = f"name: g\ntasks: [delay]\nmodel: {{{axes}}}\noptim: {{{optim}, lr: [.1,.2,.3,.4,.5,.6,.7,.8,.9,1.0]}}\n"
    assert len(text) <= 343  # the size of the spec
    built = []
    real = SweepSpec.trial_config
    monkeypatch.setattr(SweepSpec, "trial_config", lambda self, *a: built.append(1) or real(self, *a))
    with pytest.raises(SpecError) as info:
        load_spec(text, max_trials=10_000)
    assert info.value.code == "too_many_trials" and "100000000 trials" in info.value.message
    assert built == [1]  # nothing planned: only the first cell is built, so an invalid spec says so
    built.clear()
    spec = load_spec(QUICKSTART, max_trials=10_000)
    assert len(built) == 32
    assert plan(spec) is plan(spec) and len(built) == 32  # storing the sweep plans nothing again
