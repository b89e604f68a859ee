"""GET /api/v1/trials/{id}/diagnostics: the arrays of a really trained trial, run by the worker
(`orchestrator.worker.run_trial` with `ssm.train.train`, no Ray), on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ThreadedServer, bearer, make_tokens, service_settings
from fastapi.testclient import TestClient
from fresh_models import fresh_model  # tests/fresh_models.py
from sqlalchemy import func, select

from api.app import create_app
from api.client import Client
from orchestrator import store
from orchestrator.db import process_sessions, transaction
from orchestrator.models import TrialDiagnosticArray
from orchestrator.worker import TrialJob, run_trial
from ssm import diagnostics
from ssm.config import TrialConfig
from ssm.train import TrialResult

N = 64  # d_state: an S4D-Inv layer's memory capacity at init is N
MAX_LAG = 16  # MC still reads N: its tail beyond the lags summed is in closed form
SPEC = {
    "name": "diagnosed",
    "tasks": [{"name": "delay", "n_train": 64, "n_val": 32, "n_test": 32, "seq_len": 32, "delay": 4}],
    "model": {"layer": "s4d", "init": "inv", "d_model": 4, "d_state": N, "n_layers": 2},
    "optim": {"epochs": 2, "batch_size": 32},
    "diagnostics": {
        "every": 1,
        "memory_max_lag": MAX_LAG,
        "fourier": {"frequencies": [0.1], "amplitude": 0.5},
    },
}


@pytest.fixture
def trained(db_url, sessions_for):
    """(client, sessions, tokens, trial id) of a service whose one trial was trained to completion."""
    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice")
    with TestClient(create_app(service_settings(db_url))) as client:
        created = client.post("/api/v1/sweeps", json=SPEC, headers=bearer(tokens["alice"]))
        assert created.status_code == 201, created.text
        trial_id = client.get(f"/api/v1/sweeps/{created.json()['id']}/trials").json()["items"][0]["id"]
        with transaction(sessions) as s:
            attempt = store.claim(s, trial_id, worker="test")
        assert run_trial(TrialJob(trial_id, attempt, db_url, heartbeat_seconds=60)) == "completed"
        yield client, sessions, tokens, trial_id
    process_sessions(db_url).kw["bind"].dispose()  # the worker's engine, kept per process


def initial_arrays(config: TrialConfig) -> list[dict]:
    """`layer_arrays` of the model `train` builds for `config`, at initialization, computed here."""
    model, _ = fresh_model(config)
    return diagnostics.layer_arrays(model, config.diagnostics.memory_max_lag)


def test_a_trained_trial_serves_its_arrays_and_mc_at_init_is_n(trained, db_url):
    client, _, _, trial_id = trained
    response = client.get(f"/api/v1/trials/{trial_id}/diagnostics")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["trial_id"] == body["source_trial_id"] == trial_id and body["attempt"] == 1
    assert list(body["snapshots"]) == ["init", "best", "end"]
    for layers in body["snapshots"].values():
        assert [layer["layer"] for layer in layers] == [0, 1]
        for layer in layers:
            assert np.array(layer["eigenvalues"]).shape == np.array(layer["Ab"]).shape == (4, N // 2, 2)
            assert np.array(layer["memory_function"]).shape == (4, MAX_LAG)
            assert len(layer["dt"]) == len(layer["memory_capacity"]) == 4
    for layer in body["snapshots"]["init"]:  # the memory capacity of S4D-Inv at init: N
        assert layer["memory_capacity"] == pytest.approx([N] * 4, abs=0.5)
    # what was served is what the trainer computed: the init arrays of a fresh model, computed here
    trial = client.get(f"/api/v1/trials/{trial_id}").json()
    expected = initial_arrays(TrialConfig.model_validate(trial["config"]))
    for served, computed in zip(body["snapshots"]["init"], expected, strict=True):
        for quantity, values in computed.items():
            np.testing.assert_allclose(np.array(served[quantity]), np.array(values), rtol=2e-7, atol=1e-30)
    assert body["snapshots"]["end"] != body["snapshots"]["init"]  # trained
    frequencies = [row["frequency"] for row in body["fourier_noise"]]
    assert frequencies == [None, 0.1]
    assert body["fourier_noise"][0]["accuracy"] == pytest.approx(trial["result"]["test_metric"])
    # the per-epoch scalars are in the epoch metrics
    epochs = client.get(f"/api/v1/trials/{trial_id}/metrics").json()["epochs"]
    assert [len(e["memory_capacity"]) for e in epochs] == [2, 2]

    only_init = client.get(f"/api/v1/trials/{trial_id}/diagnostics", params={"snapshot": "init"}).json()
    assert only_init["snapshots"] == {"init": body["snapshots"]["init"]}
    assert client.get(f"/api/v1/trials/{trial_id}/diagnostics?snapshot=middle").status_code == 422
    with ThreadedServer(service_settings(db_url)) as served, Client(served.url) as api:
        best = api.trial_diagnostics(trial_id, ["best"])
    assert list(best.snapshots) == ["best"]
    assert best.model_dump(mode="json")["snapshots"]["best"] == body["snapshots"]["best"]


def test_a_second_writer_changes_nothing(trained, db_url):
    client, sessions, _, trial_id = trained
    before = client.get(f"/api/v1/trials/{trial_id}/diagnostics").json()
    with transaction(sessions) as s:
        rows = s.scalar(select(func.count()).select_from(TrialDiagnosticArray))
    # a duplicated worker of the same attempt: the trial is no longer running, nothing is written
    assert run_trial(TrialJob(trial_id, 1, db_url, heartbeat_seconds=60)) == "lost"
    # a direct second write with other values: refused, the first set stays
    altered = TrialResult(status="completed", config_hash="x", metric="accuracy")
    altered.diagnostics = {"arrays": {"init": [{"dt": [1.0]}]}, "fourier": []}
    with transaction(sessions) as s:
        assert store.record_diagnostics(s, trial_id, 2, altered) is False
        assert s.scalar(select(func.count()).select_from(TrialDiagnosticArray)) == rows == 3 * 2 * 5
    assert client.get(f"/api/v1/trials/{trial_id}/diagnostics").json() == before


def test_unknown_trial_404_and_a_trial_without_diagnostics_is_empty(db_url, sessions_for):
    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice")
    with TestClient(create_app(service_settings(db_url))) as client:
        missing = client.get("/api/v1/trials/999999/diagnostics")
        assert missing.status_code == 404
        assert missing.json()["error"]["field"] == "trial_id"
        plain = {**SPEC, "name": "plain", "diagnostics": {}}
        sweep = client.post("/api/v1/sweeps", json=plain, headers=bearer(tokens["alice"])).json()
        trial_id = client.get(f"/api/v1/sweeps/{sweep['id']}/trials").json()["items"][0]["id"]
        empty = client.get(f"/api/v1/trials/{trial_id}/diagnostics").json()
    assert empty == {
        "trial_id": trial_id,
        "source_trial_id": trial_id,
        "attempt": None,
        "snapshots": {},
        "fourier_noise": None,
    }


def test_diagnostics_need_a_token_when_read_auth_is_on(sqlite_url, sessions_for):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    with TestClient(create_app(service_settings(sqlite_url, read_auth=True))) as client:
        assert client.get("/api/v1/trials/1/diagnostics").status_code == 401
        answer = client.get("/api/v1/trials/1/diagnostics", headers=bearer(tokens["alice"]))
        assert answer.status_code == 404  # past auth: no such trial
