"""The web pages in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python
with `executable_path`; Playwright's own browser downloads are never used).

A real HTTP server (uvicorn in a thread, `ThreadedServer`) serves a fresh SQLite database; the
trials of a small sweep run in a background thread of this process through the worker's own code
path (`orchestrator.worker.run_trial`, the fast fake trainer of api_fakes.py) — the scheduler's Ray
would take longer to start on 2 CPUs than the whole test. Every page is opened at 1280 and 390 px
wide and checked: content, no console error (a Content-Security-Policy violation is one), no
sideways scrolling at 390 px, live progress while the sweep runs, the escaping case, the login
cookie, the figures (SVG images that load) and /studies with a recorded study run. Screenshots go
to the test's tmp dir (and to $SSMBENCH_SCREENSHOTS_DIR when set).

Without chromium or playwright these tests are skipped with the reason, except under CI (`CI` set),
where they fail: `.ci/run` installs chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from api_fakes import quick
from conftest import ThreadedServer, bearer, make_tokens, service_settings
from sqlalchemy import select
from test_pages_figures import claims_with_html, finish_with_diagnostics, state_size_sweep

from orchestrator import store
from orchestrator.db import make_engine, session_factory, transaction
from orchestrator.models import Trial, utcnow
from orchestrator.studies.records import record_study_run
from orchestrator.worker import TrialJob, run_trial

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTHS = (1280, 390)
XSS = "<script>alert(1)</script>"
SWEEP = """\
name: browser
tasks: [listops, delay]  # the fake trainer reads no data; listops brings its baselines
model: {layer: s4d, init: [inv, lin], d_model: 8, d_state: 4, n_layers: 1}
optim: {epochs: 2}
seeds: [0, 1, 2, 3, 4, 5]
"""
# Other configs than SWEEP's (d_model), or that sweep's trials would reuse these results.
ESCAPED_SWEEP = SWEEP.replace("name: browser", f"name: '{XSS}'").replace("d_model: 8", "d_model: 16")


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright; the browser is Debian's chromium)"
    else:
        if CHROMIUM is not None:
            return sync_playwright
        reason = "no chromium on PATH (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests must run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def failing_on_seed_5(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """api_fakes.quick, except that a trial of seed 5 raises after its first epoch (it fails)."""
    if config.seed == 5:
        on_epoch({"epoch": 0, "train_loss": 2.0, "val_loss": 2.0, "val_metric": 0.1})
        raise RuntimeError("boom <b>in the trainer</b>")
    return quick(config, on_epoch, checkpoint_dir, data_dir)


class Worker(threading.Thread):
    """Runs the pending trials of one sweep, one after another, `pause` seconds apart, as a Ray
    worker would (claim, then `run_trial`); the sweep is closed when they are done."""

    def __init__(self, url: str, sweep_id: int, pause: float = 0.0):
        super().__init__(daemon=True, name=f"worker-sweep-{sweep_id}")
        self.url, self.sweep_id, self.pause = url, sweep_id, pause
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.sessions() as s:
                ids = s.scalars(
                    select(Trial.id).where(Trial.sweep_id == self.sweep_id).order_by(Trial.number)
                ).all()
            for trial_id in ids:
                time.sleep(self.pause)
                with transaction(self.sessions) as s:
                    attempt = store.claim(s, trial_id, worker="browser-test")
                run_trial(
                    TrialJob(trial_id, attempt, self.url, heartbeat_seconds=60, train_fn=failing_on_seed_5)
                )
            with transaction(self.sessions) as s:
                store.close_finished_sweeps(s)
        except BaseException as err:  # seen by the test, which joins this thread
            self.error = err
        finally:
            self.engine.dispose()


class PageWatch:
    """A browser page at one width that records console errors, uncaught exceptions and dialogs."""

    def __init__(self, browser, width: int, shots: list[Path]):
        height = 900 if width > 600 else 844
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.width, self.shots = width, shots
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))

    def open(self, url: str, name: str) -> None:
        response = self.page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, (url, response and response.status)
        self.shoot(name)
        self.check_layout(name)

    def check_layout(self, name: str) -> None:
        """Titles, headed tables, images with alt text, and no sideways scrolling of the page."""
        page = self.page
        assert page.title().endswith(" · ssmbench"), name
        assert page.locator("h1").count() == 1, name
        assert page.locator("table:not(:has(thead th))").count() == 0, f"{name}: a table without headers"
        assert page.locator("img:not([alt])").count() == 0, f"{name}: an image without alt text"
        page.wait_for_load_state("load")
        broken = page.evaluate("[...document.images].filter(i => !i.naturalWidth).map(i => i.src)")
        assert broken == [], f"{name}: images that did not load: {broken}"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {self.width} px scrolls sideways by {overflow} px"

    def shoot(self, name: str) -> None:
        for directory in self.shots:
            self.page.screenshot(path=str(directory / f"{name}-{self.width}.png"), full_page=True)

    def close(self) -> list[str]:
        self.context.close()
        return self.problems


def screenshot_dirs(tmp_path: Path) -> list[Path]:
    directories = [tmp_path / "screenshots"]
    if os.environ.get("SSMBENCH_SCREENSHOTS_DIR"):
        directories.append(Path(os.environ["SSMBENCH_SCREENSHOTS_DIR"]))
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
    return directories


def table_rows(page, selector: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", text).strip() for text in page.locator(f"{selector} tbody tr").all_inner_texts()
    ]


def test_every_page_in_chromium_with_live_progress(browser, sqlite_url, sessions_for, tmp_path):
    sessions = sessions_for(sqlite_url)
    tokens = make_tokens(sessions, "alice")
    shots = screenshot_dirs(tmp_path)
    with ThreadedServer(service_settings(sqlite_url)) as server, httpx.Client(base_url=server.url) as api:
        headers = {"Content-Type": "application/yaml", **bearer(tokens["alice"])}
        escaped = api.post("/api/v1/sweeps", content=ESCAPED_SWEEP, headers=headers).json()["id"]
        worker = Worker(sqlite_url, escaped)
        worker.run()  # here, to the end: the escaping case needs a finished sweep with a failure
        assert worker.error is None, worker.error
        sweep_id = api.post("/api/v1/sweeps", content=SWEEP, headers=headers).json()["id"]
        # a trial with diagnostic arrays (MF(τ), eigenvalues), and a recorded run of a study
        diagnosed_sweep = SWEEP.replace("name: browser", "name: diagnosed").replace(
            "d_model: 8", "d_model: 32"
        )
        diagnosed = finish_with_diagnostics(
            sessions, api.post("/api/v1/sweeps", content=diagnosed_sweep, headers=headers).json()["id"]
        )
        study_sweep = state_size_sweep(sessions)
        with transaction(sessions) as s:
            run_id = record_study_run(
                s, "state-size", "smoke", {"main": study_sweep}, claims_with_html(), utcnow()
            ).id

        # Live progress: the sweep page, opened before any trial ran, follows the sweep to its end.
        live = PageWatch(browser, 1280, shots)
        live.open(f"{server.url}/sweeps/{sweep_id}", "sweep-pending")
        counts = live.page.locator("#progress-counts")
        assert counts.inner_text() == "24 pending"
        assert table_rows(live.page, "table.board")[0].startswith(
            "No completed trials yet"
        )  # no baselines alone
        live.page.evaluate("window.notReloaded = true")
        worker = Worker(sqlite_url, sweep_id, pause=0.1)
        worker.start()
        seen = set()
        deadline = time.monotonic() + 40
        while (
            time.monotonic() < deadline and "completed" not in live.page.locator("#sweep-state").inner_text()
        ):
            seen.add(counts.inner_text())
            live.page.wait_for_timeout(200)
        worker.join(30)
        assert worker.error is None, worker.error
        live.page.wait_for_function("document.querySelector('#sweep-state').innerText.includes('completed')")
        seen.add(counts.inner_text())
        assert live.page.evaluate("window.notReloaded === true"), "the page reloaded instead of updating"
        assert counts.inner_text() == "20 completed, 4 failed"
        intermediate = seen - {"24 pending", "20 completed, 4 failed"}
        assert intermediate, f"no progress was shown between start and end: {seen}"
        assert live.page.locator("#progress-bar rect.st-completed").count() == 1
        live.shoot("sweep-live-finished")
        assert live.close() == []

        with server.app.state.sessions() as s:
            failed = s.scalar(select(Trial.id).where(Trial.sweep_id == sweep_id, Trial.state == "failed"))
            completed = s.scalar(
                select(Trial.id).where(Trial.sweep_id == sweep_id, Trial.state == "completed")
            )
        for width in WIDTHS:
            watch = PageWatch(browser, width, shots)
            page = watch.page

            watch.open(f"{server.url}/", "sweeps")
            rows = table_rows(page, "table.sweeps")
            assert len(rows) == 4 and rows[2].startswith(f"{sweep_id} browser")  # newest first
            assert ("alice completed" if width > 600 else "browser completed") in rows[2]  # owner: wide only
            assert "24 / 24 done" in rows[2] and "best" not in rows[2]
            assert page.locator("table.sweeps a", has_text="browser").count() == 1

            watch.open(f"{server.url}/sweeps/{sweep_id}", "sweep")
            states = [row.split(" ")[1] for row in table_rows(page, "table.trials")]
            assert sorted(states) == ["completed"] * 20 + ["failed"] * 4
            board = table_rows(page, "table.board")
            ours = [r.split(" ")[:2] for r in board if "published" not in r]
            assert ours == [["listops", "1"], ["listops", "2"], ["delay", "1"], ["delay", "2"]]
            assert page.locator("table.board tr.baseline", has_text="S5").count() == 1
            assert "RuntimeError: boom <b>in the trainer</b>" in page.locator("ul.failures").inner_text()
            # validation per epoch and test metric of each task, as images that loaded (check_layout)
            assert page.locator("section.figures img").count() == 4
            page.locator("table.trials thead a", has_text="Test metric").click()
            page.wait_for_load_state("load")
            assert "sort=metric" in page.url and "order=desc" in page.url
            assert table_rows(page, "table.trials")[-1].split(" ")[1] == "failed"  # no metric: last
            watch.check_layout("sweep-sorted")

            watch.open(f"{server.url}/trials/{completed}", "trial")
            assert page.locator("#test-metric").inner_text().endswith("%")
            assert len(table_rows(page, "table.epochs")) == 2
            assert '"layer": "s4d"' in page.locator("pre.config").inner_text()
            assert page.locator("section.figures img").count() == 1  # the learning curve, an SVG image
            watch.open(f"{server.url}/trials/{diagnosed}", "trial-diagnostics")
            alts = [page.locator("section.figures img").nth(i).get_attribute("alt") for i in range(3)]
            assert [alt.split(": ", 1)[1].split(" ")[0] for alt in alts] == [
                "Validation",
                "Eigenvalues",
                "Memory",
            ]
            assert table_rows(page, "table.fourier") == ["clean 70.0%", "0.25 40.0%"]
            watch.open(f"{server.url}/trials/{failed}", "trial-failed")
            assert page.locator("pre.error").inner_text() == "RuntimeError: boom <b>in the trainer</b>"

            watch.open(f"{server.url}/leaderboard", "leaderboard")
            rows = table_rows(page, "table.board")
            assert any(r.startswith("delay 1 s4d ·") for r in rows)
            assert page.locator("table.board tr.baseline").count() >= 6  # listops's baselines, labelled
            page.select_option("select[name=init]", "lin")
            page.locator("form.filters button").click()
            page.wait_for_load_state("load")
            assert "init=lin" in page.url
            filtered = [r.split(" ")[:5] for r in table_rows(page, "table.board") if "published" not in r]
            # both sweeps' lin groups (d_model 8 and 16) on each task
            assert [r[0] for r in filtered] == ["listops", "listops", "delay", "delay"]
            assert {r[4] for r in filtered} == {"lin"}
            watch.check_layout("leaderboard-filtered")

            watch.open(f"{server.url}/studies", "studies")
            assert page.locator("table.studies tbody tr").count() == 4
            run = page.locator(f"#run-{run_id}")
            verdicts = table_rows(run, "table.verdicts")
            assert verdicts[0].startswith(f"loss-falls The loss falls {XSS}") and verdicts[0].endswith(
                "holds"
            )
            assert run.locator("span.verdict.v-holds").count() == 2  # the summary's and the table's
            assert run.locator("img").count() >= 4  # the study's figures, loaded (check_layout)
            if width < 600:  # stacked rows: question and verdict in view, no table scrolls sideways
                for box in page.locator("div.table-wrap:has(table.stacked)").all():
                    assert box.evaluate("e => e.scrollWidth - e.clientWidth") <= 0
            run.locator(f"a[href='/sweeps/{study_sweep}']").click()
            page.wait_for_load_state("load")
            assert page.locator("h1").inner_text() == f"Sweep {study_sweep}: study-state-size-smoke"

            watch.open(f"{server.url}/sweeps/{escaped}", "sweep-escaped")
            assert page.locator("h1").inner_text() == f"Sweep {escaped}: {XSS}"
            assert XSS in page.title()
            assert watch.close() == [], f"at {width} px"


def test_login_cookie_in_chromium(browser, sqlite_url, sessions_for, tmp_path):
    tokens = make_tokens(sessions_for(sqlite_url), "alice")
    shots = screenshot_dirs(tmp_path)
    with ThreadedServer(service_settings(sqlite_url, read_auth=True)) as server:
        watch = PageWatch(browser, 390, shots)
        page = watch.page
        page.goto(f"{server.url}/leaderboard")
        assert page.url == f"{server.url}/login?next=%2Fleaderboard"
        watch.check_layout("login")
        page.fill("#token", "not-a-token")
        page.locator("form.login button").click()
        assert "not valid" in page.locator(".problem").inner_text()
        watch.shoot("login-refused")
        page.fill("#token", tokens["alice"])
        page.locator("form.login button").click()
        page.wait_for_url(f"{server.url}/leaderboard")
        assert page.locator("header .who").inner_text().startswith("alice")
        [cookie] = watch.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # no script can read the token
        page.locator("header .who button").click()
        page.wait_for_url(f"{server.url}/login?next=%2F")  # out: the sweeps page wants the token again
        page.goto(f"{server.url}/studies")
        assert page.url.startswith(f"{server.url}/login")
        # the refused token's answer is a 401, which Chromium reports; nothing else may be
        refused = "console: Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        assert watch.close() == [refused]
