"""The REST routes through FastAPI's TestClient, without the scheduler (no Ray), on SQLite and
PostgreSQL: shapes of the answers, the error body of every failure, auth, pagination, limits."""

from __future__ import annotations

import json
import math

import pytest
from conftest import (
    GRID_YAML,
    YAML,
    bearer,
    error_of,
    finish_trials,
    make_tokens,
    service_settings,
    submit_sweep,
)
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app, use_database
from api.deps import ServiceSettings
from api.schemas import TrialSummary
from orchestrator import store
from orchestrator.db import DatabaseNotMigrated, transaction
from orchestrator.leaderboard import leaderboard
from orchestrator.models import Trial

GRID_JSON = {"name": "grid-json", "tasks": ["delay"], "model": {"init": ["inv", "legs"]}, "seeds": [0, 1, 2]}
DEFAULT_PAGE = ServiceSettings.model_fields["max_page_size"].default  # the leaderboard's default page


# --- sweeps ---------------------------------------------------------------------------------------------


def test_submit_yaml_and_json_then_read_the_sweep(service):
    client, _, tokens = service
    response = client.post("/api/v1/sweeps", content=GRID_YAML, headers={**YAML, **bearer(tokens["alice"])})
    assert response.status_code == 201
    created = response.json()
    assert created == {"id": created["id"], "name": "grid", "state": "pending", "n_trials": 8}
    assert response.headers["location"] == f"/api/v1/sweeps/{created['id']}"

    response = client.post("/api/v1/sweeps", json=GRID_JSON, headers=bearer(tokens["bob"]))
    assert response.status_code == 201 and response.json()["n_trials"] == 6

    sweep = client.get(f"/api/v1/sweeps/{created['id']}").json()
    assert sweep["owner"] == "alice" and sweep["state"] == "pending"
    assert sweep["trials_by_state"] == {"pending": 8} and sweep["progress"] == 0.0
    assert sweep["spec"]["model"]["init"] == ["inv", "lin"]
    assert sweep["created_at"].endswith("Z") or "+00:00" in sweep["created_at"]


def test_sweep_list_pages_and_filters(service):
    client, sessions, tokens = service
    ids = [
        submit_sweep(client, tokens["alice"], GRID_YAML.replace("name: grid", f"name: s{i}"))["id"]
        for i in range(3)
    ]
    finish_trials(sessions, ids[0])

    page = client.get("/api/v1/sweeps", params={"limit": 2}).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [s["id"] for s in page["items"]] == [ids[2], ids[1]]  # newest first
    rest = client.get("/api/v1/sweeps", params={"limit": 2, "offset": 2}).json()
    assert [s["id"] for s in rest["items"]] == [ids[0]]
    done = client.get("/api/v1/sweeps", params={"state": "completed"}).json()
    assert [s["id"] for s in done["items"]] == [ids[0]] and done["items"][0]["progress"] == 1.0

    assert error_of(client.get("/api/v1/sweeps", params={"state": "finished"}), 422)["field"] == "state"
    assert error_of(client.get("/api/v1/sweeps", params={"limit": 0}), 422)["field"] == "limit"
    too_many = error_of(client.get("/api/v1/sweeps", params={"limit": 501}), 422)
    assert too_many == {
        "code": "page_too_large",
        "message": "limit is at most 500 (got 501)",
        "field": "limit",
    }
    assert error_of(client.get("/api/v1/sweeps", params={"offset": "x"}), 422)["field"] == "offset"


def test_sweep_trials_pages_and_filters_and_trial_details(service):
    client, sessions, tokens = service
    sweep_id = submit_sweep(client, tokens["alice"])["id"]
    done = finish_trials(sessions, sweep_id, n=3)

    page = client.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"limit": 5}).json()
    assert page["total"] == 8 and len(page["items"]) == 5
    assert [t["number"] for t in page["items"]] == [0, 1, 2, 3, 4]
    assert set(page["items"][0]) == set(TrialSummary.model_fields)  # list_trials' `seconds` stays out
    completed = client.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"state": "completed"}).json()
    assert [t["id"] for t in completed["items"]] == done and completed["total"] == 3
    assert all(t["attempt"] == 1 for t in completed["items"])

    trial = client.get(f"/api/v1/trials/{done[0]}").json()
    assert trial["state"] == "completed" and trial["config"]["model"]["d_model"] == 8
    assert trial["result"]["metric"] == "accuracy" and trial["result"]["test_metric"] == pytest.approx(0.6)
    metrics = client.get(f"/api/v1/trials/{done[0]}/metrics").json()
    assert metrics["trial_id"] == done[0]
    assert [(m["attempt"], m["epoch"], m["val_metric"]) for m in metrics["epochs"]] == [
        (1, 0, 0.6),
        (1, 1, 0.6),
    ]

    pending = client.get(f"/api/v1/trials/{page['items'][4]['id']}").json()
    assert pending["result"] is None and pending["state"] == "pending"
    assert (
        error_of(client.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"state": "bogus"}), 422)["field"]
        == "state"
    )


def test_unknown_ids_and_routes_are_404_and_methods_405(service):
    client, _, tokens = service
    for path, field in (
        ("/api/v1/sweeps/999", "sweep_id"),
        ("/api/v1/sweeps/999/trials", "sweep_id"),
        ("/api/v1/trials/999", "trial_id"),
        ("/api/v1/trials/999/metrics", "trial_id"),
    ):
        error = error_of(client.get(path), 404)
        assert error["field"] == field and "999" in error["message"]
    error = error_of(client.post("/api/v1/sweeps/999/cancel", headers=bearer(tokens["alice"])), 404)
    assert error["code"] == "sweep_not_found"
    assert error_of(client.get("/api/v1/leaderboard", params={"sweep": 999}), 404)["field"] == "sweep"
    assert error_of(client.get("/api/v1/nothing-here"), 404)["code"] == "not_found"
    assert error_of(client.get("/api/v1/sweeps/abc"), 422)["field"] == "sweep_id"
    error = error_of(client.delete("/api/v1/sweeps"), 405)
    assert error["code"] == "method_not_allowed" and "POST" in error["message"]


# --- auth -----------------------------------------------------------------------------------------------


def test_writes_need_a_valid_token_and_cancelling_needs_ownership(service):
    client, _, tokens = service
    error = error_of(client.post("/api/v1/sweeps", content=GRID_YAML, headers=YAML), 401)
    assert error["field"] == "Authorization" and "ssmbench token create" in error["message"]
    bad = client.post("/api/v1/sweeps", content=GRID_YAML, headers={**YAML, **bearer("ssmb_not-a-token")})
    assert error_of(bad, 401)["code"] == "invalid_token"
    assert bad.headers["www-authenticate"].startswith("Bearer")
    wrong_scheme = client.post(
        "/api/v1/sweeps", content=GRID_YAML, headers={**YAML, "Authorization": "Basic eDp5"}
    )
    assert error_of(wrong_scheme, 401)["field"] == "Authorization"

    sweep_id = submit_sweep(client, tokens["alice"])["id"]
    error = error_of(client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=bearer(tokens["bob"])), 403)
    assert error["field"] == "sweep_id" and "alice" not in error["message"]  # issue 13: no other owner named
    assert error_of(client.post(f"/api/v1/sweeps/{sweep_id}/cancel"), 401)["field"] == "Authorization"


def test_cancel_cancels_pending_trials_once_and_refuses_a_completed_sweep(service):
    client, sessions, tokens = service
    sweep_id = submit_sweep(client, tokens["alice"])["id"]
    finish_trials(sessions, sweep_id, n=2)
    response = client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=bearer(tokens["alice"]))
    assert response.status_code == 200
    cancelled = response.json()
    assert cancelled["state"] == "cancelled" and cancelled["cancelled_trials"] == 6
    assert cancelled["trials_by_state"] == {"completed": 2, "cancelled": 6}
    again = client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=bearer(tokens["alice"])).json()
    assert again["state"] == "cancelled" and again["cancelled_trials"] == 0

    other = submit_sweep(client, tokens["alice"], GRID_YAML.replace("grid", "other"))["id"]
    finish_trials(sessions, other)
    error = error_of(client.post(f"/api/v1/sweeps/{other}/cancel", headers=bearer(tokens["alice"])), 409)
    assert error["code"] == "sweep_finished"


def test_reads_need_a_token_when_read_auth_is_on(sqlite_url, sessions_for):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    with TestClient(create_app(service_settings(sqlite_url, read_auth=True))) as client:
        for path in ("/api/v1/sweeps", "/api/v1/leaderboard", "/api/v1/baselines", "/api/v1/trials/1"):
            assert error_of(client.get(path), 401)["field"] == "Authorization"
        assert client.get("/api/v1/sweeps", headers=bearer(tokens["alice"])).status_code == 200
        assert client.get("/api/v1/health").status_code == 200  # probes need no token


# --- spec validation and limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        ("name: x\ntasks: [delay]\nmodel:\n  init: [inv, bogus]\n", "model.init[1]", "(line 4)"),
        ("name: x\ntasks: [delay]\nmodel: {inits: inv}\n", "model.inits", "unknown field"),
        ("name: x\ntasks: [nosuchtask]\n", "tasks[0]", "nosuchtask"),
        ("name: x\ntasks: [delay]\nseeds: [1, 1]\n", "seeds", "repeat"),
        ("name: x\ntasks: [delay]\ncolour: red\n", "colour", "xtra"),
        ("tasks: [delay]\n", "name", "required"),
        ("name: x\ntasks: [delay\n", None, "not valid YAML"),
        ("- just\n- a list\n", None, "mapping"),
        (
            "name: x\ntasks: [delay]\nsearch: {space: {optim.lr: {low: 1, high: 0.1}}}\n",
            "search.space.optim.lr",
            "low must be below high",
        ),
    ],
)
def test_spec_errors_are_422_naming_the_key_path(sqlite_url, sessions_for, text, field, needle):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    with TestClient(create_app(service_settings(sqlite_url))) as client:
        response = client.post("/api/v1/sweeps", content=text, headers={**YAML, **bearer(tokens["alice"])})
        error = error_of(response, 422)
    assert error["code"] == "invalid_spec"
    assert error["field"] == field
    assert needle.lower() in error["message"].lower(), error


def test_json_spec_errors_name_the_key_path_too(service):
    client, _, tokens = service
    bad = {**GRID_JSON, "model": {"init": ["inv", "bogus"]}}
    error = error_of(client.post("/api/v1/sweeps", json=bad, headers=bearer(tokens["alice"])), 422)
    assert error["field"] == "model.init[1]"
    not_json = client.post(
        "/api/v1/sweeps",
        content="{nope",
        headers={"Content-Type": "application/json", **bearer(tokens["alice"])},
    )
    assert "not valid JSON" in error_of(not_json, 422)["message"]
    text = client.post(
        "/api/v1/sweeps", content="name: x", headers={"Content-Type": "text/plain", **bearer(tokens["alice"])}
    )
    assert error_of(text, 415)["field"] == "Content-Type"


def test_numbers_beyond_the_databases_integers_are_422(service):
    client, _, tokens = service
    text = "name: x\ntasks: [delay]\nseeds: [100000000000000000000]\n"
    response = client.post("/api/v1/sweeps", content=text, headers={**YAML, **bearer(tokens["alice"])})
    assert error_of(response, 422)["code"] == "invalid_spec"
    assert error_of(client.get("/api/v1/trials/4294967296"), 422)["field"] == "trial_id"
    assert error_of(client.get("/api/v1/sweeps", params={"offset": 2**40}), 422)["field"] == "offset"


def test_limits_body_size_and_trials_per_sweep(sqlite_url, sessions_for):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    settings = service_settings(sqlite_url, max_body_bytes=4096, max_trials_per_sweep=10)
    headers = {**YAML, **bearer(tokens["alice"])}
    with TestClient(create_app(settings)) as client:
        big = GRID_YAML + "#" * 5000 + "\n"
        error = error_of(client.post("/api/v1/sweeps", content=big, headers=headers), 413)
        assert error["code"] == "payload_too_large" and "4096" in error["message"]

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b"#" * 1000 + b"\n"

        error = error_of(client.post("/api/v1/sweeps", content=chunks(), headers=headers), 413)
        assert error["code"] == "payload_too_large"

        many = "name: big\ntasks: [delay]\nseeds: [0, 1, 2, 3, 4, 5]\nmodel: {init: [inv, lin]}\n"
        error = error_of(client.post("/api/v1/sweeps", content=many, headers=headers), 422)
        assert error["code"] == "too_many_trials" and "12 trials" in error["message"]
        assert client.post("/api/v1/sweeps", content=GRID_YAML, headers=headers).status_code == 201


# --- leaderboard, baselines, health, metrics ------------------------------------------------------------


def test_leaderboard_is_the_orchestrators_and_follows_new_results(service):
    client, sessions, tokens = service
    sweep_id = submit_sweep(client, tokens["alice"])["id"]
    finish_trials(sessions, sweep_id, n=4)  # the delay task, both inits, both seeds

    def local(**filters):  # the first page, as the route answers by default
        with sessions() as s:
            return json.loads(json.dumps(leaderboard(s, limit=DEFAULT_PAGE, **filters).to_dict()))

    assert client.get("/api/v1/leaderboard").json() == local()
    board = client.get("/api/v1/leaderboard", params={"sweep": sweep_id}).json()
    assert board == local(sweep_id=sweep_id)
    rows = [r for r in board["rows"] if not r["is_baseline"]]
    assert [(r["task"], r["init"], r["n_seeds"], r["rank"]) for r in rows] == [
        ("delay", "lin", 2, 1),
        ("delay", "inv", 2, 2),
    ]
    assert math.isclose(rows[0]["mean"], 0.655) and rows[0]["std"] == pytest.approx(0.00707, abs=1e-4)

    filters = {"task": "delay", "init": "inv", "train_eigenvalues": "true", "baselines": "false"}
    assert client.get("/api/v1/leaderboard", params=filters).json() == local(
        task="delay", init="inv", train_eigenvalues=True, include_baselines=False
    )
    assert client.get("/api/v1/leaderboard", params={"layer": "s5"}).json() == local(layer="s5")
    assert error_of(client.get("/api/v1/leaderboard", params={"init": "nope"}), 422)["field"] == "init"

    finish_trials(sessions, sweep_id)  # listops now too: a cached board must not hide it
    assert client.get("/api/v1/leaderboard", params={"sweep": sweep_id}).json() == local(sweep_id=sweep_id)
    assert client.get("/api/v1/leaderboard").json() == local()


def test_the_leaderboard_comes_in_pages_with_an_etag_and_gzip(service):
    client, sessions, tokens = service
    sweep_id = submit_sweep(client, tokens["alice"])["id"]
    finish_trials(sessions, sweep_id)  # delay and listops: 4 rows of ours, listops' baselines
    with sessions() as s:
        whole = json.loads(leaderboard(s).model_dump_json())
    assert whole["total_rows"] == len(whole["rows"]) > 10

    pages = [
        client.get("/api/v1/leaderboard", params={"offset": o, "limit": 4}).json() for o in (0, 4, 8, 12)
    ]
    assert [row for page in pages for row in page["rows"]] == whole["rows"]
    assert [(p["offset"], p["limit"], p["total_rows"]) for p in pages] == [
        (o, 4, whole["total_rows"]) for o in (0, 4, 8, 12)
    ]
    assert all(page["averages"] == whole["averages"] for page in pages)
    error = error_of(client.get("/api/v1/leaderboard", params={"limit": DEFAULT_PAGE + 1}), 422)
    assert (error["code"], error["field"]) == ("page_too_large", "limit")
    assert error_of(client.get("/api/v1/leaderboard", params={"offset": -1}), 422)["field"] == "offset"

    first = client.get("/api/v1/leaderboard")
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["cache-control"] == "no-cache"
    again = client.get("/api/v1/leaderboard", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    for if_none_match, status in ((etag.removeprefix("W/") + ', "x"', 304), ("*", 304), ('W/"x"', 200)):
        assert (
            client.get("/api/v1/leaderboard", headers={"If-None-Match": if_none_match}).status_code == status
        )
    assert client.get("/api/v1/leaderboard", params={"limit": 3}).headers["etag"] != etag  # another page

    submit_sweep(client, tokens["alice"])  # the same grid again: reused results, listed under a new sweep
    changed = client.get("/api/v1/leaderboard", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag

    compressed = client.get("/api/v1/leaderboard", headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert (
        compressed.json() == client.get("/api/v1/leaderboard", headers={"Accept-Encoding": "identity"}).json()
    )
    small = client.get("/api/v1/leaderboard", params={"task": "none"}, headers={"Accept-Encoding": "gzip"})
    assert len(small.content) < 1024 and "content-encoding" not in small.headers


def test_baselines_health_and_metrics(service, db_url):
    client, sessions, tokens = service
    baselines = client.get("/api/v1/baselines").json()
    assert baselines and {"model", "task", "test_accuracy", "source"} == set(baselines[0])
    assert any(b["task"] == "listops" for b in baselines)

    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["database"]["ok"]
    assert health["database"]["detail"] == db_url.split(":")[0].split("+")[0]
    assert health["scheduler"] == {
        "enabled": False,
        "state": "disabled",
        "holds_lease": False,
        "in_flight": 0,
        "last_step_at": None,
        "failing_passes": 0,
        "last_error": None,
    }

    sweep_id = submit_sweep(client, tokens["alice"])["id"]
    finish_trials(sessions, sweep_id, n=3)
    client.get("/api/v1/sweeps/999")
    text = client.get("/metrics").text
    assert "ssmbench_sweeps_submitted_total 1.0" in text
    assert 'ssmbench_trials{state="completed"} 3.0' in text and 'ssmbench_trials{state="pending"} 5.0' in text
    assert "ssmbench_trial_duration_seconds_count 3.0" in text
    assert (
        'ssmbench_http_request_duration_seconds_count{method="GET",route="/api/v1/sweeps/{sweep_id}",status="404"} 1.0'
        in text
    )


def test_each_app_has_its_own_metrics_registry(sqlite_url, sessions_for):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    first, second = create_app(service_settings(sqlite_url)), create_app(service_settings(sqlite_url))
    with TestClient(first) as a, TestClient(second) as b:
        submit_sweep(a, tokens["alice"])
        assert "ssmbench_sweeps_submitted_total 1.0" in a.get("/metrics").text
        assert "ssmbench_sweeps_submitted_total 0.0" in b.get("/metrics").text


def test_an_unmigrated_database_is_refused_with_the_command_that_fixes_it(tmp_path):
    with pytest.raises(DatabaseNotMigrated, match="ssmbench db upgrade"):
        create_app(service_settings(f"sqlite:///{tmp_path / 'empty.db'}"))


def test_an_unreachable_database_is_503_not_500(sqlite_url):
    from orchestrator.db import make_engine

    app = create_app(service_settings(sqlite_url))
    # a server that refuses connections: every query fails as when PostgreSQL went away
    use_database(app, make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"))
    with TestClient(app) as client:
        error = error_of(client.get("/api/v1/sweeps"), 503)
        assert error["code"] == "database_unavailable"
        health = client.get("/api/v1/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert not health.json()["database"]["ok"]


def test_non_finite_epoch_metrics_do_not_break_the_answer(sqlite_url, sessions_for):
    sessions = sessions_for(sqlite_url)
    tokens = make_tokens(sessions, "alice")
    with TestClient(create_app(service_settings(sqlite_url))) as client:
        sweep_id = submit_sweep(client, tokens["alice"])["id"]
        with transaction(sessions) as s:
            trial_id = s.scalar(select(Trial.id).where(Trial.sweep_id == sweep_id).limit(1))
            attempt = store.claim(s, trial_id)
            store.record_epoch(
                s, trial_id, attempt, {"epoch": 0, "train_loss": float("nan"), "grad": float("inf")}
            )
        response = client.get(f"/api/v1/trials/{trial_id}/metrics")
        assert response.status_code == 200, response.text
        epoch = response.json()["epochs"][0]
        assert epoch["train_loss"] is None and epoch["grad"] is None


def test_the_board_cache_computes_once_per_stamp_and_expires():
    import threading
    import time

    from api.routes.leaderboard import BoardCache

    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return b"board"

    cache = BoardCache(max_age=0.3)
    threads = [threading.Thread(target=cache.get, args=(("all",), 7, compute)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1  # sixteen concurrent requests, one computation
    assert cache.get(("all",), 7, compute) == b"board" and len(calls) == 1
    cache.get(("all",), 8, compute)  # a new result
    assert len(calls) == 2
    time.sleep(0.35)
    cache.get(("all",), 8, compute)  # too old
    assert len(calls) == 3


def test_an_expired_board_answers_while_one_thread_recomputes_it():
    import threading
    import time

    from api.routes.leaderboard import BoardCache

    release, calls = threading.Event(), []

    def compute():
        calls.append(1)
        release.wait(5)
        return f"board {len(calls)}"

    cache = BoardCache(max_age=0.05)
    assert cache.kept(("all",), 7) == (None, False)
    release.set()
    assert cache.get(("all",), 7, compute) == "board 1"
    assert cache.kept(("all",), 7) == ("board 1", False)
    assert cache.kept(("all",), 8) == (None, False)  # a new result: nothing kept for it
    time.sleep(0.1)
    assert cache.kept(("all",), 7) == ("board 1", True)  # too old, still answered
    release.clear()
    for _ in range(5):
        cache.refresh(("all",), 7, compute)  # one recomputation, however many ask
    assert cache.kept(("all",), 7) == ("board 1", True)  # meanwhile, the old answer
    release.set()
    deadline = time.monotonic() + 5
    while cache.kept(("all",), 7)[0] != "board 2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.kept(("all",), 7) == ("board 2", False) and len(calls) == 2


def test_an_expired_board_is_computed_again_only_when_its_rows_changed(db_url, sessions_for, monkeypatch):
    """An expired page whose rows (cells, baselines) read the same is kept, not recomputed; one whose
    rows changed without a new result (an edited baseline) is recomputed, and says what a fresh
    `leaderboard` says."""
    import time

    import api.routes.leaderboard as route
    from orchestrator.models import Baseline

    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice")
    computed, compute = [], route.board_from_inputs
    monkeypatch.setattr(route, "board_from_inputs", lambda *a, **k: computed.append(1) or compute(*a, **k))
    settings = service_settings(db_url, read_cache_seconds=0, leaderboard_cache_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        finish_trials(sessions, submit_sweep(client, tokens["alice"])["id"], n=4)
        path = "/api/v1/leaderboard?task=listops"

        def board_after_expiry() -> dict:
            time.sleep(0.1)
            client.get(path)  # expired: answered, and recomputed in the background
            deadline = time.monotonic() + 10
            while client.app.state.leaderboard_cache._refreshing and time.monotonic() < deadline:
                time.sleep(0.02)
            return client.get(path).json()

        first = client.get(path).json()
        assert len(computed) == 1
        assert board_after_expiry() == first and len(computed) == 1  # the same rows: kept
        with transaction(sessions) as s:
            s5 = s.scalar(select(Baseline).where(Baseline.model == "S5", Baseline.task == "listops"))
            s5.test_accuracy = 12.5
        edited = board_after_expiry()
    assert len(computed) == 2 and edited != first
    assert [row["mean"] for row in edited["rows"] if row["label"] == "S5"] == [0.125]
    with sessions() as s:
        fresh = leaderboard(s, task="listops", offset=0, limit=edited["limit"])
    assert edited == json.loads(fresh.model_dump_json())
