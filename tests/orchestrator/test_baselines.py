"""The published baselines after migration 0005 are REFERENCE.md §7's, their averages agree with their
per-task numbers, the leaderboard shows them, and the downgrade gives back 0002's rows."""

from __future__ import annotations

import importlib
import re
import statistics

import pytest
from alembic import command
from sqlalchemy import select

from orchestrator.db import alembic_config
from orchestrator.leaderboard import leaderboard
from orchestrator.models import Baseline

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
# REFERENCE.md §7, typed by hand: ListOps, Text, Retrieval, Image, Pathfinder, Path-X, then the
# six-task average; None where the paper reports a failure (chance).
REFERENCE = {
    "Transformer": (36.37, 64.27, 57.46, 42.44, 71.40, None, 53.66),
    "S4-LegS": (59.60, 86.82, 90.90, 88.65, 94.20, 96.35, 86.09),
    "S4-FouT": (57.88, 86.34, 89.66, 89.07, 94.46, None, 77.90),
    "S4D-LegS": (60.47, 86.18, 89.46, 88.19, 93.06, 91.95, 84.89),
    "S4D-Inv": (60.18, 87.34, 91.09, 87.83, 93.78, 92.80, 85.50),
    "S4D-Lin": (60.52, 86.97, 90.96, 87.93, 93.96, None, 78.39),
    "S4 (v1)": (58.35, 76.02, 87.09, 87.26, 86.05, 88.10, 80.48),
    "DSS": (57.6, 76.6, 87.6, 85.8, 84.1, 85.0, 79.45),
    "S5": (62.15, 89.31, 91.40, 88.00, 95.33, 98.58, 87.46),
    "Liquid-S4": (62.75, 89.02, 91.20, 89.50, 94.8, 96.66, 87.32),
}
AVERAGE_ONLY = {"S5-PTD": 87.6}  # per-task numbers not verified (REFERENCE.md §7)
FIVE_TASK_AVERAGES = {"Transformer": 54.39}  # the LRA paper's own average, without Path-X
AUTHORS = {
    "Transformer": "Tay",
    "S4-LegS": "Gu, Gupta",
    "S4-FouT": "Gu, Gupta",
    "S4D-LegS": "Gu, Gupta",
    "S4D-Inv": "Gu, Gupta",
    "S4D-Lin": "Gu, Gupta",
    "S4 (v1)": "Gu, Goel",
    "DSS": "Gupta",
    "S5": "Smith",
    "Liquid-S4": "Hasani",
    "S5-PTD": "Yu",
}
CHANCE = 50.0  # a failed task counts as chance in a six-task average (REFERENCE.md §7)


def expected_rows() -> dict[tuple[str, str], float | None]:
    rows = {}
    for model, numbers in REFERENCE.items():
        rows |= {(model, task): value for task, value in zip((*TASKS, "average"), numbers, strict=True)}
    rows |= {(model, "average"): value for model, value in AVERAGE_ONLY.items()}
    rows |= {(model, "average_without_pathx"): value for model, value in FIVE_TASK_AVERAGES.items()}
    return rows


def stored(sessions) -> dict[tuple[str, str], tuple[float | None, str]]:
    with sessions() as s:
        return {(b.model, b.task): (b.test_accuracy, b.source) for b in s.scalars(select(Baseline))}


def test_the_rows_are_reference_md_s_and_each_source_names_paper_and_table(sessions):
    rows = stored(sessions)
    assert {key: accuracy for key, (accuracy, _) in rows.items()} == expected_rows()
    for (model, task), (_, source) in rows.items():
        assert AUTHORS[model] in source, (model, task, source)
        assert re.search(r"Table \d|abstract", source), (model, task, source)
    assert "50%" in rows["Transformer", "average"][1]  # the six-task average, labelled as such
    assert "five tasks" in rows["Transformer", "average_without_pathx"][1]


@pytest.mark.parametrize("model", REFERENCE)
def test_each_published_average_agrees_with_its_tasks(model):
    *tasks, average = REFERENCE[model]
    six = statistics.mean(CHANCE if value is None else value for value in tasks)
    assert abs(six - average) <= 0.005 + 1e-9  # printed with two decimals
    if model in FIVE_TASK_AVERAGES:
        assert abs(statistics.mean(tasks[:5]) - FIVE_TASK_AVERAGES[model]) <= 0.005 + 1e-9


def test_the_leaderboard_shows_the_published_averages(sessions):
    with sessions() as s:
        averages = {a.label: a for a in leaderboard(s).averages if a.is_baseline}
    assert set(averages) == set(REFERENCE) | set(AVERAGE_ONLY)
    for model, (*tasks, average) in REFERENCE.items():
        five = FIVE_TASK_AVERAGES.get(model)
        if five is None and None not in tasks[:5]:
            five = statistics.mean(tasks[:5])
        assert averages[model].lra_average == pytest.approx(average / 100, abs=1e-12)
        assert averages[model].lra_average_without_pathx == pytest.approx(five / 100, abs=1e-12)
        assert averages[model].tasks_present == list(TASKS)
    ptd = averages["S5-PTD"]
    assert (ptd.lra_average, ptd.lra_average_without_pathx, ptd.tasks_present) == (
        pytest.approx(0.876),
        None,
        [],
    )


def test_the_downgrade_restores_0002_s_rows_and_keeps_rows_added_by_hand(db_url, sessions):
    seed = importlib.import_module("migrations.versions.0002_seed_baselines")
    seeded_by_0002 = {
        (model, task): (accuracy, source)
        for model, accuracies, source in seed.PUBLISHED
        for task, accuracy in zip(seed.TASKS, accuracies, strict=True)
        if model != "S5-PTD" or task == "average"
    }
    with sessions() as s, s.begin():
        s.add(Baseline(model="Mega", task="listops", test_accuracy=63.14, source="added by hand"))
    upgraded = stored(sessions)
    config = alembic_config(db_url)

    command.downgrade(config, "0004")  # to just before 0005, whatever came after it
    assert stored(sessions) == {**seeded_by_0002, ("Mega", "listops"): (63.14, "added by hand")}
    command.upgrade(config, "head")
    assert stored(sessions) == upgraded
