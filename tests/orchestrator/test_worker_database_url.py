"""Issue 13, finding 8: on a Ray cluster the scheduler does not pass a database password as a task
argument (Ray shows task arguments in its dashboard); the worker reads SSMBENCH_DATABASE_URL."""

import pytest

from orchestrator.worker import task_database_url, worker_database_url

SECRET = "postgresql+psycopg://ssmbench:hunter2@db:5432/ssmbench"
TRUST = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Ds"


def test_a_clusters_tasks_get_no_password_and_workers_read_their_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert task_database_url(SECRET) is None
    assert task_database_url(TRUST) == TRUST  # nothing secret in it: passed as before
    assert task_database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"

    monkeypatch.setenv("SSMBENCH_DATABASE_URL", SECRET)
    assert worker_database_url(None) == SECRET
    assert worker_database_url(TRUST) == TRUST  # a URL passed with the task wins
    monkeypatch.delenv("SSMBENCH_DATABASE_URL")
    with pytest.raises(RuntimeError, match="SSMBENCH_DATABASE_URL is not set on this Ray worker"):
        worker_database_url(None)


def test_the_embedded_local_ray_gets_the_url_as_it_is(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert task_database_url(SECRET) == SECRET


def test_checkpoints_of_equal_trial_ids_in_two_databases_do_not_meet(tmp_path):
    from orchestrator.worker import trial_checkpoint_dir

    root = str(tmp_path)
    one = trial_checkpoint_dir(root, "sqlite:////data/one.db", 3)
    other = trial_checkpoint_dir(root, "sqlite:////data/other.db", 3)
    assert one != other and one.name == other.name == "trial-3"
    assert one.parent.parent == tmp_path and other.parent.parent == tmp_path
    # the password never reaches the path, and does not name another database
    with_secret = trial_checkpoint_dir(root, "postgresql+psycopg://u:hunter2@db:5432/ssm", 3)
    assert "hunter2" not in str(with_secret)
    assert with_secret == trial_checkpoint_dir(root, "postgresql+psycopg://u:other@db:5432/ssm", 3)
    assert trial_checkpoint_dir(None, "sqlite:////data/one.db", 3) is None
