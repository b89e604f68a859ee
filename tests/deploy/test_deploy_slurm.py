"""deploy/slurm/ssmbench.sbatch: shellcheck-clean, and its Ray start sequence works on a faked
single-node allocation.

The fake allocation: `srun` and `scontrol` shims on PATH (srun runs its command here, scontrol lists
one node), the SLURM_* variables sbatch sets, and an `ssmbench` shim that records what the driver
would see — `ray status` through RAY_ADDRESS — in place of a sweep. Ray gets free ports (never
6379) and its own temp dir; nothing calls `ray stop`, which would stop every Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.local_cluster import free_port, ray_processes, signal_processes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "slurm" / "ssmbench.sbatch"
BIN = Path(sys.executable).parent
NODE = "node001"


def test_sbatch_script_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed; .ci/run installs it in CI")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck); CI installs it")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def write_shim(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + textwrap.dedent(body))
    path.chmod(0o755)


@pytest.fixture
def fake_allocation(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """(environment, file the driver shim writes) of a one-node SLURM allocation on this machine."""
    if not (BIN / "ray").exists():
        pytest.skip(f"`ray` is not installed beside {sys.executable}")
    shims = tmp_path / "bin"
    shims.mkdir()
    # srun [OPTIONS] COMMAND...: every option is written --name=value in the script, so the command
    # starts at the first word without a leading dash.
    write_shim(
        shims / "srun",
        """
        while [ "$#" -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
        exec "$@"
        """,
    )
    write_shim(
        shims / "scontrol",
        f"""
        [ "$1 $2" = "show hostnames" ] || {{ echo "fake scontrol: $*" >&2; exit 2; }}
        echo {NODE}
        """,
    )
    # The driver's place: what it sees of the cluster, and the exit code it was told to return.
    record = tmp_path / "driver.txt"
    write_shim(
        shims / "ssmbench",
        f"""
        {{
            echo "args: $*"
            echo "RAY_ADDRESS=$RAY_ADDRESS"
            ray status --address "$RAY_ADDRESS"
        }} >{record} 2>&1
        exit "${{FAKE_SSMBENCH_EXIT:-0}}"
        """,
    )
    ports: set[int] = set()
    temp_dir = Path(f"/tmp/ssmb-slurm-{os.getpid()}-{free_port(ports)}")  # short: Ray's socket paths
    node_args = [
        f"--temp-dir={temp_dir}",
        f"--node-manager-port={free_port(ports)}",
        f"--object-manager-port={free_port(ports)}",
        f"--metrics-export-port={free_port(ports)}",
        f"--dashboard-agent-listen-port={free_port(ports)}",
        f"--dashboard-agent-grpc-port={free_port(ports)}",
        f"--runtime-env-agent-port={free_port(ports)}",
        "--min-worker-port=0",
        "--max-worker-port=0",
        f"--object-store-memory={100 * 1024 * 1024}",
    ]
    head_args = [
        "--include-dashboard=false",
        f"--dashboard-port={free_port(ports)}",
        f"--ray-client-server-port={free_port(ports)}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SSMBENCH_", "SLURM"))}
    env.update(
        PATH=os.pathsep.join([str(shims), str(BIN), env.get("PATH", "")]),
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST=NODE,
        SLURM_JOB_NUM_NODES="1",
        SLURM_NNODES="1",
        SLURMD_NODENAME=NODE,
        SLURM_CPUS_PER_TASK="1",
        SSMBENCH_RAY_PORT=str(free_port(ports)),
        SSMBENCH_RAY_HEAD_IP="127.0.0.1",
        SSMBENCH_RAY_START_TIMEOUT="120",  # a loaded machine starts Ray slowly
        SSMBENCH_RAY_HEAD_ARGS=" ".join(head_args),
        SSMBENCH_RAY_NODE_ARGS=" ".join(node_args),
        FAKE_TEMP_DIR=str(temp_dir),
    )
    yield env, record
    signal_processes(ray_processes(temp_dir), signal.SIGKILL)  # only what a failed run left
    shutil.rmtree(temp_dir, ignore_errors=True)


def run_script(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the sbatch script did not finish in {timeout} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, output, "")


def test_ray_starts_on_the_allocation_and_the_driver_reaches_it(fake_allocation):
    """The head starts, `ray status` through RAY_ADDRESS lists one alive node, the driver's exit
    code is the script's, and no Ray process of the job outlives it."""
    env, record = fake_allocation
    env = {**env, "FAKE_SSMBENCH_EXIT": "3"}
    result = run_script(env, "run", "examples/quickstart.yaml", "--db", "sqlite:///x.db")
    driver = record.read_text() if record.exists() else "(the driver did not run)"
    assert result.returncode == 3, f"{result.stdout[-4000:]}\n--- driver ---\n{driver}"
    assert "args: run examples/quickstart.yaml --db sqlite:///x.db" in driver
    assert f"RAY_ADDRESS=127.0.0.1:{env['SSMBENCH_RAY_PORT']}" in driver
    assert "Active:" in driver and driver.count("node_") == 1, driver
    assert f"Ray head on {NODE} (127.0.0.1:{env['SSMBENCH_RAY_PORT']}), 0 worker node(s)" in result.stdout
    assert not ray_processes(Path(env["FAKE_TEMP_DIR"])), "Ray processes left after the job"


@pytest.mark.parametrize(
    ("args", "env_change", "message"),
    [
        ((), {}, "no command"),
        (("train", "x.yaml"), {}, "must be run or serve"),
        (("serve",), {"SLURM_JOB_NODELIST": ""}, "submit this script with sbatch"),
        (("serve",), {"SSMBENCH_RAY_PORT": "6379"}, "Redis's port"),
    ],
)
def test_bad_use_is_refused_before_anything_starts(fake_allocation, args, env_change, message):
    env, record = fake_allocation
    result = run_script({**env, **env_change}, *args, timeout=30)
    assert result.returncode == 2
    assert message in result.stdout
    assert not record.exists()
