"""How a sweep ended, for `ssmbench run`: its failed and diverged trials grouped by reason with the
fix when one is known, and where its results are."""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

from orchestrator.models import TrialState

# States that make `run` exit 1: the trial produced no usable result.
UNSUCCESSFUL_STATES = (TrialState.FAILED, TrialState.DIVERGED)
DIVERGED_REASON = "the loss became NaN or infinite"
DIVERGED_FIX = "lower optim.lr, or set optim.grad_clip (e.g. --set optim.grad_clip=1.0)"


class FailureGroup(NamedTuple):
    """Trials that ended the same unsuccessful way: how many, their state, the reason (the error's
    last line), and the fix when one is known (None otherwise)."""

    count: int
    state: str
    reason: str
    fix: str | None


def failure_reason(error: str | None) -> str:
    """A failed trial's reason: the last line of its stored traceback, the exception's class without
    its module (`DataNotFoundError: …`)."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no error recorded"
    # `ssm.data.base.DataNotFoundError: …` → `DataNotFoundError: …` (a traceback names the module)
    return re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*: )", "", lines[-1])


def known_fix(reason: str) -> str | None:
    """The fix for a reason whose cure is known: a missing data file names the command that makes
    it; a corrupt one, the check that finds it; a missing package, the install; out of memory, the
    knobs."""
    commands = re.findall(r"`(ssmbench [^`]+)`", reason)
    if reason.startswith("DataNotFoundError"):
        return f"run `{commands[0]}`" if commands else "`ssmbench data check` says what is missing"
    if reason.startswith("DataFormatError"):
        return (
            "`ssmbench data check --data-dir DIR` lists the bad items; `skip_bad: true` in the task's "
            "options skips them"
        )
    if reason.startswith("ModuleNotFoundError"):
        installs = re.findall(r"pip install \S+", reason)
        return installs[0] if installs else "pip install 'ssmbench[tasks]'"
    if "out of memory" in reason.lower():
        return (
            "lower optim.batch_size, model.d_model or the task's max_len, or ask for a GPU (resources.gpus)"
        )
    return None


def failure_groups(trials) -> list[FailureGroup]:
    """The unsuccessful trials (api.schemas.TrialSummary) grouped by state and reason, largest first."""
    counts: Counter[tuple[str, str]] = Counter()
    for trial in trials:
        if trial.state == TrialState.FAILED:
            counts[TrialState.FAILED, failure_reason(trial.error)] += 1
        elif trial.state == TrialState.DIVERGED:
            counts[TrialState.DIVERGED, DIVERGED_REASON] += 1
    return [
        FailureGroup(n, state, reason, DIVERGED_FIX if state == TrialState.DIVERGED else known_fix(reason))
        for (state, reason), n in counts.most_common()
    ]


def failure_lines(groups: list[FailureGroup], total: int) -> list[str]:
    """The summary as lines: `16 of 32 trials failed: DataNotFoundError: … — run `ssmbench …``."""
    lines = []
    for group in groups:
        fix = f" — {group.fix}" if group.fix else ""
        lines.append(f"{group.count} of {total} trials {group.state}: {group.reason}{fix}")
    return lines
