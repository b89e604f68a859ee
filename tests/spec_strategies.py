"""Hypothesis strategies for sweep specs: valid ones (every draw passes `orchestrator.spec.validate_spec`
with the service's default limits), and hostile mutations of them. Shared by the spec's round-trip
property (tests/orchestrator/test_spec.py) and the service's fuzz suite (tests/api/test_api_fuzz.py).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import yaml
from hypothesis import strategies as st

SYNTHETIC_TASKS = ("delay", "adding", "memory-exp", "memory-poly", "linear-filter")
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda name: name.strip()
)


def _axis(values: st.SearchStrategy) -> st.SearchStrategy:
    """A fixed value, or a grid axis of one or two distinct values."""
    return st.one_of(values, st.lists(values, min_size=1, max_size=2, unique=True))


@st.composite
def task_entries(draw) -> Any:
    name = draw(st.sampled_from(SYNTHETIC_TASKS))
    options = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "seq_len": st.integers(1, 512),
                "n_train": st.integers(1, 5000),
                "n_val": st.integers(1, 500),
                "seed": st.integers(0, 2**31 - 1),
            },
        )
    )
    if not options and draw(st.booleans()):
        return name
    return {"name": name, **options} if draw(st.booleans()) else {"name": name, "options": options}


model_sections = st.fixed_dictionaries(
    {},
    optional={
        "layer": st.just("s4d"),
        "init": _axis(st.sampled_from(["legs", "inv", "lin"])),
        "reparam": _axis(st.sampled_from(["exp", "best"])),
        "train_eigenvalues": _axis(st.booleans()),
        "d_model": _axis(st.integers(1, 64)),
        "d_state": _axis(st.integers(1, 32).map(lambda n: 2 * n)),
        "n_layers": _axis(st.integers(1, 4)),
        "dropout": _axis(st.floats(0, 0.9)),
    },
)
optim_sections = st.fixed_dictionaries(
    {},
    optional={
        "epochs": _axis(st.integers(1, 20)),
        "batch_size": _axis(st.integers(1, 128)),
        "weight_decay": _axis(st.floats(0, 1)),
    },
)


@st.composite
def search_blocks(draw) -> dict[str, Any]:
    low = draw(st.floats(1e-5, 1e-2))
    high = draw(st.floats(low * 1.5, 1.0))
    return {
        "sampler": draw(st.sampled_from(["random", "tpe"])),
        "n_trials": draw(st.integers(1, 4)),
        "space": {"optim.lr": {"low": low, "high": high, "log": draw(st.booleans())}},
    }


@st.composite
def valid_specs(draw, max_cpus: float = 2.0) -> dict[str, Any]:
    """A valid sweep spec as a JSON-able dict: synthetic tasks, a grid of at most 2 values on a few
    axes, 1-2 seeds, sometimes a search on `optim.lr`; at most a few hundred trials."""
    search = draw(st.none() | search_blocks())
    tasks = draw(
        st.lists(
            task_entries(), min_size=1, max_size=2, unique_by=lambda t: t if isinstance(t, str) else t["name"]
        )
    )
    spec: dict[str, Any] = {"name": draw(names), "tasks": tasks}
    optional = {
        "model": model_sections,
        "optim": optim_sections
        if search is None
        else optim_sections.map(lambda o: {k: v for k, v in o.items() if not isinstance(v, list)}),
        "seeds": st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=2, unique=True),
        "resources": st.fixed_dictionaries({"cpus": st.sampled_from([0.25, 0.5, 1.0, max_cpus])}),
        "max_concurrent": st.integers(1, 8),
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            spec[key] = draw(values)
    if search is not None:
        spec["search"] = search
        # a search sweep's studies are told apart by task and grid cell: no two may be the same
        spec["tasks"] = [t if isinstance(t, str) else t["name"] for t in tasks]
    return spec


# --- hostile values and mutations ---------------------------------------------------------------------

NOT_JSON = (
    {"a", "b"},  # YAML !!set
    b"\x80\x81\x82",  # YAML !!binary, not UTF-8
    datetime.date(2020, 1, 1),  # YAML timestamp
)
hostile_values = st.one_of(
    st.sampled_from(
        [float("inf"), float("-inf"), float("nan"), 10**30, -(10**30), 2**63, -1, 0, 10**12, 1e308]
    ),
    st.sampled_from(NOT_JSON),
    st.sampled_from(["", "\x00", "x" * 5000, "Infinity", "1e400", None, True, [], {}]),
    st.integers(2, 300).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


@st.composite
def mutated_specs(draw, max_cpus: float = 2.0) -> dict[str, Any]:
    """A valid spec with one place replaced by a hostile value, one key added, or one key removed."""
    spec = json.loads(json.dumps(draw(valid_specs(max_cpus))))
    path = draw(st.sampled_from(_paths(spec)[1:]))
    parent = spec
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "replace", "add", "remove"]))
    if action == "replace":
        parent[path[-1]] = draw(hostile_values)
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["bogus", "n_train", "epochs", "T", "step", "options"]))] = draw(
            hostile_values
        )
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return spec


def spec_body(spec: dict[str, Any], as_yaml: bool) -> tuple[str, bytes]:
    """(content type, body) of a spec dict: YAML (sets, bytes and dates as YAML's own types) or JSON
    (non-finite floats as JSON's Infinity/NaN extension; a value JSON lacks sent as YAML anyway)."""
    if not as_yaml:
        try:
            return "application/json", json.dumps(spec).encode("utf-8", "surrogatepass")
        except TypeError:
            pass
    return "application/yaml", yaml.safe_dump(spec, allow_unicode=True).encode("utf-8", "surrogatepass")
