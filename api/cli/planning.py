"""What `run` and `submit` do before a sweep starts: read its spec (with `--set` overrides), check
what can be checked up front (data on disk, resources that fit), and print the plan (`--dry-run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import console, err_console, fail, merge, parse_overrides, read_yaml

if TYPE_CHECKING:
    from orchestrator.spec import SweepSpec

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a spec key, as `train --set`: --set optim.lr=1e-3; a list makes a grid axis: "
        "--set 'model.init=[lin, inv]' (repeatable).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the plan (trials, groups, resources, reused results) and the problems found; run nothing.",
    ),
]


def read_sweep_spec(spec_path: Path, overrides: list[str], max_trials: int) -> tuple[SweepSpec, str | dict]:
    """The spec in `spec_path` with `--set` overrides merged in, validated by the one parser
    (`orchestrator.spec`), and what to send the service: the YAML text as it is, or the merged
    mapping when there are overrides. Every problem is one line and exit 2."""
    from orchestrator.spec import SpecError, parse_spec, validate_spec

    try:
        text = spec_path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {spec_path}: {getattr(err, 'strerror', None) or err}")
    try:
        if not overrides:  # parsed from the text, so that errors carry their line
            return parse_spec(text, "application/yaml", max_trials=max_trials), text
        merged = merge(_mapping(spec_path, text), parse_overrides(overrides))
        return validate_spec(merged, max_trials=max_trials), merged
    except SpecError as err:
        fail(f"{spec_path}: {err}")


def _mapping(path: Path, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = read_yaml(text)
    except yaml.YAMLError as err:
        fail(f"{path} is not valid YAML: {getattr(err, 'problem', err)}")
    if not isinstance(data, dict):
        fail(f"{path} must contain a mapping at the top level, got {type(data).__name__}")
    return data


def data_problems(spec: SweepSpec, data_dir: Path | None) -> list[str]:
    """One line per task of the sweep whose files are not in `data_dir` (None: the default data
    directory), naming the path expected and how to get it."""
    from ssm.data import DataNotFoundError, require_data

    problems = []
    for task in spec.tasks:
        try:
            require_data(task.name, data_dir, **task.options)
        except DataNotFoundError as err:
            problems.append(f"{task.name}: {err}")
    return problems


def submit_data_dir(api_url: str, data_dir: Path | None) -> Path | None:
    """Where `submit` checks the sweep's task files: `--data-dir` when given; for a service on this
    machine the data directory `run` uses (`$SSMBENCH_DATA_DIR`, else the per-user one), since its
    workers read that one; None for a service elsewhere, whose data lives on its cluster, out of this
    client's sight (its workers find a missing file when a trial starts, and say which)."""
    if data_dir is not None:
        return data_dir
    if not is_local_url(api_url):
        return None
    from orchestrator.settings import Settings
    from ssm.data import resolve_data_dir

    return resolve_data_dir(Settings().data_dir)


def is_local_url(url: str) -> bool:
    """Whether `url`'s host is this machine: a loopback address, `localhost`, or its own host name."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower()
    except ValueError:  # not a URL: the client says so when it is used
        return False
    if host == "localhost" or host in {socket.gethostname().lower(), socket.getfqdn().lower()}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def this_machine() -> list[dict[str, Any]]:
    """The one node a local Ray would have: this machine's CPUs and the GPUs torch sees (so that the
    check needs no Ray started)."""
    import os

    import torch

    return [{"cpus": float(os.cpu_count() or 1), "gpus": float(torch.cuda.device_count())}]


def resource_problems(spec: SweepSpec, nodes: list[dict[str, Any]] | None = None) -> list[str]:
    """The cluster check (`orchestrator.cluster.check_resources`) as a list of problems; `nodes`
    default to the connected Ray's."""
    from orchestrator.cluster import check_resources
    from orchestrator.spec import SpecError

    try:
        check_resources(spec, nodes)
    except SpecError as err:
        return [f"resources: {err.message}"]
    return []


def refuse(problems: list[str], what: str = "the sweep cannot run") -> None:
    """Exit 2 with the list of problems (nothing when there are none)."""
    if not problems:
        return
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(what)} ({len(problems)} problem(s)):", highlight=False)
    for problem in problems:
        err_console.print(f"  - {escape(problem)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def print_plan(spec: SweepSpec, *, reused: int | None, problems: list[str]) -> None:
    """The plan on stdout: trials, configuration groups, tasks, seeds, resources, reused results and
    the problems found (none: it would run)."""
    from orchestrator.spec import group_key, plan

    if spec.search is not None:
        groups = len(spec.grid_cells())
        trials = f"{spec.trial_budget()} (search: {spec.search.n_trials} samples per grid cell and task)"
    else:
        configs = plan(spec)
        groups = len({group_key(config) for config in configs})
        trials = str(len(configs))
    resources = spec.resources
    lines = [
        f"plan for sweep {spec.name!r} (dry run: nothing runs)",
        f"  trials:        {trials}",
        f"  groups:        {groups} configuration(s) (model + optim)",
        f"  tasks:         {', '.join(task.name for task in spec.tasks)}",
        f"  seeds:         {', '.join(str(seed) for seed in spec.seeds)}",
        f"  grid axes:     {', '.join(spec.grid_axes()) or 'none'}",
        f"  per trial:     {resources.cpus:g} CPU(s), {resources.gpus:g} GPU(s)",
        "  reused:        "
        + (
            "unknown (the service decides)"
            if reused is None
            else f"{reused} result(s) already in the database"
        ),
    ]
    lines += ["  problems:      none"] if not problems else [f"  problem:       {p}" for p in problems]
    from rich.markup import escape

    for line in lines:
        console.print(escape(line), highlight=False, soft_wrap=True)


def reusable_results(url: str, spec: SweepSpec) -> int:
    """How many of a grid sweep's planned trials would reuse a completed result in the database at
    `url` (0 when it has none yet, or for a search sweep, whose trials are not known in advance)."""
    import os

    from orchestrator.spec import plan

    if spec.search is not None:
        return 0
    sqlite_file = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    if sqlite_file and not os.path.exists(os.path.expanduser(sqlite_file)):
        return 0
    from orchestrator.db import make_engine, session_factory
    from orchestrator.queries import completed_config_hashes

    hashes = [config.hash() for config in plan(spec)]
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            done = completed_config_hashes(s, set(hashes))
    finally:
        engine.dispose()
    return sum(h in done for h in hashes)
