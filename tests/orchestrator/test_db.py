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
        "study_runs",
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
    assert head_revision() == "0009"


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


def test_times_read_back_as_the_same_instant_in_utc(sessions):
    """SQLite keeps no zone: what goes in is stored as UTC and comes back timezone-aware."""
    from datetime import UTC, datetime, timedelta, timezone

    from orchestrator.db import transaction
    from orchestrator.models import Sweep

    in_paris = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    naive_utc = datetime(2026, 1, 2, 8, 30)
    with transaction(sessions) as s:
        s.add(Sweep(name="t", spec={}, created_at=in_paris, finished_at=naive_utc))
    with sessions() as s:
        sweep = s.scalar(select(Sweep))
        assert sweep.created_at == datetime(2026, 1, 1, 11, 0, tzinfo=UTC) and sweep.created_at.tzinfo == UTC
        assert sweep.finished_at == datetime(2026, 1, 2, 8, 30, tzinfo=UTC)


def test_0008_goes_down_and_up_again(db_url, engine, sessions):
    from alembic import command
    from sqlalchemy import text

    from orchestrator.db import alembic_config, transaction, upgrade
    from orchestrator.models import utcnow
    from orchestrator.studies.records import record_study_run

    with transaction(sessions) as s:
        record_study_run(s, "memory", "smoke", {"short-memory": 1}, [{"id": "c", "value": 0.5}], utcnow())
    command.downgrade(alembic_config(db_url), "0007")
    assert "study_runs" not in inspect(engine).get_table_names()
    upgrade(db_url)
    with engine.connect() as connection:  # an empty table again, ids from 1
        assert connection.execute(text("SELECT count(*) FROM study_runs")).scalar() == 0
    with transaction(sessions) as s:
        assert record_study_run(s, "ptd", "quick", {}, [], utcnow()).id == 1


def test_0009_indexes_go_down_and_up_again(db_url, engine):
    from alembic import command

    from orchestrator.db import alembic_config, upgrade

    def trial_indexes() -> dict[str, list[str]]:
        return {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("trials")}

    added = {"ix_trials_sweep_state": ["sweep_id", "state"], "ix_trials_sweep_number": ["sweep_id", "number"]}
    assert added.items() <= trial_indexes().items()
    command.downgrade(alembic_config(db_url), "0008")
    assert not added.keys() & trial_indexes().keys()
    assert trial_indexes()["ix_trials_state_sweep"] == ["state", "sweep_id"]  # 0001's stays
    upgrade(db_url)
    assert added.items() <= trial_indexes().items()
