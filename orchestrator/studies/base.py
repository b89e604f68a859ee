"""What every study is: named sweep specs shipped in the package, claims with their rules, the
verdicts computed from the results and the study's own figures.

A study's specs live in `orchestrator/studies/specs/<study>/<scale>/<part>.yaml`, one sweep per file
(a study may need several sweeps: S4 accepts only the LegS init, so PTD's reference arm is its own
sweep). Scales: `quick` (synthetic or small tasks, minutes on 2 CPUs), `full` (the papers' LRA
setups, for GPUs) and `smoke` (seconds; the tests' end-to-end run).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar

from ..spec import SweepSpec, parse_spec
from .claims import ClaimDefinition
from .results import StudyResults

SCALES: tuple[str, ...] = ("quick", "full", "smoke")


def wall_times(quick: str, full: str) -> dict[str, str]:
    """A study's `time_per_scale`: `quick` and `full` its own; every smoke run takes under a minute."""
    return {"smoke": "< 1 min", "quick": quick, "full": full}


@dataclass
class StudyFigure:
    """One figure of a study: its file stem under figures/, title, caption and matplotlib Figure."""

    name: str
    title: str
    caption: str
    figure: Any


class Study:
    """Subclasses set the class attributes and implement `judge` and `figures`."""

    name: str = ""
    paper: str = ""
    summary: str = ""  # the design in one line
    question: str = ""  # what the study asks, in one sentence (the /studies page)
    claims: tuple[ClaimDefinition, ...] = ()
    # Wall time of `ssmbench study run NAME --scale S` from an empty database. † measured on the shared
    # 2-core VM at load 30–65 (two studies at once; bench/RESULTS.md), so an idle 2-CPU machine is
    # faster; `full` is an estimate for one GPU.
    time_per_scale: ClassVar[dict[str, str]] = {}

    # --- specs ------------------------------------------------------------------------------------

    def spec_texts(self, scale: str) -> dict[str, str]:
        """{part: YAML text} of the study's sweeps at `scale`, in file-name order."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
        folder = resources.files(__package__) / "specs" / self.name / scale
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
        return {f.name.removesuffix(".yaml"): f.read_text() for f in files}

    def specs(self, scale: str) -> dict[str, SweepSpec]:
        """{part: validated SweepSpec}; a spec that does not validate is a bug of the package."""
        return {part: parse_spec(text) for part, text in self.spec_texts(scale).items()}

    # --- results ----------------------------------------------------------------------------------

    def judge(self, results: StudyResults, scale: str) -> list[dict[str, Any]]:
        """Every claim of `claims`, in order, as `claims.judged` records."""
        raise NotImplementedError

    def figures(self, results: StudyResults, scale: str) -> Iterator[StudyFigure]:
        """The study's own figures (CLAIMS.md lists what each study draws)."""
        raise NotImplementedError

    def claim(self, claim_id: str) -> ClaimDefinition:
        for claim in self.claims:
            if claim.id == claim_id:
                return claim
        raise KeyError(claim_id)


__all__ = ["SCALES", "Study", "StudyFigure", "wall_times"]
