"""The OpenAPI document is complete, and the service keeps to it under generated input.

schemathesis is not installed here, so the property test is hypothesis over the document itself:
for every operation, query and path parameters drawn from their schemas and from hostile values
(negative and huge numbers, unknown enum values, odd text), and submit bodies drawn from JSON
values, YAML text and near-valid specs. Every answer must be below 500, have a status the operation
declares, and match the declared schema (jsonschema against the document's own components).
In process (TestClient: nothing leaves the loopback), bounded number of examples.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote

import jsonschema
import pytest
from conftest import GRID_YAML, bearer, finish_trials, make_tokens, service_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app

EXAMPLES = int(os.environ.get("SSMBENCH_API_EXAMPLES", "100"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A service with a little of everything in its database, and its OpenAPI document."""
    from orchestrator.db import make_engine, session_factory, upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'ssmbench.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    tokens = make_tokens(sessions, "alice")
    with TestClient(
        create_app(service_settings(url, max_body_bytes=16384)), raise_server_exceptions=False
    ) as client:
        headers = {"Content-Type": "application/yaml", **bearer(tokens["alice"])}
        for name in ("one", "two"):
            response = client.post("/api/v1/sweeps", content=GRID_YAML.replace("grid", name), headers=headers)
            assert response.status_code == 201
        finish_trials(sessions, 1, n=3)
        yield client, client.get("/openapi.json").json(), tokens["alice"]
    engine.dispose()


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


def check_answer(document: dict, path: str, method: str, response) -> None:
    """Below 500, a declared status, and a body matching the declared schema."""
    assert response.status_code < 500, (method, path, response.status_code, response.text)
    declared = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in declared, (method, path, status, response.text)
    content = declared[status].get("content", {})
    if "application/json" in content:
        schema = content["application/json"].get("schema")
        if schema:
            validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
            errors = sorted(validator.iter_errors(response.json()), key=str)
            assert not errors, (method, path, status, errors[0].message, response.text[:500])


# --- the document -------------------------------------------------------------------------------------


def test_every_operation_is_documented_with_models_errors_and_examples(served):
    _, document, _ = served
    assert {path for path, _, _ in operations(document)} == {
        "/api/v1/sweeps",
        "/api/v1/sweeps/{sweep_id}",
        "/api/v1/sweeps/{sweep_id}/cancel",
        "/api/v1/sweeps/{sweep_id}/trials",
        "/api/v1/trials/{trial_id}",
        "/api/v1/trials/{trial_id}/metrics",
        "/api/v1/trials/{trial_id}/diagnostics",
        "/api/v1/leaderboard",
        "/api/v1/baselines",
        "/api/v1/reports/data",
        "/api/v1/health",
        "/metrics",
    }
    for path, method, op in operations(document):
        assert op.get("summary") and op.get("description"), (method, path)
        success = "201" if (method, path) == ("post", "/api/v1/sweeps") else "200"
        assert success in op["responses"], (method, path)
        assert op["responses"][success].get("content"), (method, path)
        if path.startswith("/api/v1"):
            for status in ("422", "503"):
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                assert schema in (
                    {"$ref": "#/components/schemas/ErrorResponse"},
                    {"$ref": "#/components/schemas/Health"},
                )
        if method == "post":
            assert "401" in op["responses"] and op.get("security"), (method, path)
    body = document["paths"]["/api/v1/sweeps"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/yaml"}
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/SweepSpec"}
    assert (
        "SweepSpec" in document["components"]["schemas"] and "TaskConfig" in document["components"]["schemas"]
    )
    for model in (
        "SweepCreated",
        "SweepSummary",
        "TrialSummary",
        "TrialDiagnosticsOut",
        "Leaderboard",
        "Health",
        "ErrorResponse",
    ):
        assert document["components"]["schemas"][model].get("examples"), model
    # every $ref resolves
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)):
        assert ref in document["components"]["schemas"], ref


def test_the_documented_examples_match_their_schemas(served):
    _, document, _ = served
    for name, schema in document["components"]["schemas"].items():
        validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
        for example in schema.get("examples", []):
            assert not list(validator.iter_errors(example)), name


def test_the_leaderboard_is_documented_by_the_orchestrators_own_models(served):
    from orchestrator.leaderboard import AverageRow, LeaderboardFilters, LeaderboardRow

    _, document, _ = served
    answer = document["paths"]["/api/v1/leaderboard"]["get"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/Leaderboard"}
    schemas = document["components"]["schemas"]
    for model in (LeaderboardRow, AverageRow, LeaderboardFilters):
        documented = schemas[model.__name__]
        assert set(documented["properties"]) == set(documented["required"]) == set(model.model_fields)


# --- generated requests -------------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", " ", "-1", "1e9", "null", "true", "%00", "../..", "'; drop table sweeps; --", "é" * 5]
    ),
)


def value_for(schema: dict, components: dict) -> st.SearchStrategy:
    """Values a parameter of this schema may get: valid ones, and ones it must refuse."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        return st.one_of([value_for(s, components) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), hostile_text)
    kind = schema.get("type")
    if kind == "integer":
        return st.one_of(st.integers(min_value=-3, max_value=12), st.integers(), hostile_text)
    if kind == "boolean":
        return st.one_of(st.sampled_from(["true", "false", "1", "0", "yes"]), hostile_text)
    if kind == "null":
        return st.none()
    return hostile_text


@st.composite
def requests(draw, document: dict):
    path, method, op = draw(
        st.sampled_from([o for o in operations(document) if o[1] == "get" or "cancel" in o[0]])
    )
    params, url = {}, path
    for parameter in op.get("parameters", []):
        if parameter["in"] == "path":  # a non-empty segment, never "." or "..": the same route
            value = draw(
                value_for(parameter["schema"], document["components"]).filter(
                    lambda v: v is not None and str(v).strip(" .")
                )
            )
            url = url.replace("{" + parameter["name"] + "}", quote(str(value), safe=""))
        elif parameter["in"] == "query" and draw(st.booleans()):
            value = draw(value_for(parameter["schema"], document["components"]))
            if value is not None:
                params[parameter["name"]] = value
    return path, method, url, params


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_generated_queries_get_declared_answers(served, data):
    client, document, token = served
    path, method, url, params = data.draw(requests(document))
    headers = bearer(token) if data.draw(st.booleans()) else {}
    response = client.request(method.upper(), url, params=params, headers=headers, follow_redirects=False)
    check_answer(document, path, method, response)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
spec_keys = st.sampled_from(
    ["name", "tasks", "model", "optim", "seeds", "search", "resources", "budget", "priority"]
)
near_specs = st.fixed_dictionaries(
    {
        "name": st.one_of(st.text(max_size=10), st.integers()),
        "tasks": st.one_of(
            st.lists(st.sampled_from(["delay", "listops", "nope", 3]), max_size=3), json_values
        ),
    },
    optional={
        "model": st.dictionaries(
            st.sampled_from(["init", "layer", "d_state", "reparam", "bogus"]), json_values, max_size=3
        ),
        "optim": st.dictionaries(st.sampled_from(["lr", "epochs", "batch_size"]), json_values, max_size=2),
        "seeds": st.one_of(st.lists(st.integers(-2, 5), max_size=4), json_values),
        "search": json_values,
        "resources": st.dictionaries(st.sampled_from(["cpus", "gpus", "tpus"]), json_values, max_size=2),
    },
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    body=st.one_of(
        json_values.map(lambda v: ("application/json", json.dumps(v))),
        near_specs.map(lambda v: ("application/json", json.dumps(v))),
        st.dictionaries(spec_keys, json_values, max_size=5).map(
            lambda v: ("application/yaml", json.dumps(v))
        ),
        st.text(max_size=200).map(lambda t: ("application/yaml", t)),
        st.binary(max_size=64).map(lambda b: ("application/yaml", b)),
        st.text(max_size=30).map(lambda t: ("text/" + ("plain" if len(t) % 2 else "csv"), t)),
    )
)
def test_generated_submissions_get_declared_answers(served, body):
    client, document, token = served
    content_type, content = body
    response = client.post(
        "/api/v1/sweeps", content=content, headers={"Content-Type": content_type, **bearer(token)}
    )
    check_answer(document, "/api/v1/sweeps", "post", response)
    if response.status_code == 422:
        assert response.json()["error"]["code"] in ("invalid_spec", "too_many_trials")
