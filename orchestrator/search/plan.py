"""The studies of one search sweep, laid out from its validated spec.

A search sweep has one Optuna study per grid cell and task (`SweepSpec.search_cells`), named
`ssmbench-sweep{id}-cell{i}-task{j}-{task}`; its trials are the cell's config with the sampled values
at their paths and the sweep's first seed. The sweep stores `SweepSpec.trial_budget()` trials in all
(the figure `store.close_finished_sweeps` waits for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from ssm.config import TrialConfig

from ..spec import SpecError, SweepSpec, locate
from .pruning import PrunerArgs
from .space import SearchSpec, require_sampler, study_key

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution


@dataclass(frozen=True)
class StudyRef:
    """One study of a sweep: a grid cell (`model`, `optim` values) and a task."""

    index: int  # position in SearchPlan.studies
    name: str
    key: str  # space.study_key of its trials' configs
    model: dict[str, Any]
    optim: dict[str, Any]
    task_index: int
    config: TrialConfig  # the cell's config with the sweep's first seed, before sampling
    pruner_args: PrunerArgs


@dataclass(frozen=True)
class SearchPlan:
    """Everything the coordinator needs about one search sweep, derived from its spec."""

    sweep_id: int
    spec: SweepSpec
    search: SearchSpec
    axes: list[str]
    studies: list[StudyRef]
    by_key: dict[str, StudyRef]
    distributions: dict[str, BaseDistribution]
    grid: dict[str, list[Any]] | None
    budget: int

    @property
    def multi_objective(self) -> bool:
        return self.search.multi_objective

    @property
    def directions(self) -> list[str]:
        """The objective's direction, and the trainable parameter count's (minimized) for nsgaii."""
        first = self.search.objective.direction
        return [first, "minimize"] if self.multi_objective else [first]

    def study_of(self, config: dict[str, Any]) -> StudyRef | None:
        """The study a trial config (JSON form) belongs to."""
        return self.by_key.get(study_key(config, self.axes))


def build_plan(spec: SweepSpec, sweep_id: int = 0) -> SearchPlan:
    """Lay out the studies of a search sweep. Raises SpecError naming the key path when the search
    cannot run (a grid cell that is no valid config, two identical studies, a missing sampler)."""
    search = spec.search
    if search is None:
        raise SpecError("the sweep has no search block", ("search",))
    require_sampler(search.sampler)
    studies: list[StudyRef] = []
    for cell in spec.search_cells():
        # Hyperband's resource is epochs: the cell's own, unless epochs are searched too.
        max_resource = "auto" if "optim.epochs" in search.space else cell.config.optim.epochs
        studies.append(
            StudyRef(
                index=len(studies),
                name=f"ssmbench-sweep{sweep_id}-cell{cell.cell_index}-task{cell.task_index}-{cell.config.task.name}",
                key=cell.key,
                model=dict(cell.model),
                optim=dict(cell.optim),
                task_index=cell.task_index,
                config=cell.config,
                pruner_args=(
                    ("n_startup_trials", min(5, max(1, search.n_trials // 4))),
                    ("max_resource", max_resource),
                ),
            )
        )
    return SearchPlan(
        sweep_id=sweep_id,
        spec=spec,
        search=search,
        axes=spec.grid_axes(),
        studies=studies,
        by_key={ref.key: ref for ref in studies},
        distributions=search.distributions(),
        grid=search.grid(),
        budget=spec.trial_budget(),
    )


def validate_search(spec: SweepSpec, root: yaml.Node | None = None) -> None:
    """Raise SpecError unless the spec's search block (if any) can run here.

    `parse_spec` makes the same checks on every submission; this is for a SweepSpec made another
    way (`SweepSpec.model_validate` checks the block itself, not the grid cells or the sampler's
    package). `root`, the YAML node tree, adds line numbers."""
    if spec.search is None:
        return
    try:
        build_plan(spec)
    except SpecError as err:
        raise locate(err, root) from None
