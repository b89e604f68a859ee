"""The web pages (api/pages) through FastAPI's TestClient, without the scheduler, on SQLite and
PostgreSQL: what each page shows, escaping, the Content-Security-Policy, the login cookie, pagination
and sorting, and that a page's statements do not grow with its rows (no N+1). In a real browser:
tests/api/test_pages_browser.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html import unescape

import httpx
import pytest
from api_fakes import completed  # tests/api/api_fakes.py
from conftest import (
    CLI,
    GRID_YAML,
    finish_trials,
    free_port,
    make_tokens,
    service_settings,
    submit_sweep,
)
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli_app
from api.pages.auth import TOKEN_COOKIE, safe_next
from api.pages.rendering import error_line, format_metric, format_seconds
from orchestrator import store
from orchestrator.db import transaction
from orchestrator.models import Result, Trial
from orchestrator.queries import best_trials, list_trials
from orchestrator.spec import load_spec
from ssm.config import TrialConfig

XSS = "<script>alert(1)</script>"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/ssmbench/ssm/train.py", line 99, in train\n'
    "    loss.backward()\n"
    "RuntimeError: boom <b>not bold</b>\n"
)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


def submit(client, token, text=GRID_YAML) -> int:
    return submit_sweep(client, token, text)["id"]


def fail_trial(sessions, sweep_id: int, error: str = TRACEBACK) -> int:
    """Run the sweep's first pending trial into `failed` with `error`; returns its id."""
    with transaction(sessions) as s:
        trial = s.scalars(
            select(Trial).where(Trial.sweep_id == sweep_id, Trial.state == "pending").order_by(Trial.id)
        ).first()
        attempt = store.claim(s, trial.id)
        store.finish(s, trial.id, attempt, None, "failed", error=error)
        return trial.id


def page(client, path: str, status: int = 200, **kwargs) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == status, (path, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert not INLINE_SCRIPT.search(response.text), "an inline script: the CSP would block it"
    assert re.search(r"<title>[^<]+ · ssmbench</title>", response.text)
    return response.text


def text_of(html: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def rows_of(html: str, table_class: str) -> list[str]:
    table = re.search(rf'<table class="{table_class}">(.*?)</table>', html, re.S)
    assert table, f"no table {table_class}"
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(1), re.S).group(1)
    return [text_of(row).strip() for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


# --- what the pages show ------------------------------------------------------------------------------


def test_sweeps_sweep_trial_leaderboard_and_studies_pages(service):
    client, sessions, tokens = service
    sweep_id = submit(client, tokens["alice"])
    finish_trials(sessions, sweep_id, 5)  # 5 of 8 completed, lin ahead of inv by 5 points
    failed = fail_trial(sessions, sweep_id)

    listing = page(client, "/")
    [row] = rows_of(listing, "sweeps")
    assert row.startswith(f"{sweep_id} grid alice running")
    assert "6 / 8 done" in row
    assert 'aria-label="2 pending, 5 completed, 1 failed"' in listing
    assert row.endswith("66.0% delay · s4d · lin · exp · trained")  # the best trial so far: lin, seed 1

    sweep = page(client, f"/sweeps/{sweep_id}")
    text = text_of(sweep)
    assert "Sweep 1: grid" in text and "75.0% done: 2 pending, 5 completed, 1 failed" in text
    trials = rows_of(sweep, "trials")
    assert len(trials) == 8
    assert trials[0].split()[:4] == ["0", "completed", "1", "delay"]
    assert any("failed" in r and "RuntimeError: boom <b>not bold</b>" in r for r in trials)
    board = rows_of(sweep, "board")
    ours = [r for r in board if "published" not in r]
    assert ours == [
        "listops 1 s4d · inv · exp · trained 60.0% — 1 1",
        "delay 1 s4d · lin · exp · trained 65.5% 0.7% 2 1",
        "delay 2 s4d · inv · exp · trained 60.5% 0.7% 2 1",
    ]
    assert any(r.startswith("listops published S5") for r in board)  # baselines of the LRA task
    assert "name: grid" in sweep and "RuntimeError: boom" in text_of(sweep.split('id="failures-h"')[1])

    trial = page(client, f"/trials/{failed}")
    assert "RuntimeError: boom <b>not bold</b>" in text_of(trial)
    assert "File &#34;/srv" not in trial and "/srv/ssmbench" not in trial  # anonymous: no traceback
    done = page(client, "/trials/1")
    assert "Test accuracy 60.0%" in text_of(done) and '"init": "inv"' in unescape(done)
    epochs = rows_of(done, "epochs")
    assert epochs == ["1 0 1 0.6", "1 1 1 0.6"]  # attempt, epoch, train_loss, val_metric

    leaderboard = page(client, "/leaderboard")
    rows = rows_of(leaderboard, "board")
    assert "delay 1 s4d · lin · exp · trained 65.5% 0.7% 2 1" in rows
    assert any("published" in r and r.startswith("listops") for r in rows)
    assert "LRA average" in leaderboard
    frozen = rows_of(page(client, "/leaderboard?task=delay&mode=frozen&layer=&init="), "board")
    assert frozen == ["No completed trials yet."]
    lin = rows_of(page(client, "/leaderboard?task=delay&init=lin"), "board")
    assert lin == ["delay 1 s4d · lin · exp · trained 65.5% 0.7% 2 1"]

    studies = page(client, "/studies")
    assert all(f"<code>{name}</code>" in studies for name in ("memory", "reparam", "state-size", "ptd"))
    assert "No studies have been run" in studies  # recorded runs: tests/api/test_pages_figures.py

    progress = client.get(f"/sweeps/{sweep_id}/progress.json").json()
    assert progress["trials_by_state"] == {"pending": 2, "completed": 5, "failed": 1}
    assert progress["done"] == 6 and progress["progress"] == 0.75 and progress["final"] is False


def test_best_trial_of_each_sweep_is_the_highest_metric_lowest_id(service):
    client, sessions, tokens = service
    first, second, empty = (
        submit(client, tokens["alice"], GRID_YAML.replace("d_model: 8", f"d_model: {d}")) for d in (8, 16, 32)
    )
    finish_trials(sessions, first)  # delay and listops tie at 66% (lin, seed 1): the delay trial is first
    finish_trials(sessions, second, 3)
    with sessions() as s:
        best = best_trials(s, [first, second, empty])
        results = s.execute(
            select(Trial.sweep_id, Trial.id, Result.test_metric).join(Result, Result.trial_id == Trial.id)
        ).all()
    expected = {}
    for sweep_id, trial_id, metric in sorted(results, key=lambda r: (r[0], -r[2], r[1])):
        expected.setdefault(sweep_id, (trial_id, metric))
    assert {k: (v.trial_id, v.test_metric) for k, v in best.items()} == expected
    assert set(best) == {first, second} and best[first].task == "delay" and best[first].init == "lin"


def test_missing_things_are_html_404s(service):
    client, _, _ = service
    assert "There is no sweep 7" in text_of(page(client, "/sweeps/7", 404))
    assert "There is no trial 9" in text_of(page(client, "/trials/9", 404))
    assert client.get("/sweeps/7/progress.json").status_code == 404
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/progress.js").headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert "No sweeps yet" in page(client, "/")


def test_html_in_names_errors_and_configs_renders_as_text(service):
    client, sessions, tokens = service
    sweep_id = submit(client, tokens["alice"], GRID_YAML.replace("name: grid", f"name: '{XSS}'"))
    failed = fail_trial(sessions, sweep_id, error=f"ValueError: {XSS}")
    with transaction(sessions) as s:
        trial = s.get(Trial, failed)
        s.execute(update(Trial).where(Trial.id == failed).values(config={**trial.config, "note": XSS}))
    for path in ("/", f"/sweeps/{sweep_id}", f"/trials/{failed}", "/leaderboard"):
        html = page(client, path)
        assert XSS not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page(client, f"/sweeps/{sweep_id}")
    trial = page(client, f"/trials/{failed}")
    assert '"note": "&lt;script&gt;alert(1)&lt;/script&gt;"' in trial.replace("&#34;", '"')
    assert "ValueError: &lt;script&gt;" in trial


def test_owner_sees_the_whole_traceback_others_its_last_line(db_url, sessions_for):
    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice", "bob")
    with TestClient(create_app(service_settings(db_url))) as client:
        failed = fail_trial(sessions, submit(client, tokens["alice"]))
        client.cookies.set(TOKEN_COOKIE, tokens["bob"])
        assert "/srv/ssmbench" not in page(client, f"/trials/{failed}")
        client.cookies.set(TOKEN_COOKIE, tokens["alice"])
        owner_view = page(client, f"/trials/{failed}")
        assert "/srv/ssmbench/ssm/train.py" in owner_view and "alice" in text_of(owner_view)


def test_trial_page_shows_the_fourier_table_and_a_summary_of_the_diagnostic_arrays(service):
    client, sessions, tokens = service
    sweep_id = submit(client, tokens["alice"])
    layer_init = {
        "eigenvalues": [[[-0.5, 1.0], [-0.1, 2.0]], [[-0.3, 0.0], [-0.2, 4.0]]],  # (H=2, N/2=2, re/im)
        "Ab": [[[0.6, 0.8], [0.3, 0.4]], [[0.0, 0.9], [0.1, 0.1]]],  # |λ̄| = 1.0, 0.5, 0.9, 0.141…
        "dt": [0.01, 0.1],
        "memory_function": [[1.0, 0.5], [1.0, 0.25]],
        "memory_capacity": [2.0, 3.0, None],  # None: an unstable channel, left out of the mean
    }
    layer_end = {**layer_init, "eigenvalues": [[[-0.7, 1.0]]], "memory_capacity": [1.0]}
    diagnostics = {
        "fourier": [{"frequency": None, "accuracy": 0.9}, {"frequency": 0.25, "accuracy": 0.455}],
        "arrays": {"init": [layer_init], "end": [layer_end]},
        "extra": list(range(1000)),
    }
    with transaction(sessions) as s:
        trial = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.id)).first()
        attempt = store.claim(s, trial.id)
        config = TrialConfig.model_validate(trial.config)
        result = completed(config, 0.9, best_epoch=0, diagnostics=diagnostics)
        store.finish(s, trial.id, attempt, result, "completed")
        trial_id = trial.id
    html = page(client, f"/trials/{trial_id}")
    assert rows_of(html, "fourier") == ["clean 90.0%", "0.25 45.5%"]
    assert rows_of(html, "arrays") == [
        "init 0 4 -0.1 1 2.5",  # 4 eigenvalues, max Re λ, max |λ̄| = |0.6+0.8i|, mean MC of 2 and 3
        "end 0 1 -0.7 1 1",
    ]
    assert "… (4890 characters)" in html  # a long unknown diagnostic is shortened, not dumped


# --- pagination and sorting --------------------------------------------------------------------------


def test_trials_page_and_sort_server_side(service):
    client, sessions, tokens = service
    spec = "name: many\ntasks: [delay]\nmodel: {init: [inv, lin], d_model: 8}\nseeds: [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29]\n"
    sweep_id = submit(client, tokens["alice"], spec)  # 60 trials
    finish_trials(sessions, sweep_id, 20)

    first = rows_of(page(client, f"/sweeps/{sweep_id}"), "trials")
    second_html = page(client, f"/sweeps/{sweep_id}?page=2")
    second = rows_of(second_html, "trials")
    assert len(first) == 50 and len(second) == 10
    assert [int(r.split()[0]) for r in first + second] == list(range(60))
    assert "page 2 of 2 (60 in all)" in text_of(second_html)

    best_first = rows_of(page(client, f"/sweeps/{sweep_id}?sort=metric&order=desc"), "trials")
    found = [re.search(r"(\d+\.\d)% \d+\.\d%", row) for row in best_first]
    metrics = [float(match.group(1)) for match in found if match]
    assert len(metrics) == 20 and metrics == sorted(metrics, reverse=True)
    assert "—" in best_first[20]  # trials without a result come after those with one
    worst_first = rows_of(page(client, f"/sweeps/{sweep_id}?sort=metric&order=asc"), "trials")
    assert worst_first[0] != best_first[0] and worst_first[0].split()[1] == "completed"
    by_duration = rows_of(page(client, f"/sweeps/{sweep_id}?sort=duration&order=desc"), "trials")
    assert all(" s " in r or r.endswith(" s") for r in by_duration[:20])
    pending = rows_of(page(client, f"/sweeps/{sweep_id}?state=pending&page=1"), "trials")
    assert len(pending) == 40 and all(r.split()[1] == "pending" for r in pending)
    assert client.get(f"/sweeps/{sweep_id}?sort=error").status_code == 422
    assert client.get(f"/sweeps/{sweep_id}?page=0").status_code == 422


def test_list_trials_sorts_missing_values_last_then_by_number(service):
    client, sessions, tokens = service
    sweep_id = submit(client, tokens["alice"])  # 8 trials
    finish_trials(sessions, sweep_id, 4)
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with transaction(sessions) as s:
        for number, seconds in enumerate((30, 1.5, 30, 90)):
            s.execute(
                update(Trial)
                .where(Trial.sweep_id == sweep_id, Trial.number == number)
                .values(started_at=start, finished_at=start + timedelta(seconds=seconds))
            )
        running = s.scalar(select(Trial.id).where(Trial.sweep_id == sweep_id, Trial.number == 4))
        store.claim(s, running)  # started, not finished: no duration
    with sessions() as s:
        slowest, total = list_trials(s, sweep_id, sort="duration", descending=True)
        quickest, _ = list_trials(s, sweep_id, sort="duration", offset=2, limit=3)
        best, _ = list_trials(s, sweep_id, sort="metric", descending=True)
        with pytest.raises(ValueError, match="valid keys: number, state, attempt, metric, duration"):
            list_trials(s, sweep_id, sort="error")
    assert total == 8 and [t["number"] for t in slowest] == [3, 0, 2, 1, 4, 5, 6, 7]
    seconds = [t["seconds"] and float(t["seconds"]) for t in slowest]
    assert seconds[:4] == pytest.approx([90, 30, 30, 1.5], abs=1e-3) and seconds[4:] == [None] * 4
    assert [t["number"] for t in quickest] == [2, 3, 4]  # 1, 0 | 2, 3, 4 | 5, ...
    metrics = [t["result"] and t["result"]["test_metric"] for t in best]
    assert metrics[:4] == sorted(metrics[:4], reverse=True) and None not in metrics[:4]
    assert [t["number"] for t in best[4:]] == [4, 5, 6, 7] and metrics[4:] == [None] * 4


def test_sweeps_list_pages_newest_first(service):
    client, sessions, _ = service
    spec = load_spec("name: s\ntasks: [delay]\nmodel: {d_model: 8}\n")
    with transaction(sessions) as s:
        for i in range(30):
            store.create_sweep(s, spec.model_copy(update={"name": f"sweep-{i:02d}"}), owner="carol")
    first = rows_of(page(client, "/"), "sweeps")
    last_html = page(client, "/?page=2")
    last = rows_of(last_html, "sweeps")
    assert len(first) == 25 and len(last) == 5
    assert [r.split()[1] for r in first][:3] == ["sweep-29", "sweep-28", "sweep-27"]
    assert [r.split()[1] for r in last] == ["sweep-04", "sweep-03", "sweep-02", "sweep-01", "sweep-00"]
    assert 'href="/?page=1"' in last_html and "page 2 of 2 (30 in all)" in text_of(last_html)


@contextmanager
def counted_statements(engine):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_page_runs_the_same_statements_for_few_rows_and_many(service):
    """No N+1: the sweeps page of 2 sweeps and of 25, the sweep page of 8 trials and of 60, run the
    same number of statements."""
    client, sessions, tokens = service
    engine = client.app.state.engine
    small = submit(client, tokens["alice"])
    finish_trials(sessions, small, 8)
    spec = "name: big\ntasks: [delay, listops]\nmodel: {init: [inv, lin, legs], d_model: 8}\nseeds: [0,1,2,3,4,5,6,7,8,9]\n"
    big = submit(client, tokens["alice"], spec)
    finish_trials(sessions, big, 60)

    def statements(path: str) -> int:
        page(client, path)  # warm: the token and schema lookups of a first request
        with counted_statements(engine) as seen:
            page(client, path)
        return len(seen)

    few_sweeps = statements("/")
    few_trials, many_trials = statements(f"/sweeps/{small}"), statements(f"/sweeps/{big}")
    spec_text = load_spec("name: s\ntasks: [delay]\nmodel: {d_model: 8}\n")
    with transaction(sessions) as s:
        for _ in range(23):
            store.create_sweep(s, spec_text, owner="carol")
    assert statements("/") == few_sweeps
    assert few_trials == many_trials
    assert few_sweeps <= 6 and many_trials <= 14, (few_sweeps, many_trials)


# --- the login cookie ---------------------------------------------------------------------------------


def test_read_auth_pages_need_the_token_cookie(db_url, sessions_for):
    sessions = sessions_for(db_url)
    tokens = make_tokens(sessions, "alice")
    with TestClient(create_app(service_settings(db_url, read_auth=True)), follow_redirects=False) as client:
        sweep_id = submit(client, tokens["alice"])
        for path in ("/", f"/sweeps/{sweep_id}", "/trials/1", "/leaderboard", "/studies"):
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=%2F")
        response = client.get(f"/sweeps/{sweep_id}?page=1")
        assert response.headers["location"] == f"/login?next=%2Fsweeps%2F{sweep_id}%3Fpage%3D1"
        assert client.get(f"/sweeps/{sweep_id}/progress.json").status_code == 401
        assert "Log in" in page(client, "/login?next=/leaderboard")

        wrong = client.post("/login", data={"token": "not-a-token", "next": "/leaderboard"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        assert TOKEN_COOKIE not in wrong.headers.get("set-cookie", "")
        foreign = client.post(
            "/login", data={"token": tokens["alice"]}, headers={"Origin": "https://elsewhere.example"}
        )
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers

        ok = client.post("/login", data={"token": tokens["alice"], "next": "/leaderboard"})
        assert ok.status_code == 303 and ok.headers["location"] == "/leaderboard"
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=") and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP here; set over HTTPS
        assert "alice" in text_of(page(client, "/"))
        assert client.get(f"/sweeps/{sweep_id}/progress.json").status_code == 200

        # the API itself still wants a bearer header: the cookie is for the pages only
        assert client.get("/api/v1/sweeps").status_code == 401
        out = client.post("/logout")
        assert out.status_code == 303 and f'{TOKEN_COOKIE}=""' in out.headers["set-cookie"]
        assert client.get("/").status_code == 303


def test_login_goes_back_only_to_this_site():
    assert safe_next("/sweeps/3?page=2") == "/sweeps/3?page=2"
    for target in (None, "", "https://evil.example/", "//evil.example/x", "/\\evil.example", "sweeps"):
        assert safe_next(target) == "/"


def test_formats():
    assert format_metric(0.8734) == "87.3%" and format_metric(0.8734, "r2") == "0.873"
    assert format_metric(None) == "—" and format_metric(float("nan")) == "—"
    assert format_seconds(3.21) == "3.2 s" and format_seconds(125) == "2 min 05 s"
    assert format_seconds(7322) == "2 h 02 min" and format_seconds(None) == "—"
    assert error_line(TRACEBACK) == "RuntimeError: boom <b>not bold</b>"
    assert error_line("ValueError: bad\nmore detail") == "ValueError: bad" and error_line(None) == ""


# --- ssmbench ui ------------------------------------------------------------------------------------


def test_ssmbench_ui_serves_the_pages_of_a_local_database(sqlite_url, sessions_for, tmp_path):
    spec = load_spec("name: local-run\ntasks: [delay]\nmodel: {d_model: 8}\n")
    with transaction(sessions_for(sqlite_url)) as s:
        store.create_sweep(s, spec)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSMBENCH_")}
    command = [*CLI, "ui", "--db", sqlite_url, "--port", str(port), "--no-open"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None, (
            process.communicate(timeout=5)[0] if process.poll() is not None else "no answer"
        )
        assert answer.status_code == 200 and "local-run" in answer.text
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()
        assert health["scheduler"]["state"] == "disabled"  # it looks, it runs nothing
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert f"at http://127.0.0.1:{port}/" in output


def test_ssmbench_ui_refuses_an_unmigrated_database(tmp_path):
    made = CliRunner().invoke(cli_app, ["ui", "--db", f"sqlite:///{tmp_path / 'empty.db'}", "--no-open"])
    assert made.exit_code == 2
    assert "ssmbench db upgrade" in made.stderr and len(made.stderr.strip().splitlines()) == 1
