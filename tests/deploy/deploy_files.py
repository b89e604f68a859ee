"""Reading deploy/: its YAML documents, the Dockerfile's instructions, and the shell commands that the
image, the compose file, the manifests and the guide run."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
GUIDE = DEPLOY / "README.md"
SLURM_SCRIPT = DEPLOY / "slurm" / "ssmbench.sbatch"
RAYCLUSTER_SCHEMA = KUBERAY / "schema" / "raycluster.ray.io_v1.subset.json"
COMPOSE_SCHEMA = DEPLOY / "schema" / "compose-spec.subset.json"
KUBERNETES_VERSION = "1.33.0"  # one of the versions kubernetes-validate ships schemas for (offline)
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash"}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int
    doc: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.doc.get('kind')}/{self.doc.get('metadata', {}).get('name')}"


def manifests() -> list[Manifest]:
    """Every Kubernetes object under deploy/kuberay (the kustomization is not one)."""
    found = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                found.append(Manifest(path, index, doc))
    return found


def objects(kind: str) -> list[dict[str, Any]]:
    return [m.doc for m in manifests() if m.doc.get("kind") == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, pod spec) of every workload, the RayCluster's groups included."""
    for m in manifests():
        doc, spec = m.doc, m.doc.get("spec") or {}
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield m.id, spec["template"]["spec"]
        elif doc["kind"] == "RayCluster":
            yield f"{m.id}:head", spec["headGroupSpec"]["template"]["spec"]
            for group in spec.get("workerGroupSpecs", []):
                yield f"{m.id}:{group['groupName']}", group["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for owner, spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{owner}:{container['name']}", container


# --- the Dockerfile -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_args() -> dict[str, str]:
    """ARG defaults (the last one wins, as for a stage)."""
    args = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
    return args


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
    return env


# --- shell commands -----------------------------------------------------------------------------------

_OPERATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def simple_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script: split at operators, redirections cut off, leading
    variable assignments and `exec`/`env` dropped."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if token in _OPERATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    cleaned = []
    for command in commands:
        for i, token in enumerate(command):  # a redirection (`>x`, `2>&1`, `<in`) ends the arguments
            redirects = token[:1] in ("<", ">")
            numbered = token.isdigit() and i + 1 < len(command) and command[i + 1][:1] in ("<", ">")
            if redirects or numbered:
                command = command[:i]
                break
        while command and (_ASSIGNMENT.match(command[0]) or command[0] in ("exec", "env")):
            command = command[1:]
        if command:
            cleaned.append(command)
    return cleaned


def argv_commands(argv: list[str]) -> list[list[str]]:
    """An exec-form command: itself, or the commands of its script when it is `sh -c SCRIPT`."""
    if len(argv) >= 3 and argv[0] in SHELLS and argv[1] in ("-c", "-lc", "-ec"):
        return simple_commands(argv[2])
    return [list(argv)]


def tool_invocation(command: list[str]) -> list[str] | None:
    """The `ssmbench ...` or `ray ...` that a command runs — as its command word, after the options of
    `srun`, after the `--` of `kubectl exec POD -- ...`, or after the service of
    `docker compose run|exec SERVICE ...` — or None."""
    if not command:
        return None
    name = command[0].rsplit("/", 1)[-1]
    if name in ("ssmbench", "ray"):
        return [name, *command[1:]]
    if command[0] == "srun":  # srun --option=value ... COMMAND (options written with `=`)
        rest = command[1:]
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        return tool_invocation(rest)
    if command[0] == "kubectl" and "--" in command:
        return tool_invocation(command[command.index("--") + 1 :])
    if command[:2] == ["docker", "compose"] and len(command) > 3 and command[2] in ("run", "exec"):
        rest = command[3:]
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        return tool_invocation(rest[1:])
    return None


@dataclass(frozen=True)
class Invocation:
    source: str  # where it was found
    argv: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.source}: {' '.join(self.argv)}"


def _from_argvs(source: str, argvs: list[list[str]]) -> list[Invocation]:
    found = []
    for argv in argvs:
        for command in argv_commands(argv):
            invocation = tool_invocation(command)
            if invocation:
                found.append(Invocation(source, tuple(invocation)))
    return found


def dockerfile_invocations() -> list[Invocation]:
    found = []
    for keyword, rest in dockerfile_instructions():
        if keyword in ("CMD", "ENTRYPOINT") and rest.startswith("["):
            found += _from_argvs(f"Dockerfile {keyword}", [json.loads(rest)])
        elif keyword in ("CMD", "ENTRYPOINT", "RUN"):
            found += _from_argvs(f"Dockerfile {keyword}", simple_commands(rest))
    return found


def _compose_command(value: Any) -> list[list[str]]:
    if value is None:
        return []
    if isinstance(value, str):
        return simple_commands(value)
    if value and value[0] in ("CMD", "CMD-SHELL", "NONE"):  # a healthcheck test
        return (
            simple_commands(value[1])
            if value[0] == "CMD-SHELL"
            else ([value[1:]] if value[0] == "CMD" else [])
        )
    return [list(value)]


def compose_invocations() -> list[Invocation]:
    found = []
    for name, service in compose()["services"].items():
        for key in ("entrypoint", "command"):
            found += _from_argvs(f"compose {name}.{key}", _compose_command(service.get(key)))
        found += _from_argvs(
            f"compose {name}.healthcheck", _compose_command((service.get("healthcheck") or {}).get("test"))
        )
    return found


def _probe_commands(container: dict[str, Any]) -> list[list[str]]:
    argvs = []
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        command = ((container.get(probe) or {}).get("exec") or {}).get("command")
        if command:
            argvs.append(command)
    return argvs


def manifest_invocations() -> list[Invocation]:
    found = []
    for owner, container in containers():
        argv = list(container.get("command", [])) + list(container.get("args", []))
        found += _from_argvs(f"{owner}", [argv] if argv else [])
        found += _from_argvs(f"{owner} probe", _probe_commands(container))
    for cluster in objects("RayCluster"):
        spec = cluster["spec"]
        groups = [("head", spec["headGroupSpec"], ["--head"])] + [
            (g["groupName"], g, ["--address=HEAD:6379"]) for g in spec.get("workerGroupSpecs", [])
        ]
        for name, group, base in groups:
            argv = ["ray", "start", *base]
            for key, value in (group.get("rayStartParams") or {}).items():
                argv.append(f"--{key}" if value.lower() == "true" else f"--{key}={value}")
            found.append(Invocation(f"RayCluster {name}.rayStartParams", tuple(argv)))
    return found


def guide_invocations() -> list[Invocation]:
    """Commands in the guide's shell code blocks."""
    found, in_block, pending = [], False, ""
    for number, line in enumerate(GUIDE.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block and line.strip("`").strip() in ("bash", "sh", "shell", "console")
            pending = ""
            continue
        if not in_block:
            continue
        text = line.strip()
        if text.startswith("$ "):
            text = text[2:]
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        script, pending = pending + text, ""
        found += _from_argvs(f"README.md line {number}", simple_commands(script))
    return found


def slurm_invocations() -> list[Invocation]:
    """Commands of the sbatch script that start with `srun`, `ray` or `ssmbench` (continuation lines
    joined; the `"${array[@]}"` and `"$@"` expansions, which add options at run time, dropped)."""
    found, pending = [], ""
    for number, line in enumerate(SLURM_SCRIPT.read_text().splitlines(), 1):
        text = line.strip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        script, pending = pending + text, ""
        if script.split(" ", 1)[0] not in ("srun", "ray", "ssmbench"):
            continue
        script = re.sub(r'"\$(\{\w+\[@\]\}|@)"', "", script)
        found += _from_argvs(f"slurm/ssmbench.sbatch line {number}", simple_commands(script))
    return found


def all_invocations() -> list[Invocation]:
    return (
        dockerfile_invocations()
        + compose_invocations()
        + manifest_invocations()
        + guide_invocations()
        + slurm_invocations()
    )
