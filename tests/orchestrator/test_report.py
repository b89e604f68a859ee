"""Reports: the figures hold the data they claim to plot, summary.json equals mean ± std computed
here over the seeds, a report of a real (small, fake-trained) sweep is complete, and a failed render
leaves the output directory as it was. On SQLite and PostgreSQL where a database is involved."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from sqlalchemy import select

from orchestrator import store
from orchestrator.db import transaction
from orchestrator.models import Trial
from orchestrator.report import ReportError, build_report, figures, load_report_data
from orchestrator.report.build import diagnostic_runs, report_figures
from orchestrator.report.data import load_diagnostic_arrays
from orchestrator.spec import load_spec
from orchestrator.worker import TrialJob, run_trial
from ssm.train import TrialResult

# --- the figure module, on plain arrays ------------------------------------------------------------


def _line(ax, label):
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def _collection(ax, label):
    (found,) = [c for c in ax.collections if c.get_label() == label]
    return found


def _offsets(collection) -> np.ndarray:
    """A scatter's points as a plain (n, 2) float array (matplotlib keeps a masked array)."""
    return np.asarray(np.ma.getdata(collection.get_offsets()), dtype=float)


def test_seed_curves_draw_the_mean_and_the_min_max_band_of_each_configuration():
    runs_a = [[(1, 0.5), (2, 0.7), (3, 0.8)], [(1, 0.4), (2, 0.6)]]  # the second seed stopped early
    runs_b = [[(1, 0.2), (2, 0.3), (3, 0.35)]]
    curves = [figures.SeedCurves.from_runs("s4d · inv · exp · frozen", runs_a)]
    curves.append(figures.SeedCurves.from_runs("s4d · lin · exp · trained", runs_b))
    fig = figures.seed_curves_figure(
        curves, title="t", xlabel="epoch", ylabel="validation accuracy (%)", scale=100
    )
    (ax,) = fig.axes

    a = _line(ax, "s4d · inv · exp · frozen (n=2)")
    np.testing.assert_allclose(a.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(a.get_ydata(), [45.0, 65.0, 80.0])  # mean of the seeds present
    band = _collection(ax, "s4d · inv · exp · frozen (min–max over seeds)")
    assert isinstance(band, PolyCollection)
    vertices = band.get_paths()[0].vertices
    for x, low, high in [(1, 40, 50), (2, 60, 70), (3, 80, 80)]:
        ys = vertices[np.isclose(vertices[:, 0], x), 1]
        assert np.isclose(ys.min(), low) and np.isclose(ys.max(), high), (x, ys)
    b = _line(ax, "s4d · lin · exp · trained (n=1)")
    np.testing.assert_allclose(b.get_ydata(), [20.0, 30.0, 35.0])
    assert not [c for c in ax.collections if c.get_label().startswith("s4d · lin")]  # one seed: no band
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["s4d · inv · exp · frozen (n=2)", "s4d · lin · exp · trained (n=1)"]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation accuracy (%)"


def test_a_flat_curve_gets_a_readable_range_without_an_offset():
    runs = [[(1, 16.0), (2, 16.0 + 1e-13)], [(1, 16.0), (2, 16.0)]]  # a capacity that does not move
    fig = figures.seed_curves_figure(
        [figures.SeedCurves.from_runs("a", runs)], title="t", xlabel="x", ylabel="y"
    )
    (ax,) = fig.axes
    figures.to_png(fig)  # tick labels and the offset are decided when drawn
    assert ax.get_ylim() == pytest.approx((15.2, 16.8))
    assert ax.yaxis.get_offset_text().get_text() == ""


def test_seed_points_show_every_seed_and_the_mean_with_its_sample_std():
    values = {"best": [0.9, 0.8, 0.85], "worst": [0.5, 0.6]}
    groups = [figures.SeedValues(label, np.asarray(v)) for label, v in values.items()]
    fig = figures.seed_points_figure(groups, title="t", xlabel="test accuracy (%)", scale=100)
    (ax,) = fig.axes
    for label, v in values.items():
        dots = _collection(ax, f"{label} seeds")
        assert isinstance(dots, PathCollection)
        np.testing.assert_allclose(np.sort(_offsets(dots)[:, 0]), np.sort(np.asarray(v) * 100))
        (container,) = [c for c in ax.containers if c.get_label() == f"{label} mean"]
        np.testing.assert_allclose(
            np.asarray(container.lines[0].get_xdata(), dtype=float), [100 * np.mean(v)]
        )
        (whisker,) = container.lines[2]
        x_ends = whisker.get_segments()[0][:, 0]
        np.testing.assert_allclose(np.ptp(x_ends) / 2, 100 * np.std(v, ddof=1))
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["worst (n=2)", "best (n=3)"]  # the first group on top


def test_eigenvalues_are_drawn_in_the_complex_plane_before_and_after():
    before = np.array([-0.5 + 1j, -0.5 + 2j, -0.5 + 3j])
    after = np.array([[-0.7 + 1.1j], [-0.6 + 2.2j], [-0.9 + 2.9j]])  # any shape
    fig = figures.eigenvalue_plane_figure([("s4d · inv · exp · trained", before, after)])
    (ax,) = fig.axes
    np.testing.assert_allclose(
        _offsets(_collection(ax, "s4d · inv · exp · trained before")), np.c_[before.real, before.imag]
    )
    np.testing.assert_allclose(
        _offsets(_collection(ax, "s4d · inv · exp · trained after")),
        np.c_[after.ravel().real, after.ravel().imag],
    )
    assert "Re λ" in ax.get_xlabel() and "Im λ" in ax.get_ylabel()


def test_memory_function_plots_init_and_end_over_lags_from_one():
    init, end = 0.9 ** np.arange(1, 9), 0.95 ** np.arange(1, 9)
    fig = figures.memory_function_figure([("s4d · legs · exp · frozen", init, end)])
    (ax,) = fig.axes
    for when, values, style in (("init", init, "--"), ("end", end, "-")):
        line = _line(ax, f"s4d · legs · exp · frozen {when}")
        np.testing.assert_allclose(line.get_xdata(), np.arange(1, 9))
        np.testing.assert_allclose(line.get_ydata(), values)
        assert line.get_linestyle() == style
    assert ax.get_xlabel() == "lag τ (steps)" and ax.get_yscale() == "log"


def test_png_and_svg_bytes_hold_the_figure_and_its_text():
    curve = figures.SeedCurves.from_runs("s4d · inv · exp · frozen", [[(1, 0.5), (2, 0.6)]])
    fig = figures.seed_curves_figure(
        [curve], title="Validation accuracy", xlabel="epoch", ylabel="accuracy (%)"
    )
    png, svg = figures.to_png_and_svg(fig)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == figures.WIDTH_IN * figures.DPI and height > 400
    text = svg.decode()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for words in ("Validation accuracy", "s4d · inv · exp · frozen (n=1)", "epoch", "accuracy (%)"):
        assert words in text  # fonts kept as text: readable and searchable


# --- a small real sweep ---------------------------------------------------------------------------

SPEC = """\
name: small
tasks: [delay]
model: {layer: s4d, init: [inv, lin], d_model: 8}
optim: {epochs: 3}
seeds: [0, 1, 2]
"""
EPOCHS = 3


def quality(init: str, seed: int) -> float:
    return 0.6 + (0.1 if init == "lin" else 0.0) + 0.01 * seed


def val_curve(init: str, seed: int) -> list[float]:
    return [quality(init, seed) * (e + 1) / EPOCHS - 0.002 * seed for e in range(EPOCHS)]


def final_test_value(init: str, seed: int) -> float:
    return quality(init, seed) + 0.003 * seed * seed


def fourier_table(init: str, seed: int) -> list[dict]:
    clean = final_test_value(init, seed)
    return [
        {"frequency": None, "accuracy": clean},
        {"frequency": 0.1, "accuracy": clean - 0.1},
        {"frequency": 0.4, "accuracy": clean - 0.2 - 0.01 * seed},
    ]


def layer_arrays(shift: float) -> dict:
    return {
        "eigenvalues": [[-0.5 - shift, 1.0], [-0.5 - 2 * shift, 2.0]],
        "dt": [0.01],
        "Ab": [[0.9, 0.1], [0.8, 0.2]],
        "memory_function": [[(0.9 + shift / 10) ** k for k in range(1, 17)], [0.5**k for k in range(1, 17)]],
        "memory_capacity": [9.0, 1.0],
    }


def diagnosing_trainer(config, on_epoch=None, checkpoint_dir=None, data_dir=None):
    """Fast and deterministic: the numbers follow from (init, seed), so the test computes them too."""
    init, seed = config.model.init, config.seed
    curve = val_curve(init, seed)
    for epoch, value in enumerate(curve):
        metrics = {
            "epoch": epoch,
            "train_loss": 1.0 / (epoch + 1),
            "val_loss": 1.0 - value,
            "val_metric": value,
            "grad_over_weight_mean": 1e-3 * (epoch + 1) * (1 + seed),
            "eigenvalue_drift_relative": 0.01 * epoch * (2 if init == "lin" else 1),
            "memory_capacity": [10.0 + epoch, 12.0 + epoch + seed],
            "drift_re_lambda": 0.05 * epoch + 0.01 * seed,  # the per-quantity drift (ssm.diagnostics)
        }
        if on_epoch is not None and on_epoch(metrics) is False:
            break
    return TrialResult(
        status="completed",
        config_hash=config.hash(),
        metric="accuracy",
        best_epoch=EPOCHS - 1,
        val_metric=curve[-1],
        test_metric=final_test_value(init, seed),
        diagnostics={
            "fourier": fourier_table(init, seed),
            "arrays": {
                "init": [layer_arrays(0.0)],
                "best": [layer_arrays(0.1)],
                "end": [layer_arrays(0.2 + seed)],
            },
        },
    )


def run_sweep(db_url, sessions, spec_text: str = SPEC) -> int:
    """Plan the sweep and run each trial through the worker, in this process (no Ray)."""
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, load_spec(spec_text)).id
    run_pending(db_url, sessions, sweep_id)
    with transaction(sessions) as s:
        store.close_finished_sweeps(s)
    return sweep_id


def run_pending(db_url, sessions, sweep_id: int) -> list[int]:
    """Run the sweep's pending trials through the worker, in this process; their ids."""
    with sessions() as s:
        pending = s.scalars(
            select(Trial.id).where(Trial.sweep_id == sweep_id, Trial.state == "pending")
        ).all()
    for trial_id in pending:
        with transaction(sessions) as s:
            attempt = store.claim(s, trial_id)
        assert run_trial(TrialJob(trial_id, attempt, db_url, train_fn=diagnosing_trainer)) == "completed"
    return list(pending)


def expected_groups() -> dict[str, dict]:
    out = {}
    for init in ("inv", "lin"):
        tests = [final_test_value(init, seed) for seed in range(3)]
        vals = [val_curve(init, seed)[-1] for seed in range(3)]
        out[init] = {"test": tests, "val": vals}
    return out


def test_a_report_of_a_small_real_sweep(db_url, sessions, tmp_path):
    sweep_id = run_sweep(db_url, sessions)
    out = tmp_path / "report"
    with sessions() as s:
        index = build_report(s, [sweep_id], out)

    assert index == out / "index.html"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["claims"] == []
    assert [s["id"] for s in summary["sweeps"]] == [sweep_id]
    assert summary["sweeps"][0]["trials_by_state"] == {"completed": 6}
    groups = {g["init"]: g for g in summary["groups"]}
    assert [g["init"] for g in summary["groups"]] == ["lin", "inv"]  # best mean first
    for init, values in expected_groups().items():
        group = groups[init]
        assert group["label"] == f"s4d · {init} · exp · trained"
        assert group["n_seeds"] == 3 and group["seeds"] == [0, 1, 2]
        for key, xs in (("test_metric", values["test"]), ("val_metric", values["val"])):
            stats = group["metrics"][key]
            assert stats["n"] == 3
            assert math.isclose(stats["mean"], float(np.mean(xs)), rel_tol=1e-12)
            assert math.isclose(stats["std"], float(np.std(xs, ddof=1)), rel_tol=1e-9)
        gow = [1e-3 * EPOCHS * (1 + seed) for seed in range(3)]
        assert math.isclose(group["metrics"]["final_grad_over_weight_mean"]["mean"], np.mean(gow))
        capacity = [np.mean([10.0 + EPOCHS - 1, 12.0 + EPOCHS - 1 + seed]) for seed in range(3)]
        assert math.isclose(group["metrics"]["final_memory_capacity"]["std"], np.std(capacity, ddof=1))

    names = {p.stem for p in (out / "figures").glob("*.png")}
    assert names == {p.stem for p in (out / "figures").glob("*.svg")}
    assert names == {
        "validation-delay",
        "test-delay",
        "grad-over-weight-mean-delay",
        "eigenvalue-drift-relative-delay",
        "memory-capacity-delay",
        "drift-re-lambda-delay",
        "fourier-noise-delay",
        "eigenvalues-delay",
        "memory-function-delay",
    }
    page = index.read_text()
    for name in names:
        assert f'src="figures/{name}.svg"' in page
    assert "s4d · lin · exp · trained" in page and "Leaderboard" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    svg = (out / "figures" / "validation-delay.svg").read_text()
    assert "s4d · lin · exp · trained (n=3)" in svg and "validation accuracy (%)" in svg
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report-")]  # staging removed


def test_the_report_figures_plot_the_sweeps_numbers(db_url, sessions):
    sweep_id = run_sweep(db_url, sessions)
    with sessions() as s:
        data = load_report_data(s, [sweep_id])
        arrays = load_diagnostic_arrays(s, diagnostic_runs(data))
    drawn = {item.name: item.figure for item in report_figures(data, arrays)}

    (ax,) = drawn["validation-delay"].axes
    for init in ("inv", "lin"):
        line = _line(ax, f"s4d · {init} · exp · trained (n=3)")
        np.testing.assert_allclose(line.get_xdata(), [1, 2, 3])
        mean = np.mean([val_curve(init, seed) for seed in range(3)], axis=0)
        np.testing.assert_allclose(line.get_ydata(), 100 * mean)

    (ax,) = drawn["test-delay"].axes
    for init in ("inv", "lin"):
        dots = _collection(ax, f"s4d · {init} · exp · trained seeds")
        expected = sorted(100 * final_test_value(init, seed) for seed in range(3))
        np.testing.assert_allclose(sorted(_offsets(dots)[:, 0]), expected)

    (ax,) = drawn["fourier-noise-delay"].axes
    line = _line(ax, "s4d · inv · exp · trained (n=3)")
    np.testing.assert_allclose(line.get_xdata(), [0.1, 0.4])
    rows = [fourier_table("inv", seed)[1:] for seed in range(3)]
    np.testing.assert_allclose(
        line.get_ydata(), 100 * np.mean([[r["accuracy"] for r in t] for t in rows], axis=0)
    )

    (ax,) = drawn["eigenvalue-drift-relative-delay"].axes
    np.testing.assert_allclose(_line(ax, "s4d · lin · exp · trained (n=3)").get_ydata(), [0.0, 0.02, 0.04])

    (ax,) = drawn["drift-re-lambda-delay"].axes
    np.testing.assert_allclose(_line(ax, "s4d · inv · exp · trained (n=3)").get_ydata(), [0.01, 0.06, 0.11])
    assert ax.get_ylabel() == "mean |Re λ − Re λ₀| / mean |Re λ₀| (fraction)"

    panels = drawn["eigenvalues-delay"].axes  # a panel per configuration, its seed 0
    assert [ax.get_title(loc="left") for ax in panels] == [
        "s4d · lin · exp · trained (seed 0)",
        "s4d · inv · exp · trained (seed 0)",
    ]
    after = _offsets(_collection(panels[0], "s4d · lin · exp · trained (seed 0) after"))
    np.testing.assert_allclose(after, [[-0.7, 1.0], [-0.9, 2.0]])
    (ax,) = drawn["memory-function-delay"].axes
    init_line = _line(ax, "s4d · lin · exp · trained (seed 0) init")
    k = np.arange(1, 17)
    # mean over channels; the arrays are stored in float32 (orchestrator.array_codec)
    np.testing.assert_allclose(init_line.get_ydata(), (0.9**k + 0.5**k) / 2, rtol=1e-6)


def test_a_reused_run_counts_once_and_brings_its_epochs(db_url, sessions, tmp_path):
    first = run_sweep(db_url, sessions)
    second = run_sweep(db_url, sessions)  # every trial reuses the first sweep's result
    with sessions() as s:
        assert set(s.scalars(select(Trial.state).where(Trial.sweep_id == second))) == {"completed"}
        both = load_report_data(s, [first, second])
        alone = load_report_data(s, [second])
    for data in (both, alone):
        assert sorted(len(g.trials) for g in data.groups) == [3, 3]
        for group in data.groups:
            for trial in group.trials:
                assert [m["val_metric"] for m in trial.epochs] == pytest.approx(
                    val_curve(group.init, trial.seed)
                )


def test_unknown_and_unfinished_sweeps_are_refused(db_url, sessions):
    with transaction(sessions) as s:
        pending = store.create_sweep(s, load_spec(SPEC)).id
    with sessions() as s:
        with pytest.raises(ReportError, match=r"^no sweep with id 9999$"):
            load_report_data(s, [pending, 9999])
        with pytest.raises(
            ReportError, match=rf"^sweep {pending} \(small\) has no completed trials yet \(6 pending\)$"
        ):
            load_report_data(s, [pending])


def test_a_failed_render_leaves_the_previous_report_in_place(db_url, sessions, tmp_path, monkeypatch):
    sweep_id = run_sweep(db_url, sessions)
    out = tmp_path / "report"
    with sessions() as s:
        build_report(s, [sweep_id], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    calls = []

    def failing(fig):
        calls.append(fig)
        if len(calls) == 3:
            raise RuntimeError("the renderer broke")
        return figures.to_png(fig), figures.to_svg(fig)

    monkeypatch.setattr(figures, "to_png_and_svg", failing)
    with sessions() as s, pytest.raises(RuntimeError, match="the renderer broke"):
        build_report(s, [sweep_id], out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", *sorted(_sqlite_files(tmp_path))]


def _sqlite_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if re.match(r"ssmbench\.db", p.name)]


def test_the_page_escapes_what_comes_from_the_database():
    from orchestrator.report.data import ConfigGroup, ReportData, SweepInfo, TrialRecord
    from orchestrator.report.html import render_index
    from orchestrator.report.summary import build_summary

    hostile = "<script>alert(1)</script>"
    sweep = SweepInfo(1, hostile, "completed", None, {"name": hostile}, {"completed": 1}, None, None)
    group = ConfigGroup("delay", "k", f"s4d · {hostile}", "s4d", "inv", "exp", True, "accuracy")
    group.trials.append(TrialRecord(1, 1, 1, 0, 0.5, 0.5, 0))
    data = ReportData([sweep], [group], {})
    page = render_index(data, build_summary(data), [{"name": "x", "title": hostile, "caption": ""}])
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- a search sweep ---------------------------------------------------------------------------------

SEARCH_SPEC = """\
name: searched
tasks: [delay]
model: {layer: s4d, d_model: 8}
optim: {epochs: 3}
seeds: [0]
search:
  sampler: random
  pruner: none
  n_trials: 5
  objective: {metric: val_metric, direction: maximize}
  space:
    model.init: {choices: [inv, lin]}
    optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
"""


def test_a_report_of_a_search_sweep(db_url, sessions, tmp_path):
    """Each sampled point is its own configuration (one seed each): the report has them all, labelled
    by what was sampled, with its page, figures and summary."""
    from orchestrator.search import SearchCoordinator, validate_search

    spec = load_spec(SEARCH_SPEC)
    validate_search(spec)
    with transaction(sessions) as s:
        sweep_id = store.create_sweep(s, spec).id
    coordinator = SearchCoordinator(db_url)
    try:
        ran: list[int] = []
        for _ in range(20):  # ask, run what was asked, tell: until the budget is spent
            with transaction(sessions) as s:
                coordinator.ask(s, {"CPU": 2.0})
            ran += run_pending(db_url, sessions, sweep_id)
            if len(ran) >= 5:
                break
        with transaction(sessions) as s:
            coordinator.ask(s, {"CPU": 2.0})
            store.close_finished_sweeps(s)
    finally:
        coordinator.close(sessions)
    assert len(ran) == 5
    with sessions() as s:
        configs = {t.id: t.config for t in s.scalars(select(Trial).where(Trial.sweep_id == sweep_id))}
        out = tmp_path / "report"
        index = build_report(s, [sweep_id], out)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["sweeps"][0]["trials_by_state"] == {"completed": 5}
    groups = summary["groups"]
    assert len(groups) == 5 and all(g["n_seeds"] == 1 for g in groups)  # one group per sampled point
    assert len({g["label"] for g in groups}) == 5  # told apart by their labels: the sampled lr
    assert all("lr=" in g["label"] for g in groups)
    for group in groups:
        (trial_id,) = group["trial_ids"]
        config = configs[trial_id]
        assert group["init"] == config["model"]["init"]
        stats = group["metrics"]["test_metric"]
        assert stats["n"] == 1 and stats["std"] is None
        assert math.isclose(stats["mean"], final_test_value(config["model"]["init"], 0), rel_tol=1e-12)
    names = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"validation-delay", "test-delay", "eigenvalues-delay"} <= names
    assert names == {p.stem for p in (out / "figures").glob("*.svg")}
    page = index.read_text()
    assert all(f'src="figures/{name}.svg"' in page for name in names)
    assert "search" in page
