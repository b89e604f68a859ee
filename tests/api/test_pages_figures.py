"""The pages' figures (api/pages/page_figures.py) and the /studies page with recorded runs: each
figure is checked against the numbers in the database, both in what the figure module was given to
draw (its artists' data) and in the SVG that was served (point positions are an affine map of the
data); the figure cache draws a page's figures once; claims with HTML are shown as text."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import finish_trials
from sqlalchemy import select
from test_pages import XSS, page, rows_of, submit, text_of

from api.pages.page_figures import FigureCache
from orchestrator import store
from orchestrator.db import transaction
from orchestrator.models import Trial, utcnow
from orchestrator.studies import get_study
from orchestrator.studies.records import record_study_run
from ssm.config import TrialConfig
from ssm.train import TrialResult

LAYER_INIT = {
    "eigenvalues": [[[-0.5, 1.0], [-0.1, 2.0]], [[-0.3, 0.0], [-0.2, 4.0]]],  # (H=2, N/2=2, re/im)
    "Ab": [[[0.6, 0.8], [0.3, 0.4]], [[0.0, 0.9], [0.1, 0.1]]],
    "dt": [0.01, 0.1],
    "memory_function": [[1.0, 0.5], [1.0, 0.25]],
    "memory_capacity": [2.0, 3.0],
}
LAYER_END = {**LAYER_INIT, "eigenvalues": [[[-0.7, 1.0]]], "memory_function": [[0.8, 0.6], [0.6, 0.2]]}


@pytest.fixture
def drawn(monkeypatch):
    """What the figure module was asked to turn into SVG, by figure title (its first line): each
    artist's label → its data (a line's (x, y), points' offsets, a band's outline)."""
    from orchestrator.report import figures

    seen: dict[str, dict[str, np.ndarray]] = {}
    original = figures.to_svg

    def recording(fig):
        data = {}
        for ax in fig.axes:
            for line in ax.get_lines():
                data[line.get_label()] = np.asarray([line.get_xdata(), line.get_ydata()], dtype=float)
            for collection in ax.collections:
                paths = collection.get_paths()
                is_band = "(min–max" in collection.get_label()
                points = paths[0].vertices if is_band and paths else collection.get_offsets()
                data[collection.get_label()] = np.asarray(points, dtype=float)
        seen[fig._suptitle.get_text().splitlines()[0]] = data
        return original(fig)

    monkeypatch.setattr(figures, "to_svg", recording)
    return seen


def svg_points(svg: str, collection: int) -> np.ndarray:
    """The (x, y) pixel positions of the markers of the SVG's n-th point collection."""
    group = re.search(rf'<g id="PathCollection_{collection}">(.*?)\n   </g>', svg, re.S)
    assert group, f"no PathCollection_{collection}"
    return np.asarray(
        [
            (float(x), float(y))
            for x, y in re.findall(r'<use [^>]*x="([-\d.]+)" y="([-\d.]+)"', group.group(1))
        ]
    )


def assert_affine(pixels: np.ndarray, values: np.ndarray) -> None:
    """Pixels are a * value + b for one a ≠ 0 and b: the SVG draws these values, in this order."""
    slope, intercept = np.polyfit(values, pixels, 1)
    assert abs(slope) > 1e-6
    np.testing.assert_allclose(pixels, slope * values + intercept, atol=0.05)


def finish_with_diagnostics(sessions, sweep_id: int) -> int:
    """Complete the sweep's first trial with two epochs, diagnostic arrays and a Fourier table."""
    with transaction(sessions) as s:
        trial = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.id)).first()
        attempt = store.claim(s, trial.id)
        for epoch, val in enumerate((0.5, 0.75)):
            store.record_epoch(s, trial.id, attempt, {"epoch": epoch, "train_loss": 1.0, "val_metric": val})
        result = TrialResult(
            status="completed",
            config_hash=TrialConfig.model_validate(trial.config).hash(),
            metric="accuracy",
            best_epoch=1,
            val_metric=0.75,
            test_metric=0.7,
            diagnostics={
                "fourier": [{"frequency": None, "accuracy": 0.7}, {"frequency": 0.25, "accuracy": 0.4}],
                "arrays": {"init": [LAYER_INIT], "end": [LAYER_END]},
            },
        )
        store.finish(s, trial.id, attempt, result, "completed")
        return trial.id


# --- trial and sweep ---------------------------------------------------------------------------------


def test_trial_page_draws_its_learning_curve_memory_function_and_eigenvalues(service, drawn):
    client, sessions, tokens = service
    sweep_id = submit(client, tokens["alice"])
    trial_id = finish_with_diagnostics(sessions, sweep_id)
    html = page(client, f"/trials/{trial_id}")
    names = re.findall(
        rf'<img src="/trials/{trial_id}/figures/([a-z-]+)\.svg" alt="Trial {trial_id}, attempt 1: ', html
    )
    assert names == ["learning-curve", "eigenvalues-trial", "memory-function-trial"], names
    assert rows_of(html, "fourier") == ["clean 70.0%", "0.25 40.0%"]

    label = "s4d · inv · exp · trained"
    curve = drawn[f"Trial {trial_id}: validation accuracy per epoch (attempt 1)"][f"{label} (n=1)"]
    np.testing.assert_allclose(curve, [[0, 1], [50.0, 75.0]])  # epochs, validation accuracy in %
    memory = drawn[f"Memory function MF(τ) of trial {trial_id}"]
    np.testing.assert_allclose(memory[f"{label} (seed 0) init"], [[1, 2], [1.0, 0.375]])  # over channels
    np.testing.assert_allclose(memory[f"{label} (seed 0) end"], [[1, 2], [0.7, 0.4]])
    planes = drawn[f"Eigenvalues before and after training of trial {trial_id}"]
    np.testing.assert_allclose(
        planes[f"{label} (seed 0) before"], [[-0.5, 1], [-0.1, 2], [-0.3, 0], [-0.2, 4]]
    )
    np.testing.assert_allclose(planes[f"{label} (seed 0) after"], [[-0.7, 1]])

    answer = client.get(f"/trials/{trial_id}/figures/eigenvalues-trial.svg")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    assert "script" not in answer.headers["content-security-policy"]
    before, after = svg_points(answer.text, 1), svg_points(answer.text, 2)
    assert len(before) == 4 and len(after) == 1
    re_all = np.array([-0.5, -0.1, -0.3, -0.2, -0.7])  # Re λ → x, Im λ → y (upwards: a negative slope)
    assert_affine(np.concatenate([before[:, 0], after[:, 0]]), re_all)
    assert_affine(np.concatenate([before[:, 1], after[:, 1]]), np.array([1.0, 2.0, 0.0, 4.0, 1.0]))
    assert np.polyfit([1.0, 2.0, 0.0, 4.0], before[:, 1], 1)[0] < 0
    curve_svg = client.get(f"/trials/{trial_id}/figures/learning-curve.svg").text
    assert f"{label} (n=1)" in curve_svg and "validation accuracy (%)" in curve_svg

    sweep = page(client, f"/sweeps/{sweep_id}")  # its sweep's report: the diagnostics' figures too
    assert re.findall(rf'<img src="/sweeps/{sweep_id}/figures/([a-z-]+)\.svg"', sweep) == [
        "validation-delay", "test-delay", "fourier-noise-delay", "eigenvalues-delay", "memory-function-delay",
    ]  # fmt: skip
    fourier = drawn["Accuracy under Fourier-mode input noise on delay"][f"{label} (n=1)"]
    np.testing.assert_allclose(fourier, [[0.25], [40.0]])  # the clean row is the test figure's
    planes = drawn["Eigenvalues before and after training on delay"]
    np.testing.assert_allclose(planes[f"{label} (seed 0) after"], [[-0.7, 1]])

    assert client.get(f"/trials/{trial_id}/figures/nothing.svg").status_code == 404
    assert client.get("/trials/999/figures/learning-curve.svg").status_code == 404
    assert client.get(f"/trials/{trial_id}/figures/..%2Fx.svg").status_code in (404, 422)


def test_sweep_page_draws_the_report_figures_once_from_the_results(service, drawn):
    client, sessions, tokens = service
    sweep_id = submit(client, tokens["alice"])
    assert "appear here once a trial has completed" in page(client, f"/sweeps/{sweep_id}")
    finish_trials(sessions, sweep_id)  # accuracy 0.6 + 0.01 · seed, + 0.05 for lin; seeds 0 and 1
    cache: FigureCache = client.app.state.page_figures
    builds = cache.builds
    html = page(client, f"/sweeps/{sweep_id}")
    srcs = re.findall(
        rf'<img src="(/sweeps/{sweep_id}/figures/[a-z0-9-]+\.svg)" alt="Sweep {sweep_id}: [^"]+"', html
    )
    assert [s.rsplit("/", 1)[1] for s in srcs] == [
        "validation-listops.svg", "test-listops.svg", "validation-delay.svg", "test-delay.svg",
    ]  # fmt: skip
    for src in srcs:
        answer = client.get(src)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    page(client, f"/sweeps/{sweep_id}")
    assert cache.builds == builds + 1  # the page and its images and a reload: drawn once

    validation = drawn["Validation accuracy per epoch on delay"]
    lin = validation["s4d · lin · exp · trained (n=2)"]
    np.testing.assert_allclose(lin, [[1, 2], [65.5, 65.5]])  # mean of 65% and 66% after each epoch
    band = validation["s4d · lin · exp · trained (min–max over seeds)"]
    assert band[:, 1].min() == pytest.approx(65.0) and band[:, 1].max() == pytest.approx(66.0)
    test = drawn["Test accuracy at the best validation epoch on delay"]
    np.testing.assert_allclose(sorted(test["s4d · inv · exp · trained seeds"][:, 0]), [60.0, 61.0])
    np.testing.assert_allclose(sorted(test["s4d · lin · exp · trained seeds"][:, 0]), [65.0, 66.0])

    svg = client.get(f"/sweeps/{sweep_id}/figures/test-delay.svg").text
    dots = np.concatenate([svg_points(svg, 1), svg_points(svg, 2)])  # lin (best, on top), then inv
    assert_affine(dots[:, 0], np.array([65.0, 66.0, 60.0, 61.0]))
    assert "Test accuracy at the best validation epoch on delay" in svg
    assert client.get(f"/sweeps/{sweep_id}/figures/fourier-noise-delay.svg").status_code == 404
    assert client.get("/sweeps/99/figures/test-delay.svg").status_code == 404


def test_the_figure_cache_is_least_recently_used_and_expires():
    now = [0.0]
    cache = FigureCache(max_entries=2, ttl=10.0, clock=lambda: now[0])
    draw = lambda: iter(())  # noqa: E731 - an empty set is enough to count the drawings
    for key in ("a", "b", "a", "c"):  # c evicts b, the least recently used
        cache.get(key, draw)
    assert cache.builds == 3
    cache.get("a", draw)
    assert cache.builds == 3
    cache.get("b", draw)
    assert cache.builds == 4
    now[0] = 11.0
    cache.get("b", draw)
    assert cache.builds == 5
    cache.get("forever", draw, ttl=float("inf"))
    now[0] = 1e9
    cache.get("forever", draw)
    assert cache.builds == 6


def test_a_figure_that_fails_keeps_the_ones_before_it_and_is_drawn_again_next_time():
    from orchestrator.report import figures
    from orchestrator.report.build import ReportFigure

    cache = FigureCache()

    def draw():
        yield ReportFigure("ok", "t", "c", figures.seed_points_figure([], title="t", xlabel="x"))
        raise ValueError("no <data>")

    found = cache.get("k", draw)
    assert list(found.figures) == ["ok"] and found.error == "ValueError: no <data>"
    cache.get("k", draw)
    assert cache.builds == 2


def test_the_figure_cache_keeps_at_most_max_bytes_of_svg():
    from orchestrator.report.build import ReportFigure

    cache = FigureCache(max_bytes=12_000)

    def draw():
        from orchestrator.report import figures

        yield ReportFigure("f", "t", "c", figures.seed_points_figure([], title="t", xlabel="x"))

    first = cache.get("a", draw)
    assert first.size <= cache.max_bytes < 2 * first.size and first.figures["f"].svg.startswith(b"<?xml")
    cache.get("b", draw)  # both would pass max_bytes: "a", the least recently used, goes
    cache.get("b", draw)
    assert cache.builds == 2
    cache.get("a", draw)
    assert cache.builds == 3


# --- studies -----------------------------------------------------------------------------------------


def claims_with_html() -> list[dict]:
    return [
        {
            "id": "loss-falls",
            "paper": "P",
            "statement": f"The loss falls {XSS}",
            "quantity": "steps <b>to</b> threshold",
            "value": 12.5,
            "ci": [10.0, 15.0],
            "n": 4,
            "rule": "holds if the interval lies below 20 & above 0",
            "verdict": "holds",
        },
        {
            "id": "no-value",
            "paper": "P",
            "statement": "s",
            "quantity": "q",
            "value": None,
            "ci": None,
            "n": 0,
            "rule": "r",
            "verdict": "inconclusive",
        },
    ]


def state_size_sweep(sessions) -> int:
    """The state-size study's smoke sweep with every trial completed: step losses that fall by a
    factor per step that depends on N and the seed, so the loss figure has numbers to check."""
    spec = get_study("state-size").specs("smoke")["main"]
    with transaction(sessions) as s:
        sweep = store.create_sweep(s, spec)
        for trial in s.scalars(select(Trial).where(Trial.sweep_id == sweep.id)).all():
            attempt = store.claim(s, trial.id)
            n, seed = trial.config["model"]["d_state"], trial.seed
            losses = [1.0 / (1 + n + seed) ** step for step in range(4)]
            result = TrialResult(
                status="completed",
                config_hash=TrialConfig.model_validate(trial.config).hash(),
                metric="r2",
                test_metric=0.5,
                step_losses=losses,
            )
            store.finish(s, trial.id, attempt, result, "completed")
        store.close_finished_sweeps(s)
        return sweep.id


def test_a_recorded_study_run_shows_its_verdicts_sweeps_and_figures(service, drawn):
    client, sessions, _ = service
    sweep_id = state_size_sweep(sessions)
    with transaction(sessions) as s:
        run_id = record_study_run(
            s, "state-size", "smoke", {"main": sweep_id}, claims_with_html(), utcnow()
        ).id
    html = page(client, "/studies")
    assert XSS not in html and "<b>to</b>" not in html
    assert "The loss falls &lt;script&gt;alert(1)&lt;/script&gt;" in html and "below 20 &amp; above 0" in html
    assert rows_of(html, "verdicts stacked") == [
        "loss-falls The loss falls <script>alert(1)</script> steps <b>to</b> threshold 12.5 [10, 15] 4 "
        "holds if the interval lies below 20 & above 0 holds",
        "no-value s q — — 0 r inconclusive",
    ]
    assert '<span class="verdict v-holds">holds</span>' in html
    assert f'<a href="/sweeps/{sweep_id}">main (sweep {sweep_id})</a>' in html
    assert "1 holds" in text_of(html) and "1 inconclusive" in text_of(html)
    srcs = re.findall(rf'<img src="(/studies/runs/{run_id}/figures/[a-z0-9.-]+\.svg)" alt="([^"]+)"', html)
    names = [src.rsplit("/", 1)[1] for src, _ in srcs]
    assert names[:3] == [
        "state-size-loss-alpha-0.svg",
        "state-size-loss-alpha-1.svg",
        "state-size-steps-to-threshold.svg",
    ]
    assert all(alt.startswith(f"Study state-size, run {run_id}: ") for _, alt in srcs)

    loss = drawn["Training loss per gradient step, white input"]
    expected = np.mean([[1.0 / (3 + seed) ** step for step in range(4)] for seed in (0, 1)], axis=0)
    np.testing.assert_allclose(loss["N = 2 (n=2)"], [range(4), expected])  # N = 2, mean over seeds 0, 1
    svg = client.get(srcs[0][0])
    assert svg.status_code == 200 and "Training loss per gradient step, white input" in svg.text
    assert client.get(f"/studies/runs/{run_id}/figures/nothing.svg").status_code == 404
    assert client.get("/studies/runs/999/figures/state-size-loss-alpha-0.svg").status_code == 404


def test_study_runs_are_newest_first_three_a_page(service):
    client, sessions, _ = service
    with transaction(sessions) as s:
        for _ in range(5):  # a study this version does not have: verdicts shown, no figures
            record_study_run(s, "retired", "quick", {}, claims_with_html()[1:], utcnow())
    first = page(client, "/studies")
    assert re.findall(r'<article class="study-run" id="run-(\d+)"', first) == ["5", "4", "3"]
    assert "page 1 of 2 (5 in all)" in text_of(first) and "<img" not in first
    second = page(client, "/studies?page=2")
    assert re.findall(r'<article class="study-run" id="run-(\d+)"', second) == ["2", "1"]


def test_a_study_whose_figures_fail_still_shows_its_verdicts(service, monkeypatch):
    from orchestrator.studies.state_size import StateSizeStudy

    def failing(self, results, scale):
        raise ValueError("no <b>figure</b>")
        yield  # a generator, as Study.figures is

    monkeypatch.setattr(StateSizeStudy, "figures", failing)
    client, sessions, _ = service
    with transaction(sessions) as s:
        record_study_run(s, "state-size", "smoke", {}, claims_with_html(), utcnow())
    html = page(client, "/studies")
    assert "Some figures could not be drawn: ValueError: no &lt;b&gt;figure&lt;/b&gt;" in html
    assert len(rows_of(html, "verdicts stacked")) == 2 and "<img" not in html
