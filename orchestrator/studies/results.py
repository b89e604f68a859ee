"""A study's trials as plain data: what each claim and figure reads (no database after loading).

`load_results` reads the trials of a study's sweeps — their config, final state and the stored
TrialResult (the `results` table's payload: metrics, epochs, parameters, step losses, diagnostic
arrays) — into `StudyResults`; tests build the same objects by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Result, Trial


@dataclass(frozen=True)
class TrialOutcome:
    """One trial of a study: its sweep part (the spec's file stem), config (TrialConfig as JSON),
    final state (`completed`, `diverged`, …) and stored result (TrialResult as JSON; None when the
    trial stored none, e.g. diverged)."""

    part: str
    config: dict[str, Any]
    state: str
    result: dict[str, Any] | None = None

    def get(self, path: str) -> Any:
        """A config value by dotted path: `model.init`, `optim.ssm_lr`, `task.options.p`, `seed`."""
        node: Any = self.config
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def test_metric(self) -> float | None:
        return None if self.result is None else self.result.get("test_metric")

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return [] if self.result is None else list(self.result.get("epochs") or [])

    def arrays(self, when: str) -> list[dict[str, Any]] | None:
        """The per-layer diagnostic arrays at `init`, `best` or `end` (None when not recorded)."""
        if self.result is None:
            return None
        return (self.result.get("diagnostics") or {}).get("arrays", {}).get(when)


@dataclass
class StudyResults:
    """Every trial of a study's sweeps, with selection and seed pairing."""

    trials: list[TrialOutcome] = field(default_factory=list)

    def where(self, part: str | None = None, **criteria: Any) -> list[TrialOutcome]:
        """Trials of `part` (any part when None) whose config matches every criterion; a criterion's
        key is a dotted path with `__` for `.` (`model__init="inv"`, `task__options__p=1.0`)."""
        return [
            t
            for t in self.trials
            if (part is None or t.part == part)
            and all(_equal(t.get(key.replace("__", ".")), value) for key, value in criteria.items())
        ]

    def values(self, axis: str, part: str | None = None) -> list[Any]:
        """The distinct values of a config path over the trials (sorted when they sort)."""
        seen: list[Any] = []
        for t in self.trials:
            if part is not None and t.part != part:
                continue
            value = t.get(axis)
            if not any(_equal(value, s) for s in seen):
                seen.append(value)
        try:
            return sorted(seen)
        except TypeError:
            return seen


def paired_differences(
    first: Iterable[TrialOutcome],
    second: Iterable[TrialOutcome],
    value: Callable[[TrialOutcome], float | None],
    key: Callable[[TrialOutcome], Any] = lambda t: t.seed,
) -> list[float]:
    """value(first) − value(second) for every key (default: the seed) present in both with a value."""
    a = {key(t): value(t) for t in first}
    b = {key(t): value(t) for t in second}
    return [a[k] - b[k] for k in sorted(a, key=repr) if k in b and a[k] is not None and b[k] is not None]


def load_results(session: Session, sweeps: Mapping[str, int]) -> StudyResults:
    """The trials of the sweeps `{part: sweep_id}` with their stored results; the diagnostic arrays
    and the Fourier-noise table, which have their own tables (`orchestrator.queries.trial_diagnostics`),
    are put back under the result's `diagnostics` as the trainer reported them."""
    from ..array_codec import json_lists
    from ..queries import trial_diagnostics

    part_of = {sweep_id: part for part, sweep_id in sweeps.items()}
    rows = session.execute(
        select(Trial, Result.payload)
        .outerjoin(Result, Result.trial_id == Trial.id)
        .where(Trial.sweep_id.in_(list(part_of)))
        .order_by(Trial.id)
    ).all()
    outcomes = []
    for trial, payload in rows:
        if payload is not None:
            stored = trial_diagnostics(session, trial)
            diagnostics = dict(payload.get("diagnostics") or {})
            if stored.snapshots:
                diagnostics["arrays"] = {
                    when: [{quantity: json_lists(a) for quantity, a in layer.items()} for layer in layers]
                    for when, layers in stored.snapshots.items()
                }
            if stored.fourier_noise:
                diagnostics["fourier"] = stored.fourier_noise
            payload = {**payload, "diagnostics": diagnostics}
        outcomes.append(TrialOutcome(part_of[trial.sweep_id], trial.config, trial.state, payload))
    return StudyResults(outcomes)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return (
                a is not None
                and b is not None
                and abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
            )
        except (TypeError, ValueError):
            return False
    return a == b


__all__ = ["StudyResults", "TrialOutcome", "load_results", "paired_differences"]
