"""`ssmbench data generate|check`, called through the typer app: output, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.data import data_app
from ssm.data import TASK_NAMES

runner = CliRunner()


def run(*args: str):
    return runner.invoke(data_app, list(args))


def test_generate_listops_then_load(tmp_path: Path):
    args = ["generate", "listops", "--out", str(tmp_path), "--n-train", "20", "--n-val", "5", "--n-test", "5",
            "--min-len", "10", "--max-len", "60", "--seed", "2"]  # fmt: skip
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["path"] == str(tmp_path / "listops-1000") and summary["n_train"] == 20
    assert (tmp_path / "listops-1000" / "basic_test.tsv").is_file()
    again = run(*args)
    assert again.exit_code == 2 and again.stderr.count("\n") == 1 and "--force" in again.stderr
    assert run(*args, "--force").exit_code == 0


def test_generate_pathfinder(tmp_path: Path):
    result = run("generate", "pathfinder", "--out", str(tmp_path), "-n", "10", "--contour-length", "6",
                 "--workers", "1")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "wrote 10 Pathfinder images" in result.stdout
    assert len(list((tmp_path / "pathfinder32" / "curv_baseline" / "imgs" / "0").iterdir())) == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "pathfinder", "--size", "64", "--out", "TMP"], "size must be one of 32, 128, got 64"),
        (
            ["generate", "listops", "--min-len", "100", "--max-len", "50", "--out", "TMP"],
            "min_len < length < max_len",
        ),
        (["generate", "listops", "--n-train", "0", "--out", "TMP"], "'n_train' must be ≥ 1"),
        (["check", "TMP/does-not-exist"], "data directory not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str):
    result = run(*(arg.replace("TMP", str(tmp_path)) for arg in args))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_check_reports_every_task(lra_dir: Path, tmp_path: Path):
    (lra_dir / "tsv_data" / "new_aan_pairs.eval.tsv").unlink()
    result = run("check", str(lra_dir), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["data_dir"] == str(lra_dir)
    rows = {row["name"]: row for row in report["tasks"]}
    assert list(rows) == list(TASK_NAMES)
    assert rows["listops"]["status"] == "found" and rows["listops"]["sizes"] == {
        "train": 5,
        "val": 2,
        "test": 2,
    }
    assert rows["listops"]["path"] == str(lra_dir / "listops-1000")
    assert rows["retrieval"]["status"] == "missing"
    assert rows["retrieval"]["path"] == str(lra_dir / "tsv_data" / "new_aan_pairs.eval.tsv")
    assert "lra_release" in rows["retrieval"]["provides"]
    for name in ("text", "image", "pathfinder", "pathx"):
        assert rows[name]["status"] == "found", rows[name]
    assert rows["pathx"]["sizes"] == {"train": 8, "val": 1, "test": 1}
    assert rows["delay"]["status"] == "built-in" and rows["delay"]["sizes"]["train"] == 4000

    table = run("check", str(lra_dir))
    assert table.exit_code == 0
    assert "listops" in table.stdout and "missing" in table.stdout and "found" in table.stdout

    (tmp_path / "empty").mkdir()
    empty = run("check", str(tmp_path / "empty"), "--json")
    statuses = {row["name"]: row["status"] for row in json.loads(empty.stdout)["tasks"]}
    assert empty.exit_code == 0 and statuses["listops"] == "missing" and statuses["digits"] == "built-in"


def test_check_corrupt_data_exits_1_unless_skipping(published, tmp_path: Path):
    published.listops(tmp_path)
    path = tmp_path / "listops-1000" / "basic_train.tsv"
    path.write_bytes(path.read_bytes() + b"( ( ( [MAX 2 ) 9 ) ] )\t9\tjunk\r\n")
    result = run("check", str(tmp_path), "--json")
    assert result.exit_code == 1
    row = next(r for r in json.loads(result.stdout)["tasks"] if r["name"] == "listops")
    assert row["status"] == "corrupt" and f"{path}, line 7" in row["message"]
    skipping = run("check", str(tmp_path), "--json", "--skip-bad")
    assert skipping.exit_code == 0
    row = next(r for r in json.loads(skipping.stdout)["tasks"] if r["name"] == "listops")
    assert row["status"] == "found" and row["skipped"] == 1 and row["sizes"]["train"] == 5


def test_check_uses_the_environment_data_dir(published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    published.listops(tmp_path)
    monkeypatch.setenv("SSMBENCH_DATA_DIR", str(tmp_path))
    report = json.loads(run("check", "--json").stdout)
    assert report["data_dir"] == str(tmp_path)
    monkeypatch.setenv("SSMBENCH_DATA_DIR", str(tmp_path / "nope"))
    assert run("check").exit_code == 2
