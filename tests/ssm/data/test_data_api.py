"""The `ssm.data` contract: task names, options, errors, the data directory, dataset types."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import platformdirs
import pytest
import torch

from ssm.data import (
    FILE_TASKS,
    TASK_NAMES,
    DataFormatError,
    DataNotFoundError,
    SequenceDataset,
    Task,
    get_task,
    require_data,
    resolve_data_dir,
    task_options,
)


def test_task_names_are_the_twelve_of_the_contract():
    assert TASK_NAMES == (
        "listops", "text", "retrieval", "image", "pathfinder", "pathx",
        "delay", "memory-exp", "memory-poly", "linear-filter", "adding", "digits",
    )  # fmt: skip


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown task 'lisops'") as error:
        get_task("lisops")
    for name in TASK_NAMES:
        assert name in str(error.value)


def test_unknown_option_names_it_and_the_valid_ones(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown option 'dealy'") as error:
        get_task("delay", dealy=3)
    assert "delay" in str(error.value).split("valid options:")[1]
    # Options are checked before any file is looked for.
    with pytest.raises(ValueError, match="unknown option 'rgb' for task 'listops'"):
        get_task("listops", data_dir=tmp_path, rgb=True)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_task_takes_the_common_options(name: str):
    assert {"max_len", "n_train", "n_val", "n_test", "seed"} <= set(task_options(name))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_train": 0}, "'n_train' must be ≥ 1"),
        ({"n_train": "10"}, "'n_train' must be an integer"),
        ({"n_train": True}, "'n_train' must be an integer"),
        ({"seed": -1}, "'seed' must be ≥ 0"),
        ({"delay": 64}, "'delay' must be < seq_len=64"),
        ({"seq_len": 32, "max_len": 16}, "disagree"),
    ],
)
def test_bad_option_values_are_named(options: dict, message: str):
    with pytest.raises(ValueError, match=message):
        get_task("delay", **options)


def test_data_dir_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("SSMBENCH_DATA_DIR", raising=False)
    assert resolve_data_dir() == Path(platformdirs.user_data_dir("ssmbench")) / "data"
    monkeypatch.setenv("SSMBENCH_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir(tmp_path / "argument") == tmp_path / "argument"


def test_missing_data_names_the_path_and_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SSMBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError) as error:
        get_task("listops")
    expected = tmp_path / "listops-1000" / "basic_train.tsv"
    assert error.value.path == expected
    assert str(expected) in str(error.value)
    assert f"ssmbench data generate listops --data-dir {tmp_path}" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert issubclass(DataFormatError, ValueError)


def test_synthetic_tasks_need_no_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SSMBENCH_DATA_DIR", str(tmp_path / "does-not-exist"))
    task = get_task("delay", n_train=8, n_val=4, n_test=4)
    assert len(task.train) == 8
    assert not (tmp_path / "does-not-exist").exists()


def test_sequence_dataset_indexing_and_validation():
    x = torch.arange(12).reshape(3, 4)
    dataset = SequenceDataset(x, torch.tensor([0, 1, 0]), torch.tensor([4, 2, 3]))
    assert len(dataset) == 3
    xi, yi, li = dataset[1]
    assert xi.tolist() == [4, 5, 6, 7] and yi.item() == 1 and li.item() == 2
    assert dataset.subset([2, 0]).y.tolist() == [0, 0]
    with pytest.raises(ValueError, match="same number of examples"):
        SequenceDataset(x, torch.tensor([0, 1]), torch.tensor([4, 2, 3]))


def test_task_is_frozen_and_carries_the_contract_fields():
    task = get_task("delay", n_train=4, n_val=2, n_test=2)
    assert isinstance(task, Task)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "other"  # type: ignore[misc]
    assert task.split("val") is task.val
    with pytest.raises(ValueError, match="unknown split"):
        task.split("dev")


def test_subsampling_is_deterministic_by_seed():
    full = get_task("digits")
    a = get_task("digits", n_train=100, n_test=50, seed=3)
    b = get_task("digits", n_train=100, n_test=50, seed=3)
    c = get_task("digits", n_train=100, n_test=50, seed=4)
    assert len(a.train) == 100 and len(a.test) == 50 and len(a.val) == len(full.val)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.train.x, c.train.x)
    # The subsample is drawn from the full split, in its order.
    full_rows = {tuple(row.flatten().tolist()) for row in full.train.x}
    assert all(tuple(row.flatten().tolist()) in full_rows for row in a.train.x)
    with pytest.raises(ValueError, match="n_train=5000 but the train split has only 1439"):
        get_task("digits", n_train=5000)


@pytest.mark.parametrize("name", sorted(FILE_TASKS))
def test_require_data_expects_what_the_loader_expects(tmp_path: Path, name: str):
    """The up-front check (`ssmbench run` refuses a sweep with it) names the same missing path as
    loading the task would, and passes synthetic tasks."""
    with pytest.raises(DataNotFoundError) as checked:
        require_data(name, tmp_path)
    with pytest.raises(DataNotFoundError) as loaded:
        get_task(name, data_dir=tmp_path)
    assert checked.value.path == loaded.value.path and str(checked.value) == str(loaded.value)
    require_data("delay", tmp_path)  # synthetic: nothing to check
