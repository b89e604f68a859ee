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
        "trial_diagnostics",
        "trial_diagnostic_arrays",
    } <= tables
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Baseline)) == 72  # 0002's 43, then 0005
        s5 = s.scalar(select(Baseline).where(Baseline.model == "S5", Baseline.task == "pathx"))
        assert s5.test_accuracy == 98.58 and "Smith" in s5.source
        failed = s.scalar(select(Baseline).where(Baseline.model == "Transformer", Baseline.task == "pathx"))
        assert failed.test_accuracy is None


def test_an_unmigrated_database_is_refused_with_the_fix(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DatabaseNotMigrated, match="ssmbench db upgrade"):
        require_migrated(engine)
    assert head_revision() == "0007"


def test_0004_keeps_revoked_tokens_revoked_both_ways(db_url, engine):
    from alembic import command
    from sqlalchemy import text

    from orchestrator.db import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0003")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_tokens (name, token_hash, created_at, revoked) VALUES "
                "('old', 'h1', CURRENT_TIMESTAMP, true), ('live', 'h2', CURRENT_TIMESTAMP, false)"
            )
        )
    upgrade(db_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT name, role, revoked_at, expires_at FROM api_tokens ORDER BY name")
        )
        assert [(name, role, revoked is not None, expires) for name, role, revoked, expires in rows] == [
            ("live", "user", False, None),
            ("old", "user", True, None),
        ]
    command.downgrade(alembic_config(db_url), "0003")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT name, revoked FROM api_tokens ORDER BY name")).all()
        assert [(name, bool(revoked)) for name, revoked in rows] == [("live", False), ("old", True)]
    upgrade(db_url)
