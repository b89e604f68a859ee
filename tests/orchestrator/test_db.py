"""Migrations and the refusal to run on an unmigrated database."""

import pytest
from sqlalchemy import func, inspect, select

from orchestrator.db import DatabaseNotMigrated, head_revision, make_engine, require_migrated
from orchestrator.models import Baseline


def test_upgrade_creates_every_table_and_seeds_baselines(engine, sessions):
    require_migrated(engine)
    tables = set(inspect(engine).get_table_names())
    assert {
        "sweeps",
        "trials",
        "epoch_metrics",
        "results",
        "baselines",
        "api_tokens",
        "scheduler_lease",
    } <= tables
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Baseline)) == 43
        s5 = s.scalar(select(Baseline).where(Baseline.model == "S5", Baseline.task == "pathx"))
        assert s5.test_accuracy == 98.58 and "Smith" in s5.source
        failed = s.scalar(select(Baseline).where(Baseline.model == "Transformer", Baseline.task == "pathx"))
        assert failed.test_accuracy is None


def test_an_unmigrated_database_is_refused_with_the_fix(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DatabaseNotMigrated, match="ssmbench db upgrade"):
        require_migrated(engine)
    assert head_revision() == "0006"
