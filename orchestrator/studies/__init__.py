"""Built-in studies: each paper's claims reproduced with one command (DESIGN.md "studies",
CLAIMS.md). A study is a named set of sweep specs shipped in this package, the claims with their
rules fixed in code before any run, the verdicts computed from the results and the study's figures.

    from orchestrator.studies import get_study, STUDIES
    study = get_study("memory")
    specs = study.specs("quick")          # {part: SweepSpec}
    claims = study.judge(results, "quick")  # [{id, paper, statement, quantity, value, ci, n, rule, verdict}]

`orchestrator.studies.runner.run_study` plans, runs and reports one (`ssmbench study run NAME`).
"""

from __future__ import annotations

from .base import SCALES, Study, StudyFigure
from .memory import MemoryStudy
from .ptd import PtdStudy
from .reparam import ReparamStudy
from .state_size import StateSizeStudy

STUDY_CLASSES: dict[str, type[Study]] = {
    "memory": MemoryStudy,
    "reparam": ReparamStudy,
    "state-size": StateSizeStudy,
    "ptd": PtdStudy,
}
STUDY_NAMES: tuple[str, ...] = tuple(STUDY_CLASSES)
STUDIES = STUDY_CLASSES  # the registry by name


class UnknownStudyError(ValueError):
    """A study name that is not one of STUDY_NAMES."""


def get_study(name: str) -> Study:
    """A fresh instance of the study called `name`; UnknownStudyError listing the valid names."""
    cls = STUDY_CLASSES.get(name)
    if cls is None:
        raise UnknownStudyError(f"unknown study {name!r}; valid: {', '.join(STUDY_NAMES)}")
    return cls()


__all__ = ["SCALES", "STUDIES", "STUDY_NAMES", "Study", "StudyFigure", "UnknownStudyError", "get_study"]
