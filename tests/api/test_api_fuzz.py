"""The fuzz suite of issue 13: `ssmbench serve` in a child process with its scheduler running (a local
Ray of 2 CPUs, the fake trainer of api_fakes.py), on SQLite and PostgreSQL, attacked by one user with
a token:

- schemathesis draws requests for every operation from the service's own OpenAPI document (which
  states the bounds, the task names and `limit`'s maximum, so many of its sweeps are valid);
- hypothesis draws valid sweep specs (tests/spec_strategies.py) and hostile mutations of them (a
  non-finite or huge number, a set, bytes, a date, deep nesting, NUL, a removed or an added key), sent
  as JSON or YAML.

Every answer is below 500 and every error is `{"error": {code, message, field}}`. Afterwards the
scheduler still works for everyone: another user's fresh sweep runs to completion (the liveness check).
Bounded: SSMBENCH_FUZZ_EXAMPLES draws of each kind (default 25).
"""

from __future__ import annotations

import json
import os
import time

import httpx
import schemathesis
from conftest import ServeProcess, bearer, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_strategies import mutated_specs, spec_body, valid_specs

EXAMPLES = int(os.environ.get("SSMBENCH_FUZZ_EXAMPLES", "25"))
SWEEPS = "/api/v1/sweeps"
# another user's fresh sweep after the attack: two trials, so that it is quick even on a loaded machine
LIVENESS_SPEC = """\
name: liveness
tasks: [delay]
model: {layer: s4d, d_model: 8, d_state: 4, n_layers: 1}
optim: {epochs: 2}
seeds: [0, 1]
resources: {cpus: 0.5}
"""
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


def check_answer(response_status: int, content_type: str, body: bytes, what: str) -> None:
    """Below 500; a 4xx is the service's error shape."""
    assert response_status < 500, (what, response_status, body[:500])
    if response_status >= 400:
        assert content_type.startswith("application/json"), (what, response_status, content_type)
        error = json.loads(body)
        assert set(error) == {"error"} and set(error["error"]) == {"code", "message", "field"}, (what, error)
        assert isinstance(error["error"]["code"], str) and error["error"]["message"], (what, error)


def tokens_for(db: str) -> dict[str, str]:
    tokens = {}
    for name, extra in (("mallory", ()), ("bob", ()), ("root", ("--admin",))):
        made = run_cli("token", "create", "--name", name, "--db", db, "--json", *extra)
        assert made.returncode == 0, made.stderr
        tokens[name] = json.loads(made.stdout)["token"]
    return tokens


def test_fuzzed_requests_never_500_and_the_scheduler_keeps_running(db_url, tmp_path):
    tokens = tokens_for(db_url)
    serve = ServeProcess(
        db_url,
        tmp_path / "serve.log",
        # small sweeps, so that what the fuzzer gets accepted is stored and cancelled quickly
        extra_env={"SSMBENCH_MAX_TRIALS_PER_SWEEP": "64", "SSMBENCH_MAX_OPEN_SWEEPS_PER_OWNER": "30"},
    )
    try:
        serve.wait_ready(scheduler_state=("active",))
        document = httpx.get(f"{serve.url}/openapi.json").json()
        mallory = bearer(tokens["mallory"])
        with httpx.Client(base_url=serve.url, headers=mallory, timeout=60) as client:
            fuzz_the_schema(serve.url, document, mallory)
            fuzz_specs(client)
            assert client.get("/api/v1/health").json()["scheduler"]["state"] == "active"
        check_liveness(serve.url, tokens)
    except BaseException:
        print(serve.log())
        raise
    finally:
        serve.stop()


def fuzz_the_schema(url: str, document: dict, headers: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {("POST", SWEEPS), ("GET", SWEEPS)}

    @FUZZ_SETTINGS
    @given(case=st.one_of(*[op.as_strategy() for op in operations]))
    def each(case) -> None:
        response = case.call(base_url=url, headers=headers, timeout=60)
        content_type = response.headers.get("content-type") or [""]  # schemathesis: a list per header
        check_answer(
            response.status_code,
            content_type[0] if isinstance(content_type, list) else content_type,
            response.content,
            f"{case.method} {case.formatted_path} {case.query}",
        )

    each()


def fuzz_specs(client: httpx.Client) -> None:
    @FUZZ_SETTINGS
    @given(
        spec=st.one_of(valid_specs(), mutated_specs(), mutated_specs()),
        as_yaml=st.booleans(),
        valid=st.booleans(),
    )
    def each(spec, as_yaml: bool, valid: bool) -> None:
        content_type, body = spec_body(spec, as_yaml)
        response = client.post(SWEEPS, content=body, headers={"Content-Type": content_type})
        check_answer(
            response.status_code, response.headers.get("content-type", ""), response.content, body[:300]
        )

    each()

    accepted = []

    @FUZZ_SETTINGS
    @given(spec=valid_specs(), as_yaml=st.booleans())
    def valid(spec, as_yaml: bool) -> None:
        content_type, body = spec_body(spec, as_yaml)
        response = client.post(SWEEPS, content=body, headers={"Content-Type": content_type})
        # accepted, or over this server's small trials-per-sweep limit, or over the owner's quota
        codes = {"too_many_trials", "too_many_open_sweeps", "too_many_pending_trials"}
        assert response.status_code == 201 or response.json()["error"]["code"] in codes, response.text
        accepted.append(response.status_code == 201)

    valid()
    assert any(accepted), "no valid spec was accepted: the fuzzer tested refusals only"


def check_liveness(url: str, tokens: dict[str, str]) -> None:
    """The operator cancels the attacker's sweeps; another user's fresh sweep then runs to the end."""
    with httpx.Client(base_url=url, headers=bearer(tokens["root"]), timeout=60) as admin:
        for state in ("pending", "running"):
            for sweep in admin.get(SWEEPS, params={"state": state, "limit": 500}).json()["items"]:
                assert admin.post(f"{SWEEPS}/{sweep['id']}/cancel").status_code in (200, 409)
    with httpx.Client(base_url=url, headers=bearer(tokens["bob"]), timeout=60) as bob:
        created = bob.post(SWEEPS, content=LIVENESS_SPEC, headers={"Content-Type": "application/yaml"})
        assert created.status_code == 201, created.text
        sweep_id, deadline = created.json()["id"], time.monotonic() + 120
        while time.monotonic() < deadline:
            sweep = bob.get(f"{SWEEPS}/{sweep_id}").json()
            if sweep["state"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.5)
        assert sweep["state"] == "completed" and sweep["trials_by_state"] == {"completed": 2}, sweep
