"""Helpers the studies' figures share (each study module says which data its figures show, CLAIMS.md
"Draw: …"). The drawing itself is the report's one figure module, `orchestrator.report.figures`
(curves over seeds, seed points, eigenvalue planes, memory functions): a study figure is one of
those figures fed with the study's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .results import TrialOutcome


def drawing_module():
    from ..report import figures

    return figures


def curves(label: str, runs: Sequence[Sequence[tuple[float, float]]], color_index: int | None = None):
    """A `SeedCurves` from per-seed (x, y) points (NaN/None y left out of the mean)."""
    return drawing_module().SeedCurves.from_runs(label, [list(r) for r in runs if r], color_index)


def epoch_curves(label: str, trials: Sequence[TrialOutcome], key: str, color_index: int | None = None):
    """`curves` of the epoch metric `key` over the epochs counted from 1, one run per trial."""
    return curves(label, [[(e["epoch"] + 1, e.get(key)) for e in t.epochs] for t in trials], color_index)


def curves_figure(
    series: Sequence[Any],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_x: bool = False,
    log_y: bool = False,
    scale: float = 1.0,
    note: str | None = None,
):
    """`seed_curves_figure` of the report's module, with a logarithmic x axis when asked."""
    figure = drawing_module().seed_curves_figure(
        [s for s in series if s.x.size],
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        scale=scale,
        log_y=log_y,
        note=note,
    )
    if log_x:
        axis = figure.axes[0]
        axis.set_xscale("log")
        xs = sorted({float(x) for s in series for x in s.x})
        if len(xs) <= 12:  # a few settings (N, ε, ssm_lr): label each one as written, not 2×10⁰
            axis.set_xticks(xs, [f"{x:g}" for x in xs])
            axis.minorticks_off()
    return figure


def complex_pairs(pairs: Any) -> np.ndarray:
    values = np.asarray(pairs, dtype=float)
    return values[..., 0] + 1j * values[..., 1] if values.size else np.zeros(0, dtype=complex)


def layers_complex(per_layer: list[dict[str, Any]] | None, key: str) -> np.ndarray:
    # report.build._layers_complex differs on purpose: eigenvalues only, layers without any skipped,
    # and None (no figure) when no layer has any.
    if not per_layer:
        return np.zeros(0, dtype=complex)
    return np.concatenate([complex_pairs(layer[key]).ravel() for layer in per_layer])


def memory_function(layer: dict[str, Any]) -> np.ndarray:
    """A layer's stored MF(τ) per channel as floats; an unstable channel's None values as NaN."""
    return np.asarray(
        [[np.nan if v is None else v for v in row] for row in layer["memory_function"]], dtype=float
    )


def mean_memory_function(per_layer: list[dict[str, Any]] | None) -> np.ndarray | None:
    """MF(τ) averaged over channels (unstable ones left out) and layers."""
    # Not report.build._mean_memory_function, which pools all layers' channels (a layer with more
    # channels weighs more), cuts to the shortest lag and gives None where nothing is finite.
    if not per_layer:
        return None
    rows = []
    for layer in per_layer:
        mf = memory_function(layer)
        rows.append(np.nanmean(mf.reshape(-1, mf.shape[-1]), axis=0))
    return np.nanmean(np.asarray(rows), axis=0)


def seed_values(label: str, trials: Sequence[TrialOutcome], value) -> Any:
    pairs = [(t.seed, value(t)) for t in trials]
    pairs = [(s, v) for s, v in pairs if v is not None and math.isfinite(v)]
    return drawing_module().SeedValues(
        label, np.asarray([v for _, v in pairs], dtype=float), [s for s, _ in pairs]
    )


def by_seed(trials, x_of, y_of, key=lambda t: t.seed) -> list[list[tuple[float, float]]]:
    """Per `key` (default the seed) the (x, y) points of its trials."""
    runs: dict[Any, list[tuple[float, float]]] = {}
    for t in trials:
        y = y_of(t)
        runs.setdefault(key(t), []).append((x_of(t), np.nan if y is None else y))
    return list(runs.values())
