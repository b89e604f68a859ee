"""Every `ssmbench ...` and `ray ...` command that deploy/ runs — the Dockerfile's CMD and RUN, the
compose services' commands, the manifests' containers and the RayCluster's rayStartParams, the guide's
code blocks — exists in the CLI with the options it is given, and its `--help` exits 0.

A command the design names (DESIGN.md, "api": the CLI) but that is not implemented yet is skipped with
the reason; anything else missing — a typo — fails.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_files import Invocation, all_invocations

BIN = Path(sys.executable).parent
# The CLI of DESIGN.md: run, serve, submit, status, cancel, trials, leaderboard, train,
# data generate|check, db upgrade, token create.
PLANNED = {
    ("run",), ("serve",), ("submit",), ("status",), ("cancel",), ("trials",), ("leaderboard",),
    ("train",), ("data",), ("data", "generate"), ("data", "check"), ("db",), ("db", "upgrade"),
    ("token",), ("token", "create"),
}  # fmt: skip
INVOCATIONS = all_invocations()


# Both CLIs are click-style command trees (typer carries its own copy of click, so the classes differ):
# a group has `commands`, a command has `params` with `opts` and `secondary_opts`.
Command = Any


@functools.cache
def root_command(tool: str) -> Command:
    if tool == "ssmbench":
        import typer.main

        from api.cli import app

        return typer.main.get_command(app)
    from ray.scripts.scripts import cli

    return cli


def resolve(argv: tuple[str, ...]) -> tuple[tuple[str, ...], Command | None, str | None, list[str]]:
    """(command path, command or None, the unknown word, the long options given)."""
    command, path, i = root_command(argv[0]), (), 1
    while hasattr(command, "commands") and i < len(argv) and not argv[i].startswith("-"):
        sub = command.commands.get(argv[i])
        if sub is None:
            return (*path, argv[i]), None, argv[i], []
        command, path, i = sub, (*path, argv[i]), i + 1
    options = [a.split("=", 1)[0] for a in argv[i:] if a.startswith("--") and a != "--"]
    return path, command, None, options


def known_options(command: Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def test_deploy_runs_the_commands_it_should():
    """The extraction itself: the roles of the image are all found."""
    runs = {(i.argv[0], *i.argv[1:3]) for i in INVOCATIONS}
    assert ("ssmbench", "db", "upgrade") in runs
    assert ("ssmbench", "serve", "--host") in runs
    assert any(i.argv[:3] == ("ray", "start", "--head") for i in INVOCATIONS)
    assert any(
        i.argv[:2] == ("ray", "start") and any(a.startswith("--address") for a in i.argv) for i in INVOCATIONS
    )
    sources = {i.source.split(" ")[0].split(":")[0] for i in INVOCATIONS}
    assert {"Dockerfile", "compose", "api.yaml", "migrate-job.yaml", "RayCluster", "README.md"} <= sources


@pytest.mark.parametrize("invocation", INVOCATIONS, ids=lambda i: i.id)
def test_command_exists_with_its_options(invocation: Invocation):
    path, command, unknown, options = resolve(invocation.argv)
    tool = invocation.argv[0]
    if command is None:
        if tool == "ssmbench" and path in PLANNED:
            pytest.skip(f"`ssmbench {' '.join(path)}` is in the design but not implemented yet")
        pytest.fail(f"{invocation.source}: `{tool} {' '.join(path)}`: {tool} has no command {unknown!r}")
    if tool == "ssmbench" and not path:
        assert set(options) <= {"--help"}, invocation.id
        return
    unknown_options = sorted(set(options) - known_options(command))
    assert not unknown_options, (
        f"{invocation.source}: `{tool} {' '.join(path)}` has no option {', '.join(unknown_options)}; "
        f"it has {', '.join(sorted(known_options(command)))}"
    )


COMMAND_PATHS = sorted(
    {(i.argv[0], *resolve(i.argv)[0]) for i in INVOCATIONS if resolve(i.argv)[1] is not None}
)


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_help_exits_zero(path: tuple[str, ...]):
    """`<command> --help` exits 0 and prints its usage (in process: the same command tree the console
    script runs, without paying each import again)."""
    if path[0] == "ssmbench":
        from typer.testing import CliRunner

        from api.cli import app
    else:
        from click.testing import CliRunner
        from ray.scripts.scripts import cli as app
    result = CliRunner().invoke(app, [*path[1:], "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, (
        f"{' '.join(path)} --help exited {result.exit_code}:\n{result.output[-2000:]}"
    )
    assert "Usage" in result.output, result.output[:500]


@pytest.mark.parametrize("tool", ["ssmbench", "ray"])
def test_console_scripts_run(tool: str):
    """The installed console scripts themselves: `ssmbench --help`, `ray start --help`."""
    executable = BIN / tool
    if not executable.exists():
        pytest.skip(f"{executable} is not installed")
    argv = [str(executable), "--help"] if tool == "ssmbench" else [str(executable), "start", "--help"]
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-2000:]}"
    assert "Usage" in result.stdout, result.stdout[:500]


def test_a_typo_is_caught():
    """The check fails for a misspelt command or option rather than passing silently."""
    assert resolve(("ssmbench", "db", "upgrad"))[1] is None
    assert ("db", "upgrad") not in PLANNED
    _, command, _, options = resolve(("ssmbench", "serve", "--hots", "0.0.0.0"))
    assert command is not None and options == ["--hots"] and "--hots" not in known_options(command)
    _, command, _, options = resolve(("ray", "start", "--num-cpu=1"))
    assert (
        command is not None
        and "--num-cpu" not in known_options(command)
        and "--num-cpus" in known_options(command)
    )
