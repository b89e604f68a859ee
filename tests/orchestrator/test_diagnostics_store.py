"""The diagnostics tables: the array codec, the one-time write with the result, the read back (with
reuse), on SQLite and PostgreSQL. The served answer of a really trained trial: tests/api."""

from __future__ import annotations

import numpy as np
import pytest
from alembic import command
from sqlalchemy import func, inspect, select

from orchestrator import store
from orchestrator.array_codec import decode_array, encode_array, json_lists
from orchestrator.db import alembic_config, transaction, upgrade
from orchestrator.models import Result, Trial, TrialDiagnosticArray, TrialDiagnostics
from orchestrator.queries import trial_diagnostics
from orchestrator.spec import SweepSpec
from ssm.train import TrialResult

SPEC = {"name": "diag", "tasks": ["delay"], "diagnostics": {"every": 1}}


def test_the_codec_round_trips_float32_with_nan_and_shape():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 5, 2)) * 10.0 ** rng.integers(-8, 8, (3, 5, 2))
    values[1, 2, 0] = np.nan
    shape, data = encode_array(values)
    back = decode_array(shape, data)
    assert shape == [3, 5, 2] and back.dtype == np.float32
    np.testing.assert_array_equal(back, values.astype(np.float32))  # exactly float32, NaN where NaN
    # nested lists with None (layer_arrays' form) read None as NaN; json_lists gives them back
    nested = [[0.9433356, None], [1e-30, -64.0]]
    assert json_lists(decode_array(*encode_array(nested))) == nested
    assert decode_array(*encode_array([])).shape == (0,)


def arrays_of(seed: int, n_layers: int = 2) -> list[dict]:
    """layer_arrays-shaped diagnostics (H=3, N/2=2, max_lag=4) with values from `seed`."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_layers):
        lam = rng.standard_normal((3, 2, 2))
        rows.append(
            {
                "eigenvalues": lam.tolist(),
                "dt": rng.random(3).tolist(),
                "Ab": (lam / 2).tolist(),
                "memory_function": rng.random((3, 4)).tolist(),
                "memory_capacity": [4.0, 4.0, None],
            }
        )
    return rows


def result_with(seed: int, snapshots=("init", "best", "end"), status="completed") -> TrialResult:
    return TrialResult(
        status=status,
        config_hash="h",
        metric="accuracy",
        best_epoch=0,
        val_metric=0.5,
        test_metric=0.5,
        diagnostics={
            "arrays": {name: arrays_of(seed + i) for i, name in enumerate(snapshots)},
            "fourier": [{"frequency": None, "accuracy": 0.5}, {"frequency": 0.1, "accuracy": 0.25}],
        },
    )


def running_trial(sessions) -> tuple[int, int]:
    with transaction(sessions) as s:
        sweep = store.create_sweep(s, SweepSpec.model_validate(SPEC))
        trial_id = sweep.trials[0].id
        return trial_id, store.claim(s, trial_id)


def count(session, table) -> int:
    return session.scalar(select(func.count()).select_from(table))


def test_finish_stores_the_diagnostics_once_and_reads_them_back(sessions):
    trial_id, attempt = running_trial(sessions)
    result = result_with(seed=1)
    with transaction(sessions) as s:
        assert store.finish(s, trial_id, attempt, result, "completed")
    with transaction(sessions) as s:  # a second write (a retried transaction, a duplicate): nothing
        assert store.record_diagnostics(s, trial_id, attempt, result_with(seed=99)) is False
        assert store.finish(s, trial_id, attempt, result_with(seed=99), "completed") is False
    with sessions() as s:
        assert count(s, TrialDiagnostics) == 1
        assert count(s, TrialDiagnosticArray) == 3 * 2 * 5  # snapshots × layers × quantities
        kept = s.scalar(select(Result.payload).where(Result.trial_id == trial_id)).get("diagnostics", {})
        assert "arrays" not in kept and "fourier" not in kept  # they are in their own tables
        stored = trial_diagnostics(s, s.get(Trial, trial_id))
    assert stored.attempt == attempt and stored.source_trial_id == trial_id
    assert stored.fourier_noise == result.diagnostics["fourier"]
    assert list(stored.snapshots) == ["init", "best", "end"]
    for name, layers in result.diagnostics["arrays"].items():
        assert len(stored.snapshots[name]) == len(layers)
        for got, sent in zip(stored.snapshots[name], layers, strict=True):
            assert set(got) == set(sent)
            for quantity, values in sent.items():
                expected = np.array(values, dtype=np.float64)  # None → NaN
                np.testing.assert_allclose(got[quantity], expected, rtol=1e-7)


def test_a_reused_result_reads_its_originals_diagnostics(sessions):
    trial_id, attempt = running_trial(sessions)
    with transaction(sessions) as s:
        store.finish(s, trial_id, attempt, result_with(seed=2), "completed")
    with transaction(sessions) as s:
        again = store.create_sweep(s, SweepSpec.model_validate({**SPEC, "name": "again"})).trials[0]
        assert again.reused_from == trial_id
        stored = trial_diagnostics(s, again, snapshots=["init"])
        original = trial_diagnostics(s, s.get(Trial, trial_id))
    assert stored.source_trial_id == trial_id and list(stored.snapshots) == ["init"]
    np.testing.assert_array_equal(
        stored.snapshots["init"][1]["memory_function"], original.snapshots["init"][1]["memory_function"]
    )


def test_a_diverged_trial_keeps_its_init_arrays_and_a_plain_one_has_none(sessions):
    trial_id, attempt = running_trial(sessions)
    diverged = result_with(seed=3, snapshots=("init",), status="diverged")
    diverged.diagnostics.pop("fourier")
    with transaction(sessions) as s:
        store.finish(s, trial_id, attempt, diverged, "diverged")
        stored = trial_diagnostics(s, s.get(Trial, trial_id))
        assert list(stored.snapshots) == ["init"] and stored.fourier_noise is None
        assert count(s, Result) == 0  # no result row for a diverged trial; its diagnostics are kept
    plain_id, plain_attempt = running_trial(sessions)
    with transaction(sessions) as s:
        plain = TrialResult(status="completed", config_hash="h", metric="accuracy", test_metric=0.5)
        assert store.record_diagnostics(s, plain_id, plain_attempt, plain) is False
        empty = trial_diagnostics(s, s.get(Trial, plain_id))
    assert empty.attempt is None and empty.snapshots == {} and empty.fourier_noise is None


def test_an_unknown_snapshot_is_refused():
    bad = TrialResult(status="completed", config_hash="h", metric="accuracy")
    bad.diagnostics["arrays"] = {"middle": []}
    with pytest.raises(ValueError, match="middle"):
        store.record_diagnostics(None, 1, 1, bad)


def test_0007_goes_down_and_up_again(db_url, engine, sessions):
    trial_id, attempt = running_trial(sessions)
    with transaction(sessions) as s:
        store.finish(s, trial_id, attempt, result_with(seed=4), "completed")
    command.downgrade(alembic_config(db_url), "0006")
    assert not {"trial_diagnostics", "trial_diagnostic_arrays"} & set(inspect(engine).get_table_names())
    upgrade(db_url)
    assert {"trial_diagnostics", "trial_diagnostic_arrays"} <= set(inspect(engine).get_table_names())
