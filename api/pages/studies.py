"""The built-in studies the /studies page lists (`../shared/CLAIMS.md`, issue 15 §2).

Until the studies exist in the orchestrator, this is their name, paper and question; no run of one
is stored yet, so the page says so. When they land, the page should take this list (and each run's
verdict table and figures) from the study registry instead, and this module goes away.
"""

from __future__ import annotations

from typing import NamedTuple


class StudyEntry(NamedTuple):
    name: str
    paper: str
    question: str


BUILT_IN_STUDIES: tuple[StudyEntry, ...] = (
    StudyEntry(
        "memory",
        "Guan, Kubota, Kuniyoshi, Nakajima — Memory determines learning direction",
        "Does the initial memory function decide what an SSM learns, and do frozen eigenvalues "
        "(reservoir computing) match trained ones?",
    ),
    StudyEntry(
        "reparam",
        "Wang, Li — Stable reparameterization alleviates the curse of memory",
        "Does a stable reparameterization keep the gradient-over-weight ratio bounded and approximate "
        "polynomially decaying memory?",
    ),
    StudyEntry(
        "state-size",
        "Biderman, Smékal, Smith, Kleinman, Linderman — Learning dynamics in deep state space models",
        "How do the latent state size and the input's covariance change a linear SSM's convergence time?",
    ),
    StudyEntry(
        "ptd",
        "Gu, Gupta, Goel, Ré — S4D; Yu, Nigmetov, Morozov, Mahoney, Erichson — perturb-then-diagonalize",
        "Do PTD initializations converge strongly to HiPPO and resist Fourier-mode input noise?",
    ),
)
