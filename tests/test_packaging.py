"""The packaging promise (pyproject.toml): `pip install ssmbench` is enough for the model package,
whose core dependencies are what `ssm` imports at module level; the service, the one-task readers and
tracking are extras; and the `ssmbench` script says which extra to install when one is missing.

Missing packages are simulated in a fresh interpreter by an import hook that refuses them, so the
tests run in the full development environment.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from api.cli import SERVICE_INSTALL, SERVICE_MODULES

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]

# Import names of everything that is not a core dependency.
NOT_CORE = (
    "ray", "optuna", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "typer",
    "rich", "httpx", "prometheus_client", "pydantic_settings", "yaml", "sklearn", "scipy", "PIL",
    "mlflow", "tensorboard",
)  # fmt: skip
CORE_MODULES = ("ssm.layers", "ssm.model", "ssm.train", "ssm.init", "ssm.kernels", "ssm.config", "ssm.data")

# Runs first in the child interpreter: `import X` for a blocked X fails as if X were not installed.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
    sys.argv = sys.argv[1:]
    """
)


def run_without(blocked: tuple[str, ...], code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter where the `blocked` top-level modules cannot be imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code), ",".join(blocked), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )


def distribution(requirement: str) -> str:
    return Requirement(requirement).name.lower().replace("_", "-")


def extra_closure(name: str) -> set[str]:
    """The distributions an extra brings, its `ssmbench[...]` references expanded."""
    found = set()
    for requirement in EXTRAS[name]:
        parsed = Requirement(requirement)
        if parsed.name == PROJECT["name"]:
            for inner in parsed.extras:
                found |= extra_closure(inner)
        else:
            found.add(distribution(requirement))
    return found


def installed_closure(names: set[str]) -> set[str]:
    """`names` and, recursively, the unconditional requirements of each installed distribution."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name.lower().replace("_", "-"))
    return seen


def test_the_model_package_imports_without_the_extras():
    """Layers, model, training, inits, kernels and data import and run with every non-core package
    refused; the refusal itself works (the hook is not a no-op)."""
    result = run_without(
        NOT_CORE,
        f"""
        import importlib, json, sys
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        import torch
        from ssm.layers import S4D
        y = S4D(d_model=4, d_state=8)(torch.randn(2, 16, 4))
        from ssm.data import get_task
        task = get_task("delay", n_train=4, n_val=2, n_test=2)
        try:
            import sklearn
            refused = False
        except ModuleNotFoundError:
            refused = True
        modules = sorted({{m.split(".")[0] for m in sys.modules}} - set(sys.stdlib_module_names))
        print(json.dumps({{"shape": list(y.shape), "n_train": len(task.train), "refused": refused,
                          "modules": modules}}))
        """,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["refused"] is True
    assert report["shape"] == [2, 16, 4] and report["n_train"] == 4
    assert not set(report["modules"]) & set(NOT_CORE)


def test_core_dependencies_are_what_ssm_imports():
    """Every third-party module that importing the model package loads beyond what the core
    dependencies load themselves (torch imports tqdm when it is there) belongs to a core dependency or
    to one of their own requirements."""
    core = {distribution(r) for r in PROJECT["dependencies"]}
    assert core == {"torch", "numpy", "pydantic", "platformdirs"}
    allowed = installed_closure(core)
    result = run_without(
        NOT_CORE,
        f"""
        import importlib, importlib.metadata, json, sys
        import numpy, platformdirs, pydantic, torch
        before = set(sys.modules)
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        owners = importlib.metadata.packages_distributions()
        modules = {{m.split(".")[0] for m in set(sys.modules) - before}} - set(sys.stdlib_module_names)
        modules = (modules - {{"ssm"}}) | {{"torch", "numpy", "pydantic", "platformdirs"}}
        print(json.dumps({{m: owners.get(m, []) for m in sorted(modules) if m in owners}}))
        """,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    owners = json.loads(result.stdout.splitlines()[-1])
    assert "torch" in owners and "numpy" in owners and "pydantic" in owners
    outside = {
        module: names
        for module, names in owners.items()
        if not {n.lower().replace("_", "-") for n in names} & allowed
    }
    assert not outside, f"ssm imports modules of distributions that are not core dependencies: {outside}"


def test_extras_are_layered():
    """`dev` brings the service and the tracking clients (make test runs the whole suite, MLflow's
    read-back included), `all` brings every extra, and the service brings the one-task readers (it
    runs every task)."""
    service = extra_closure("service")
    assert {"ray", "optuna", "fastapi", "sqlalchemy", "alembic", "psycopg", "typer"} <= service
    assert extra_closure("tasks") <= service
    assert service | extra_closure("tracking") <= extra_closure("dev")
    assert {"mlflow-skinny", "tensorboard"} == extra_closure("tracking")  # MLflow's client only
    every = set().union(*(extra_closure(name) for name in EXTRAS if name != "all"))
    assert extra_closure("all") == every
    assert PYPROJECT["project"]["scripts"]["ssmbench"] == "api.cli:console_script"


def test_cli_names_every_service_dependency():
    """The CLI's list of service modules covers each distribution of the `service` extra (by the
    import names the installed distributions provide), so a missing one gets the install line."""
    provides: dict[str, set[str]] = {}
    for module, names in importlib.metadata.packages_distributions().items():
        for name in names:
            provides.setdefault(name.lower().replace("_", "-"), set()).add(module)
    uncovered = {
        name: sorted(provides.get(name, ()))
        for name in extra_closure("service")
        if not provides.get(name, set()) & SERVICE_MODULES
    }
    assert not uncovered, f"api/cli/__init__.py's SERVICE_MODULES misses {uncovered}"


def test_cli_without_typer_prints_the_install_line():
    result = run_without(("typer",), "from api.cli import console_script; console_script()", "--help")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert SERVICE_INSTALL in lines[0] and "typer" in lines[0]


def test_cli_command_missing_a_service_dependency_prints_the_install_line(tmp_path: Path):
    """A dependency imported inside a command (alembic by `db upgrade`) is reported the same way."""
    code = "from api.cli import console_script; console_script()"
    result = run_without(("alembic",), code, "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert SERVICE_INSTALL in lines[0] and "alembic" in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_a_missing_task_reader_names_the_extra():
    """The digits task without scikit-learn: a ModuleNotFoundError that says what to install."""
    result = run_without(
        ("sklearn",),
        """
        from ssm.data import get_task
        try:
            get_task("digits")
        except ModuleNotFoundError as error:
            print(error.name, "|", error)
        """,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    name, _, message = result.stdout.strip().partition(" | ")
    assert name == "sklearn"
    assert "digits" in message and "pip install scikit-learn" in message and "ssmbench[tasks]" in message


# --- the wheel holds what the code reads at run time ---------------------------------------------------

PACKAGES = ("ssm", "orchestrator", "api", "migrations")  # [tool.setuptools.packages.find] include

# Run from the installed wheel (not this tree): the study specs, the migrations (upgrade()), the
# report template, the pages' templates and static files.
INSTALLED_CHECK = textwrap.dedent(
    """
    import sys, tempfile
    import api, orchestrator
    target = sys.argv[1]
    assert api.__file__.startswith(target) and orchestrator.__file__.startswith(target), api.__file__
    from orchestrator.studies import SCALES, STUDIES, get_study
    for name in STUDIES:
        for scale in SCALES:
            assert get_study(name).specs(scale), (name, scale)
    from sqlalchemy import create_engine, inspect
    from orchestrator.db import upgrade
    url = f"sqlite:///{tempfile.mkdtemp()}/installed.db"
    upgrade(url)
    assert {"sweeps", "trials", "results", "trial_diagnostics", "ssmbench_alembic_version"} <= set(inspect(create_engine(url)).get_table_names())
    from orchestrator.report.html import _environment
    _environment.get_template("report.html.j2")
    from api.pages.rendering import ENVIRONMENT, STATIC_DIR
    for page in ENVIRONMENT.list_templates():
        ENVIRONMENT.get_template(page)
    assert "sweep.html" in ENVIRONMENT.list_templates()
    assert (STATIC_DIR / "style.css").is_file() and (STATIC_DIR / "progress.js").is_file()
    print("ok")
    """
)


def test_the_wheel_holds_every_data_file_and_runs_from_its_install(tmp_path: Path):
    """Build the wheel from a copy of the packages (this tree stays clean, no build isolation: no
    network), check that every non-Python file of the packages is inside, install it into a folder
    and use the data files from there. About 10 s."""
    import shutil
    import zipfile

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=skip)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)]
    built = subprocess.run(build, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("ssmbench-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    data_files = {
        path.relative_to(source).as_posix()
        for package in PACKAGES
        for path in (source / package).rglob("*")
        if path.is_file() and path.suffix != ".py"
    }
    assert data_files, "no data files found: the package layout changed"
    assert data_files - inside == set(), "pyproject's package-data misses these"
    python_files = {
        p.relative_to(source).as_posix() for pkg in PACKAGES for p in (source / pkg).rglob("*.py")
    }
    assert python_files <= inside

    target = tmp_path / "installed"
    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("TRITON_INTERPRET", None)
    run = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
