"""Built-in studies: the claim rules on hand-made results (every verdict reached, the interval checked
against scipy's own t-test interval), every study's specs validate and plan, the direct
computations against independent ones, and the CLI's errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from orchestrator.spec import plan
from orchestrator.studies import SCALES, STUDY_NAMES, get_study
from orchestrator.studies.claims import at_least, below, outside, positive, t_interval, threshold
from orchestrator.studies.memory import epochs_to_converge
from orchestrator.studies.results import StudyResults, TrialOutcome
from orchestrator.studies.state_size import one_dimensional_dynamics, steps_to_threshold

# --- the interval and the rules ------------------------------------------------------------------


@pytest.mark.parametrize("values", [[0.1, -0.4, 0.3, 0.25], [5.0, 5.5], [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]])
def test_t_interval_is_scipys_one_sample_interval(values):
    expected = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    interval = t_interval(values)
    assert interval.n == len(values)
    assert interval.mean == pytest.approx(np.mean(values))
    assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high), rel=1e-10)


def test_no_interval_without_two_finite_values():
    assert t_interval([]).mean is None
    one = t_interval([3.0, float("nan"), None])
    assert (one.mean, one.low, one.n) == (3.0, None, 1)
    for rule in (at_least(1.0, "x"), positive("x"), below(0.2, "x"), outside(-0.1, 0.1, "x")):
        assert rule(one) == "inconclusive"


def test_at_least_reaches_every_verdict():
    rule = at_least(1.0, "frozen − trained")
    assert rule(t_interval([0.5, -0.2, 0.1, 0.3])) == "holds"  # interval ≈ [−0.36, 0.71] ≥ −1
    assert rule(t_interval([-5.0, -4.0, -6.0, -5.5])) == "fails"  # all below −1
    assert rule(t_interval([-3.0, 2.0, -1.0, 0.5])) == "inconclusive"  # straddles −1


def test_positive_below_outside_and_threshold_reach_every_verdict():
    assert positive("d")(t_interval([1.0, 1.2, 0.9])) == "holds"
    assert positive("d")(t_interval([-1.0, -1.2, -0.9])) == "fails"
    assert positive("d")(t_interval([-1.0, 1.2, 0.1])) == "inconclusive"
    assert below(0.2, "d")(t_interval([0.05, 0.06, 0.04])) == "holds"
    assert below(0.2, "d")(t_interval([0.5, 0.6, 0.55])) == "fails"
    assert below(0.2, "d")(t_interval([0.0, 0.5, 0.2])) == "inconclusive"
    band = outside(-0.1, 0.1, "d")
    assert band(t_interval([1.0, 1.1, 0.9])) == "holds"
    assert band(t_interval([0.01, -0.01, 0.0])) == "fails"
    assert band(t_interval([0.0, 0.5, 0.2])) == "inconclusive"
    rule = threshold(lambda v: v < 0.5, "t")
    assert rule(t_interval([0.1])) == "holds" and rule(t_interval([0.9])) == "fails"
    assert rule(t_interval([])) == "inconclusive"


# --- claims of a study on hand-made results ---------------------------------------------------------


def memory_trial(part, init, trained, seed, accuracy, val=(0.3, 0.5, 0.6)) -> TrialOutcome:
    config = {
        "task": {"name": "delay", "options": {}},
        "model": {"init": init, "train_eigenvalues": trained},
        "seed": seed,
    }
    epochs = [
        {"epoch": i, "val_metric": v, "train_loss": 1.0 - v, "val_loss": 1.1 - v} for i, v in enumerate(val)
    ]
    result = {
        "test_metric": accuracy,
        "best_epoch": len(val) - 1,
        "epochs": epochs,
        "parameters": {"total": 1000, "frozen": 100 if not trained else 0},
    }
    return TrialOutcome(part, config, "completed", result)


def memory_results(frozen_minus_trained: list[float]) -> StudyResults:
    trials = []
    for seed, diff in enumerate(frozen_minus_trained):
        trials.append(memory_trial("long-memory", "inv", True, seed, 0.60))
        trials.append(memory_trial("long-memory", "inv", False, seed, 0.60 + diff / 100))
        trials.append(memory_trial("short-memory", "inv", True, seed, 0.40))
    return StudyResults(trials)


@pytest.mark.parametrize(
    ("differences", "verdict"),
    [
        ([0.5, -0.2, 0.1, 0.3], "holds"),
        ([-5.0, -4.0, -6.0, -5.5], "fails"),
        ([-3.0, 2.0, -1.0, 0.5], "inconclusive"),
    ],
)
def test_memory_rc_comparable_claim_from_results(differences, verdict):
    claims = {c["id"]: c for c in get_study("memory").judge(memory_results(differences), "quick")}
    claim = claims["rc-comparable"]
    expected = stats.ttest_1samp(differences, 0.0).confidence_interval(0.95)
    assert claim["verdict"] == verdict
    assert claim["n"] == len(differences)
    assert claim["value"] == pytest.approx(np.mean(differences))
    assert claim["ci"] == pytest.approx([expected.low, expected.high], rel=1e-9)
    assert set(claim) >= {"id", "paper", "statement", "quantity", "value", "ci", "n", "rule", "verdict"}
    # long − short initial memory: +20 points for every seed (zero spread: the interval is the point)
    assert claims["long-initial-memory"]["value"] == pytest.approx(20.0)
    assert claims["long-initial-memory"]["verdict"] == "holds"
    assert claims["rc-parameter-share"]["value"] == pytest.approx(0.1)
    assert claims["rc-parameter-share"]["verdict"] == "holds"


def test_epochs_to_converge_is_the_first_epoch_at_95_percent_of_the_best():
    trial = memory_trial("long-memory", "inv", True, 0, 0.5, val=(0.2, 0.58, 0.6, 0.59))
    assert epochs_to_converge(trial) == 2.0  # 0.58 ≥ 0.95 × 0.6 = 0.57 at the second epoch


def test_state_size_steps_are_censored_at_the_steps_run():
    done = TrialOutcome(
        "main", {"seed": 0}, "completed", {"steps_to_threshold": 7, "step_losses": [1.0] * 20}
    )
    never = TrialOutcome(
        "main", {"seed": 0}, "completed", {"steps_to_threshold": None, "step_losses": [1.0] * 20}
    )
    assert steps_to_threshold(done) == (7.0, False)
    assert steps_to_threshold(never) == (21.0, True)


def test_one_dimensional_dynamics_follow_an_explicit_gradient_descent():
    run = one_dimensional_dynamics(a=0.5, s=2.0, p0=0.1, lr=0.005, steps=50, length=16)
    # the same descent written out independently: loss = mean_ω |b c h − s h|², h = 1/(1 − a e^{−iω})
    omega = 2 * np.pi * np.arange(16 // 2 + 1) / 16
    H = np.mean(1.0 / np.abs(1 - 0.5 * np.exp(-1j * omega)) ** 2)
    b = c = math.sqrt(0.1)
    for step in range(51):
        assert run["gd"][step] == pytest.approx(b * c, rel=1e-12)
        g = 2 * (b * c - 2.0) * H
        b, c = b - 0.005 * g * c, c - 0.005 * g * b
    assert run["logistic"][0] == pytest.approx(0.1) and run["logistic"][-1] < 2.0


def test_ptd_transfer_functions_match_a_dense_solve():
    from orchestrator.studies.ptd import hippo_transfer, readout, slot_transfer
    from ssm.init import diag_init, hippo_legs

    N, omega = 8, np.array([0.1, 1.0, 10.0])
    c = readout(N // 2)
    init = diag_init("ptd", N, eps=1e-6, perturbation="random")
    # the slot system with outputs 2·Re, as a dense real-input system: Σ over slots and conjugates
    lam, weight = init.lam.numpy(), (c @ init.from_slots.numpy()) * init.B.numpy()
    explicit = [
        sum(w / (1j * x - l) + np.conj(w) / (1j * x - np.conj(l)) for l, w in zip(lam, weight, strict=True))
        for x in omega
    ]
    assert slot_transfer(init, c, omega) == pytest.approx(np.array(explicit), rel=1e-12)
    A, B = (t.numpy() for t in hippo_legs(N // 2))
    dense = [c @ np.linalg.inv(1j * x * np.eye(N // 2) - A) @ B for x in omega]
    assert hippo_transfer(N // 2, c, omega) == pytest.approx(np.array(dense), rel=1e-10)
    # a tiny perturbation: the PTD system's transfer function is HiPPO-LegS's
    assert np.max(np.abs(slot_transfer(init, c, omega) - hippo_transfer(N // 2, c, omega))) < 1e-4


# --- specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STUDY_NAMES)
@pytest.mark.parametrize("scale", SCALES)
def test_every_study_spec_validates_and_plans(name, scale):
    study = get_study(name)
    specs = study.specs(scale)
    assert specs, f"{name} has no spec at {scale}"
    for spec in specs.values():
        assert len(plan(spec)) == spec.n_trials() > 0
    assert [c.id for c in study.claims] and all(c.rule.text for c in study.claims)


def test_quick_scales_use_only_synthetic_or_small_tasks():
    from ssm.data import SYNTHETIC_TASKS

    for name in STUDY_NAMES:
        for spec in get_study(name).specs("quick").values():
            assert {t.name for t in spec.tasks} <= set(SYNTHETIC_TASKS)


# --- CLI -----------------------------------------------------------------------------------------


def test_study_list_and_show():
    from api.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["study", "list", "--json"])
    assert listed.exit_code == 0
    import json

    names = [s["name"] for s in json.loads(listed.stdout)]
    assert names == list(STUDY_NAMES)
    shown = runner.invoke(app, ["study", "show", "ptd", "--scale", "quick"])
    assert (
        shown.exit_code == 0 and "name: study-ptd-quick-hippo" in shown.stdout and "layer: s4" in shown.stdout
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["study", "run", "nope"], "unknown study 'nope'"),
        (["study", "show", "nope"], "unknown study 'nope'"),
        (["study", "run", "memory", "--scale", "huge"], "unknown scale 'huge'"),
    ],
)
def test_bad_study_name_or_scale_is_one_line_and_exit_2(args, needle):
    from api.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert needle in message and len(message.splitlines()) == 1


# --- one real study, end to end --------------------------------------------------------------------


def test_a_smoke_study_runs_end_to_end_and_a_second_run_reuses_every_trial(local_ray, tmp_path, monkeypatch):
    import json

    from api.cli import app
    from orchestrator.studies.claims import VERDICTS

    monkeypatch.setenv("SSMBENCH_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    db, out = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "report"
    args = ["study", "run", "state-size", "--scale", "smoke", "--db", db, "--out", str(out), "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    run = json.loads(first.stdout)
    summary = json.loads((out / "summary.json").read_text())
    study = get_study("state-size")
    assert [c["id"] for c in summary["claims"]] == [c.id for c in study.claims]
    assert all(c["verdict"] in VERDICTS for c in summary["claims"])
    assert summary["claims"] == run["claims"]
    assert summary["study"]["name"] == "state-size" and summary["study"]["scale"] == "smoke"
    page = (out / "index.html").read_text()
    assert all(f"{c.id}:" in page for c in study.claims)
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "state-size-steps-to-threshold.png" in figures and len(figures) >= 4
    # every configuration group of the sweep is in the summary with its seeds
    assert sum(g["n_seeds"] for g in summary["groups"]) == run["planned_trials"]

    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["reused_trials"] == again["planned_trials"] == run["planned_trials"]
    assert again["claims"] == run["claims"]  # the same results, the same verdicts

    from orchestrator.db import make_engine, session_factory
    from orchestrator.queries import study_runs_page

    with session_factory(make_engine(db))() as s:  # each run recorded for /studies, newest first
        recorded, total = study_runs_page(s)
    assert total == 2 and [r.study for r in recorded] == ["state-size", "state-size"]
    assert recorded[0].id > recorded[1].id and recorded[0].claims == again["claims"]
    assert recorded[1].sweeps == run["sweeps"] and recorded[1].scale == "smoke"
    assert recorded[1].created_at < recorded[1].finished_at <= recorded[0].created_at


def test_an_unwritable_out_is_one_line_and_exit_2(tmp_path):
    from api.cli import app

    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(
        app, ["study", "run", "state-size", "--scale", "smoke", "--out", str(blocker)]
    )
    assert result.exit_code == 2
    assert "is a file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_study_figure_holds_the_plotted_numbers():
    def trial(n, alpha, seed, steps):
        config = {
            "task": {"name": "linear-filter", "options": {"input_alpha": alpha}},
            "model": {"d_state": n},
            "seed": seed,
        }
        return TrialOutcome(
            "main", config, "completed", {"steps_to_threshold": steps, "step_losses": [1.0, 0.5, 0.1]}
        )

    results = StudyResults(
        [trial(2, 0.0, 0, 10), trial(2, 0.0, 1, 20), trial(8, 0.0, 0, 40), trial(8, 0.0, 1, None)]
    )
    figures = {f.name: f.figure for f in get_study("state-size").figures(results, "quick")}
    line = next(
        line
        for line in figures["state-size-steps-to-threshold"].axes[0].get_lines()
        if line.get_label().startswith("white input")
    )
    assert list(line.get_xdata()) == [2.0, 8.0]
    # N = 8: seed 1 never got there and counts as the 3 steps run + 1
    assert list(line.get_ydata()) == pytest.approx([15.0, (40.0 + 4.0) / 2])
    assert figures["state-size-steps-to-threshold"].axes[0].get_xscale() == "log"


def test_a_study_run_is_recorded_as_strict_json_and_a_rerun_adds_a_row(sessions):
    import numpy as np

    from orchestrator.db import transaction
    from orchestrator.models import utcnow
    from orchestrator.queries import study_runs_page
    from orchestrator.studies.records import record_study_run

    claims = [
        {"id": "a", "value": float("nan"), "ci": [float("-inf"), np.float64(2.5)], "n": np.int64(3)},
        {"id": "b", "value": 0.25, "ci": None, "n": 1, "verdict": "holds"},
    ]
    started = utcnow()
    for _ in range(2):
        with transaction(sessions) as s:
            record_study_run(s, "ptd", "quick", {"diagonal": 1, "hippo": 2}, claims, started)
    with sessions() as s:
        runs, total = study_runs_page(s, limit=1)
    assert total == 2 and len(runs) == 1 and runs[0].id == 2
    assert runs[0].claims == [
        {"id": "a", "value": None, "ci": [None, 2.5], "n": 3},
        {"id": "b", "value": 0.25, "ci": None, "n": 1, "verdict": "holds"},
    ]
    assert runs[0].sweeps == {"diagonal": 1, "hippo": 2} and runs[0].created_at == started
    assert runs[0].finished_at >= started
