"""The leaderboard against numbers computed here with `statistics`, on SQLite and PostgreSQL.

Rows are written with the ORM as the result writer would, each followed by
`record_result_aggregate` in the same transaction.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import statistics

import pytest
from alembic import command
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import insert, select

from orchestrator.db import alembic_config
from orchestrator.leaderboard import (
    LRA_TASKS,
    AverageRow,
    Leaderboard,
    LeaderboardFilters,
    LeaderboardRow,
    leaderboard,
    rebuild_leaderboard_aggregates,
    record_result_aggregate,
)
from orchestrator.models import LeaderboardCell, Result, Sweep, Trial

MODEL = {
    "layer": "s4d",
    "init": "inv",
    "reparam": "exp",
    "reparam_a": 1.0,
    "reparam_b": 0.5,
    "train_eigenvalues": True,
    "d_model": 32,
    "d_state": 16,
    "n_layers": 2,
}
OPTIM = {"lr": 0.003, "epochs": 3, "batch_size": 32}
_numbers = itertools.count()


def add_sweep(s) -> int:
    # naming only columns of the first schema: the migration test writes at an older revision
    statement = insert(Sweep).values(name=f"sweep-{next(_numbers)}", state="completed", spec={})
    return s.scalar(statement.returning(Sweep.id))


def add_trial(
    s,
    sweep_id: int,
    task: str,
    test_metric: float | None,
    *,
    seed: int | None = None,
    state: str = "completed",
    result_status: str | None = None,
    metric: str = "accuracy",
    reused_from: int | None = None,
    record: bool = True,
    key: str | None = None,
    **fields,
) -> Trial:
    """A trial of the group MODEL/OPTIM with `fields` changed (lr, epochs, batch_size go to optim), and
    its result when `test_metric` is given."""
    model = {**MODEL, **{k: v for k, v in fields.items() if k not in OPTIM}}
    optim = {**OPTIM, **{k: v for k, v in fields.items() if k in OPTIM}}
    seed = next(_numbers) if seed is None else seed
    config = {"task": {"name": task, "options": {}}, "model": model, "optim": optim, "seed": seed}
    trial = Trial(
        sweep_id=sweep_id,
        number=next(_numbers),
        state=state,
        attempt=1,
        config=config,
        config_hash=hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        group_key=key or group_key(**fields),
        task=task,
        layer=model["layer"],
        init=model["init"],
        reparam=model["reparam"],
        train_eigenvalues=model["train_eigenvalues"],
        seed=seed,
        resources={},
        reused_from=reused_from,
    )
    s.add(trial)
    s.flush()
    if test_metric is not None:
        status = result_status or ("pruned" if state == "pruned" else "completed")
        s.add(
            Result(
                trial_id=trial.id,
                attempt=1,
                status=status,
                metric=metric,
                best_epoch=2,
                val_metric=test_metric,
                test_metric=test_metric,
                payload={},
            )
        )
        s.flush()
    if record:
        record_result_aggregate(s, trial.id)
    return trial


def group_key(**fields) -> str:
    model = {**MODEL, **{k: v for k, v in fields.items() if k not in OPTIM}}
    optim = {**OPTIM, **{k: v for k, v in fields.items() if k in OPTIM}}
    return hashlib.sha256(json.dumps({"model": model, "optim": optim}, sort_keys=True).encode()).hexdigest()


def ours(board: Leaderboard, task: str | None = None) -> list:
    return [r for r in board.rows if not r.is_baseline and (task is None or r.task == task)]


def row_of(board: Leaderboard, task: str, **fields):
    (row,) = [r for r in ours(board, task) if r.group_key == group_key(**fields)]
    return row


def average_of(board: Leaderboard, **fields):
    (average,) = [a for a in board.averages if a.group_key == group_key(**fields)]
    return average


def test_mean_std_and_seed_count_per_task_and_group(sessions):
    a, lin, synthetic = [0.81, 0.84, 0.86], [0.7], [0.42, 0.47, 0.40, 0.45]
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        for x in a:
            add_trial(s, sweep, "listops", x)
        add_trial(s, sweep, "listops", lin[0], init="lin")
        for x in synthetic:
            add_trial(s, sweep, "memory-poly", x, metric="r2")
        board = leaderboard(s)

    row = row_of(board, "listops")
    assert row.mean == pytest.approx(statistics.mean(a), abs=1e-12)
    assert row.std == pytest.approx(statistics.stdev(a), abs=1e-9)
    assert (row.n_seeds, row.rank, row.metric, row.sweep_ids) == (3, 1, "accuracy", [sweep])
    assert (row.layer, row.init, row.reparam, row.train_eigenvalues) == ("s4d", "inv", "exp", True)
    single = row_of(board, "listops", init="lin")
    assert (single.mean, single.std, single.n_seeds, single.rank) == (pytest.approx(0.7), None, 1, 2)
    regression = row_of(board, "memory-poly")
    assert regression.metric == "r2" and regression.rank == 1
    assert regression.mean == pytest.approx(statistics.mean(synthetic), abs=1e-12)
    assert regression.std == pytest.approx(statistics.stdev(synthetic), abs=1e-9)
    # LRA tasks first, in their published order; our rows before the task's baselines
    assert [r.task for r in board.rows if not r.is_baseline] == ["listops", "listops", "memory-poly"]
    listops = [r for r in board.rows if r.task == "listops"]
    assert [r.is_baseline for r in listops] == sorted(r.is_baseline for r in listops)


def test_ranks_are_per_task_and_ties_share_a_rank(sessions):
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        for x in [0.95, 0.93]:
            add_trial(s, sweep, "text", x, init="legs")
        for x in [0.80, 0.90, 0.70]:  # mean 0.8
            add_trial(s, sweep, "text", x, init="inv")
        for x in [0.70, 0.80, 0.90]:  # the same numbers in another order: a tie
            add_trial(s, sweep, "text", x, init="lin")
        add_trial(s, sweep, "text", 0.5, init="real")
        add_trial(s, sweep, "image", 0.6, init="real")
        add_trial(s, sweep, "image", 0.4, init="legs")
        board = leaderboard(s)

    ranks = {(r.task, r.init): r.rank for r in ours(board)}
    assert ranks == {
        ("text", "legs"): 1,
        ("text", "inv"): 2,
        ("text", "lin"): 2,
        ("text", "real"): 4,
        ("image", "real"): 1,
        ("image", "legs"): 2,
    }
    assert [r.rank for r in ours(board, "text")] == [1, 2, 2, 4]


def test_only_completed_trials_with_a_completed_result_count(sessions):
    kept = [0.81, 0.79]
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        for x in kept:
            add_trial(s, sweep, "listops", x)
        pruned = add_trial(s, sweep, "listops", 0.99, state="pruned")
        add_trial(s, sweep, "listops", None, state="failed")
        add_trial(s, sweep, "listops", None, state="diverged")
        add_trial(s, sweep, "listops", None, state="cancelled")
        running = add_trial(s, sweep, "listops", 0.98, state="running")
        add_trial(s, sweep, "listops", 0.97, result_status="pruned")
        add_trial(s, sweep, "listops", None)  # completed but no result (yet)
        add_trial(s, sweep, "text", 0.99, state="pruned")  # a task with nothing that counts
        assert not record_result_aggregate(s, pruned.id)
        assert not record_result_aggregate(s, running.id)
        board = leaderboard(s)
        by_sweep = leaderboard(s, sweep_id=sweep)

    for b in (board, by_sweep):
        assert len(ours(b)) == 1
        row = row_of(b, "listops")
        assert row.n_seeds == 2
        assert row.mean == pytest.approx(statistics.mean(kept), abs=1e-12)
        assert row.std == pytest.approx(statistics.stdev(kept), abs=1e-9)


def test_filters_by_sweep_task_layer_init_reparam_and_training_mode(sessions):
    first, second = [0.70, 0.72, 0.75], [0.80, 0.83]
    with sessions() as s, s.begin():
        one, two, empty = add_sweep(s), add_sweep(s), add_sweep(s)
        for x in first:
            add_trial(s, one, "listops", x)
        for x in [0.61, 0.64]:
            add_trial(s, one, "listops", x, init="lin", reparam="best", train_eigenvalues=False)
        for x in second:
            add_trial(s, two, "listops", x)
        for x in [0.9, 0.95]:
            add_trial(s, two, "delay", x, layer="s5", init="legs", reparam="softplus")

        def groups(**filters) -> set[tuple[str, str]]:
            return {(r.task, r.layer + "/" + r.init) for r in ours(leaderboard(s, **filters))}

        assert groups() == {("listops", "s4d/inv"), ("listops", "s4d/lin"), ("delay", "s5/legs")}
        assert groups(sweep_id=one) == {("listops", "s4d/inv"), ("listops", "s4d/lin")}
        assert groups(sweep_id=empty) == set()
        assert groups(task="delay") == {("delay", "s5/legs")}
        assert groups(layer="s5") == {("delay", "s5/legs")}
        assert groups(init="lin") == {("listops", "s4d/lin")}
        assert groups(reparam="best") == {("listops", "s4d/lin")}
        assert groups(reparam="exp") == {("listops", "s4d/inv")}
        assert groups(train_eigenvalues=False) == {("listops", "s4d/lin")}
        assert groups(train_eigenvalues=True) == {("listops", "s4d/inv"), ("delay", "s5/legs")}
        assert groups(sweep_id=two, layer="s4d") == {("listops", "s4d/inv")}
        assert groups(sweep_id=one, task="delay") == set()
        assert groups(task="listops", init="inv", reparam="exp", train_eigenvalues=True, layer="s4d") == {
            ("listops", "s4d/inv")
        }

        pooled = row_of(leaderboard(s), "listops")
        only_one = row_of(leaderboard(s, sweep_id=one), "listops")
        only_two = row_of(leaderboard(s, sweep_id=two, task="listops"), "listops")
        filters = leaderboard(s, sweep_id=two, train_eigenvalues=False).filters

    assert (pooled.n_seeds, pooled.sweep_ids) == (5, [one, two])
    assert pooled.mean == pytest.approx(statistics.mean(first + second), abs=1e-12)
    assert pooled.std == pytest.approx(statistics.stdev(first + second), abs=1e-9)
    assert (only_one.n_seeds, only_one.sweep_ids) == (3, [one])
    assert only_one.mean == pytest.approx(statistics.mean(first), abs=1e-12)
    assert only_one.std == pytest.approx(statistics.stdev(first), abs=1e-9)
    assert (only_two.n_seeds, only_two.sweep_ids) == (2, [two])
    assert only_two.std == pytest.approx(statistics.stdev(second), abs=1e-9)
    assert filters.sweep_id == two and filters.train_eigenvalues is False and filters.task is None


def test_lra_averages_with_and_without_pathx(sessions):
    six = {t: [0.5 + 0.05 * i, 0.52 + 0.05 * i] for i, t in enumerate(LRA_TASKS)}
    five = {t: [0.6 + 0.03 * i] for i, t in enumerate(LRA_TASKS) if t != "pathx"}
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        for task, values in six.items():
            for x in values:
                add_trial(s, sweep, task, x)
        for task, values in five.items():
            add_trial(s, sweep, task, values[0], init="lin")
        add_trial(s, sweep, "listops", 0.4, init="real")
        add_trial(s, sweep, "delay", 0.99, init="real")
        add_trial(s, sweep, "delay", 0.98, init="rand")  # no LRA task: no average
        board = leaderboard(s)
        listops_only = leaderboard(s, task="listops")
        sweep_and_task = leaderboard(s, sweep_id=sweep, task="listops")
        frozen = leaderboard(s, train_eigenvalues=False)

    task_means = {t: statistics.mean(v) for t, v in six.items()}
    complete = average_of(board)
    assert complete.lra_average == pytest.approx(statistics.mean(task_means.values()), abs=1e-12)
    assert complete.lra_average_without_pathx == pytest.approx(
        statistics.mean(m for t, m in task_means.items() if t != "pathx"), abs=1e-12
    )
    assert complete.tasks_present == list(LRA_TASKS)
    assert complete.label == row_of(board, "listops").label and not complete.is_baseline

    no_pathx = average_of(board, init="lin")
    assert no_pathx.lra_average is None  # five tasks: no six-task average
    assert no_pathx.lra_average_without_pathx == pytest.approx(statistics.mean(v[0] for v in five.values()))
    assert no_pathx.tasks_present == [t for t in LRA_TASKS if t != "pathx"]

    partial = average_of(board, init="real")
    assert (partial.lra_average, partial.lra_average_without_pathx, partial.tasks_present) == (
        None,
        None,
        ["listops"],
    )
    assert all(a.group_key != group_key(init="rand") for a in board.averages)
    ours_first = [a.is_baseline for a in board.averages]
    assert ours_first == sorted(ours_first)
    assert [a.group_key for a in board.averages[:3]] == [
        group_key(),
        group_key(init="lin"),
        group_key(init="real"),
    ]

    # a task filter picks the rows; the averages of those groups are still over all their LRA tasks
    assert {r.task for r in ours(listops_only)} == {"listops"}
    assert average_of(listops_only).lra_average == pytest.approx(complete.lra_average, abs=1e-12)
    assert average_of(sweep_and_task).lra_average == pytest.approx(complete.lra_average, abs=1e-12)
    assert average_of(sweep_and_task, init="lin").tasks_present == no_pathx.tasks_present
    assert [a for a in frozen.averages if not a.is_baseline] == []


def test_published_baselines_rows_and_averages(sessions):
    with sessions() as s, s.begin():
        empty = leaderboard(s)
        sweep = add_sweep(s)
        add_trial(s, sweep, "delay", 0.9)
        synthetic_only = leaderboard(s)
        add_trial(s, sweep, "listops", 0.58)
        board = leaderboard(s)
        pathx_only = leaderboard(s, task="pathx")
        none = leaderboard(s, include_baselines=False)

    # a fresh database shows the whole published table, and every baseline average
    assert {r.task for r in empty.rows} == set(LRA_TASKS)
    assert all(r.is_baseline for r in empty.rows)
    transformer_pathx = [r for r in empty.rows if r.task == "pathx" and r.label == "Transformer"]
    assert [r.mean for r in transformer_pathx] == [None]  # failed: chance
    assert synthetic_only.rows == ours(synthetic_only) and synthetic_only.averages == []

    baselines = [r for r in board.rows if r.is_baseline]
    assert {r.task for r in baselines} == {"listops"}
    assert [r.label for r in baselines] == [
        "Liquid-S4",
        "S5",
        "S4D-Lin",
        "S4D-LegS",
        "S4D-Inv",
        "S4-LegS",
        "S4 (v1)",
        "S4-FouT",
        "DSS",
        "Transformer",
    ]
    s5 = baselines[1]
    assert s5.mean == pytest.approx(0.6215) and "Smith" in s5.source
    assert (s5.std, s5.n_seeds, s5.rank, s5.group_key, s5.metric) == (None, None, None, None, "accuracy")
    assert [r.is_baseline for r in board.rows if r.task == "listops"] == [False] + [True] * 10
    assert {r.task for r in pathx_only.rows} == {"pathx"}
    assert [r.label for r in pathx_only.rows] == [
        "S5",
        "Liquid-S4",
        "S4-LegS",
        "S4D-Inv",
        "S4D-LegS",
        "S4 (v1)",
        "DSS",
        "S4-FouT",
        "S4D-Lin",
        "Transformer",
    ]
    assert [r.mean for r in pathx_only.rows][-3:] == [None, None, None]  # failed Path-X last
    assert none.rows == ours(none) and none.averages == [a for a in none.averages if not a.is_baseline]
    assert all(not r.is_baseline for r in none.rows)

    averages = {a.label: a for a in board.averages if a.is_baseline}
    assert set(averages) == {
        "Transformer",
        "S4-LegS",
        "S4-FouT",
        "S4D-LegS",
        "S4D-Inv",
        "S4D-Lin",
        "S4 (v1)",
        "DSS",
        "S5",
        "Liquid-S4",
        "S5-PTD",
    }
    lin = averages["S4D-Lin"]
    lin_tasks = [60.52, 86.97, 90.96, 87.93, 93.96]
    assert lin.lra_average == pytest.approx(0.7839)  # the paper's average, Path-X counted as 50%
    assert lin.lra_average == pytest.approx(statistics.mean([*lin_tasks, 50.0]) / 100, abs=5e-5)
    assert lin.lra_average_without_pathx == pytest.approx(statistics.mean(lin_tasks) / 100)
    assert lin.tasks_present == list(LRA_TASKS) and "Gu" in lin.source
    transformer = averages["Transformer"]
    assert transformer.lra_average == pytest.approx(0.5366)  # six tasks, the failed Path-X as 50%
    assert transformer.lra_average_without_pathx == pytest.approx(0.5439)  # the LRA paper's own
    assert transformer.lra_average_without_pathx == pytest.approx(
        statistics.mean([36.37, 64.27, 57.46, 42.44, 71.40]) / 100, abs=5e-5
    )
    assert "Tay" in transformer.source and "50%" in transformer.source
    assert averages["S5"].lra_average == pytest.approx(0.8746)
    ptd = averages["S5-PTD"]
    assert (ptd.lra_average, ptd.lra_average_without_pathx, ptd.tasks_present) == (
        pytest.approx(0.876),
        None,
        [],
    )
    order = [a.lra_average for a in board.averages if a.is_baseline]
    assert order == sorted(order, reverse=True)


def test_labels_name_what_differs_and_are_unique(sessions):
    variants = [
        {},
        {"d_state": 64},
        {"lr": 0.001},
        {"reparam": "best", "reparam_a": 2.0, "train_eigenvalues": False},
        {"reparam": "best", "reparam_a": 0.25, "train_eigenvalues": False},
        {"reparam_a": 3.0},  # a differs but means nothing to exp: still told apart
        {"layer": "s5", "init": "legs", "d_state": 64},
    ]
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        for i, fields in enumerate(variants):
            for task in ("listops", "text"):
                add_trial(s, sweep, task, 0.5 + 0.01 * i, **fields)
        board = leaderboard(s)
        s5_only = leaderboard(s, layer="s5")
        # two groups whose stored configs do not tell them apart (a config written by another version)
        add_trial(s, sweep, "image", 0.5, init="real", key="a" * 64)
        add_trial(s, sweep, "image", 0.6, init="real", key="b" * 64)
        twins = leaderboard(s, task="image")

    labels = {r.group_key: r.label for r in ours(board, "listops")}
    assert len(set(labels.values())) == len(variants)
    assert labels == {r.group_key: r.label for r in ours(board, "text")}  # one label per group
    assert labels[group_key()] == "s4d · inv · exp · trained · reparam_a=1 · d_state=16 · lr=3e-3"
    assert labels[group_key(d_state=64)] == "s4d · inv · exp · trained · reparam_a=1 · d_state=64 · lr=3e-3"
    assert labels[group_key(reparam="best", reparam_a=2.0, train_eigenvalues=False)] == (
        "s4d · inv · best(a=2,b=0.5) · frozen · d_state=16 · lr=3e-3"
    )
    assert labels[group_key(reparam="best", reparam_a=0.25, train_eigenvalues=False)].startswith(
        "s4d · inv · best(a=0.25,b=0.5) · frozen"
    )
    assert labels[group_key(layer="s5", init="legs", d_state=64)] == (
        "s5 · legs · exp · trained · reparam_a=1 · d_state=64 · lr=3e-3"
    )
    assert {a.label for a in board.averages if not a.is_baseline} == set(labels.values())
    assert [r.label for r in ours(twins)] == [
        "s4d · real · exp · trained · bbbbbbbb",
        "s4d · real · exp · trained · aaaaaaaa",
    ]
    # a field is named only where it differs among the groups shown
    assert [r.label for r in ours(s5_only)] == ["s5 · legs · exp · trained"] * 2


def test_recording_is_idempotent_and_a_rebuild_gives_the_same_board(sessions):
    values = [0.61, 0.66, 0.64]
    with sessions() as s, s.begin():
        sweep, later = add_sweep(s), add_sweep(s)
        trials = [add_trial(s, sweep, "image", x, seed=i) for i, x in enumerate(values)]
        add_trial(s, sweep, "image", 0.7, init="lin", record=False)  # a writer that did not record
        assert not record_result_aggregate(s, trials[0].id)  # recorded already
        assert not record_result_aggregate(s, 10**9)  # no such trial
        # a later sweep reuses the result of seed 0: a completed trial with a copy of the result
        reused = add_trial(s, later, "image", values[0], seed=0, reused_from=trials[0].id)
        assert not record_result_aggregate(s, reused.id)
        board = leaderboard(s)
        later_board = leaderboard(s, sweep_id=later)
        assert rebuild_leaderboard_aggregates(s) == 5
        rebuilt = leaderboard(s)

    row = row_of(board, "image")
    assert row.n_seeds == 3  # the reused copy is not a fourth seed
    assert row.mean == pytest.approx(statistics.mean(values), abs=1e-12)
    assert row.std == pytest.approx(statistics.stdev(values), abs=1e-9)
    assert row.sweep_ids == [sweep, later]
    assert [(r.n_seeds, r.mean) for r in ours(later_board)] == [(1, pytest.approx(values[0]))]
    assert all(r.init == "inv" for r in ours(board))  # the unrecorded trial is not on the board...
    assert {r.init for r in ours(rebuilt)} == {"inv", "lin"}  # ...until a rebuild counts it
    again = row_of(rebuilt, "image")
    assert (again.n_seeds, again.sweep_ids, again.label) == (row.n_seeds, row.sweep_ids, row.label)
    assert (again.mean, again.std) == (pytest.approx(row.mean, abs=1e-12), pytest.approx(row.std, abs=1e-9))


def test_the_migration_counts_results_stored_before_it(db_url, sessions):
    config = alembic_config(db_url)
    command.downgrade(config, "0002")
    values = [0.71, 0.75]
    with sessions() as s, s.begin():
        sweep, later = add_sweep(s), add_sweep(s)
        originals = [add_trial(s, sweep, "text", x, record=False) for x in values]
        add_trial(s, sweep, "text", 0.99, state="pruned", record=False)
        add_trial(s, later, "text", values[0], reused_from=originals[0].id, record=False)
    command.upgrade(config, "head")
    with sessions() as s, s.begin():
        (cell,) = s.scalars(select(LeaderboardCell)).all()
        row = row_of(leaderboard(s), "text")
    assert (cell.n, cell.metric, cell.train_eigenvalues) == (2, "accuracy", True)
    assert (row.n_seeds, row.sweep_ids) == (2, [sweep, later])
    assert row.mean == pytest.approx(statistics.mean(values), abs=1e-12)
    assert row.std == pytest.approx(statistics.stdev(values), abs=1e-9)


def test_the_board_is_json(sessions):
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        add_trial(s, sweep, "pathfinder", 0.9)
        add_trial(s, sweep, "pathfinder", 0.8)
        board = leaderboard(s, task="pathfinder")
    document = json.loads(json.dumps(board.to_dict()))
    assert set(document) == {"rows", "averages", "filters", "total_rows", "offset", "limit"}
    assert (document["total_rows"], document["offset"], document["limit"]) == (len(board.rows), 0, None)
    first = document["rows"][0]
    assert first["task"] == "pathfinder" and first["n_seeds"] == 2 and first["sweep_ids"] == [sweep]
    assert first["is_baseline"] is False and first["source"] is None
    assert document["filters"]["task"] == "pathfinder"
    assert any(a["label"] == "S4D-Lin" for a in document["averages"])
    # as a FastAPI response model would serialize it
    assert json.loads(TypeAdapter(Leaderboard).dump_json(board)) == document


def test_pages_of_rows_make_up_the_whole_board(sessions):
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        for i, task in enumerate(LRA_TASKS):
            for init in ("inv", "lin", "legs"):
                add_trial(s, sweep, task, 0.5 + 0.01 * i, init=init)
        whole = leaderboard(s)
        pages = [leaderboard(s, offset=offset, limit=7) for offset in range(0, whole.total_rows + 7, 7)]
        with pytest.raises(ValueError, match="offset"):
            leaderboard(s, offset=-1)
        with pytest.raises(TypeError, match="no filter tsak"):  # a misspelt filter is not ignored
            leaderboard(s, tsak="listops")

    assert whole.total_rows == len(whole.rows) == 6 * 3 + 6 * 10  # 6 tasks × (3 groups + 10 baselines)
    assert [row for page in pages for row in page.rows] == whole.rows
    assert [len(page.rows) for page in pages] == [7] * 11 + [1, 0]
    for number, page in enumerate(pages):
        assert (page.total_rows, page.offset, page.limit) == (whole.total_rows, 7 * number, 7)
        assert page.averages == whole.averages and page.filters == whole.filters


def test_numbers_that_are_not_finite_are_null_and_unranked(sessions):
    """A degenerate regression (r² of −inf) must not break the board: JSON has no NaN or infinity."""
    with sessions() as s, s.begin():
        sweep = add_sweep(s)
        add_trial(s, sweep, "memory-poly", float("-inf"), metric="r2")  # one seed, mean −inf
        for x in [0.5, float("-inf")]:  # two seeds: mean −inf, variance inf − inf
            add_trial(s, sweep, "memory-poly", x, metric="r2", d_state=8)
        for x in [0.5, 0.7]:
            add_trial(s, sweep, "memory-poly", x, metric="r2", d_state=64)
        board = leaderboard(s, include_baselines=False)
        by_sweep = leaderboard(s, sweep_id=sweep, include_baselines=False)

    for b in (board, by_sweep):
        best, *degenerate = ours(b)
        assert (best.group_key, best.rank, best.n_seeds) == (group_key(d_state=64), 1, 2)
        assert best.mean == pytest.approx(0.6) and best.std == pytest.approx(statistics.stdev([0.5, 0.7]))
        assert {r.group_key for r in degenerate} == {group_key(), group_key(d_state=8)}
        assert [(r.mean, r.std, r.rank) for r in degenerate] == [(None, None, None)] * 2
        document = json.dumps(b.to_dict(), allow_nan=False)  # raises on NaN or infinity
        assert Leaderboard.model_validate_json(document) == b  # what the client decodes


def test_the_models_turn_nan_and_infinity_into_null():
    fields = dict(task="delay", label="x", n_seeds=1, rank=1, metric="r2", group_key="k")
    fields |= dict(layer="s4d", init="inv", reparam="exp", train_eigenvalues=True)
    row = LeaderboardRow(**fields, mean=float("inf"), std=float("nan"), sweep_ids=",7,3,")
    assert (row.mean, row.std, row.sweep_ids) == (None, None, [3, 7])
    average = AverageRow(
        label="x", lra_average=float("nan"), lra_average_without_pathx=-math.inf, tasks_present=[]
    )
    assert (average.lra_average, average.lra_average_without_pathx) == (None, None)
    board = Leaderboard(
        rows=[row], averages=[average], filters=LeaderboardFilters(task="delay"), total_rows=1
    )
    document = json.loads(board.model_dump_json())
    assert document["rows"][0]["std"] is None and document["averages"][0]["lra_average"] is None
    assert document == board.to_dict() and document["filters"]["task"] == "delay"
    with pytest.raises(ValidationError):  # frozen
        row.rank = 2


def test_lra_tasks_are_the_data_package_s():
    from ssm.data import LRA_TASKS as DATA_LRA_TASKS

    assert LRA_TASKS == DATA_LRA_TASKS
