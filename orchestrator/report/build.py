"""Which figures a report has, and writing the report directory.

    DIR/index.html           the page (written last)
    DIR/figures/NAME.png     each figure, and NAME.svg beside it
    DIR/summary.json         per configuration group mean ± std over seeds, and the claims

Everything is rendered into a temporary directory beside DIR first; only a complete report is
moved in (figures/ replaced as a whole, summary.json, then index.html), so a failed run leaves DIR as
it was.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import figures
from .data import ConfigGroup, ReportData, load_diagnostic_arrays, load_report_data
from .summary import build_summary, diagnostic_keys, epoch_scalar
from .transfer import json_safe

# How many configurations a figure draws per task: curves stay readable up to about ten lines, a
# strip of seed points up to about twenty rows. The best by mean test metric are drawn; summary.json
# and the leaderboard list them all.
MAX_CURVES = 10
MAX_POINT_ROWS = 20
MAX_ARRAY_GROUPS = 4

# (steps done, steps planned, what is being written now); a step is a figure, the last the page
Progress = Callable[[int, int, str], None]

# Per-epoch diagnostics: (axis label with units, title, log scale).
EPOCH_FIGURES: dict[str, tuple[str, str, bool]] = {
    "grad_over_weight_mean": (
        "‖∂L/∂θ‖ / ‖θ‖ (dimensionless ratio, mean over parameters)",
        "Gradient-over-weight ratio",
        True,
    ),
    "eigenvalue_drift_relative": (
        "mean |λ − λ₀| / mean |λ₀| (fraction)",
        "Eigenvalue drift since initialization",
        False,
    ),
    "memory_capacity": (
        "memory capacity Σ MF(τ) over lags τ (steps, mean over layers)",
        "Memory capacity",
        False,
    ),
}
# Per-quantity relative drift (`ssm.diagnostics.DRIFT_QUANTITIES`, epoch keys "drift_<name>").
# (what drifts, the relative drift written out)
DRIFT_TITLES = {
    "re_lambda": ("Re λ", "mean |Re λ − Re λ₀| / mean |Re λ₀|"),
    "im_lambda": ("Im λ", "mean |Im λ − Im λ₀| / mean |Im λ₀|"),
    "dt": ("Δt", "mean |Δt − Δt₀| / mean Δt₀"),
    "abs_Ab": ("|Ā|", "mean ||Ā| − |Ā₀|| / mean |Ā₀|"),
}


@dataclass
class ReportFigure:
    name: str  # file stem under figures/
    title: str
    caption: str
    figure: Any  # matplotlib Figure


def diagnostic_runs(data: ReportData) -> list[int]:
    """The trials whose diagnostic arrays the array figures draw: per task, the lowest seed of each
    of the best configurations."""
    return [
        group.trials[0].run_id for task in data.tasks for group in data.groups_of(task)[:MAX_ARRAY_GROUPS]
    ]


def report_figures(
    data: ReportData, arrays: dict[int, dict[str, Any]] | None = None
) -> Iterator[ReportFigure]:
    """The figures of these sweeps, drawn one at a time (a figure is dropped once written)."""
    arrays = arrays or {}
    for task in data.tasks:
        groups = data.groups_of(task)
        metric = groups[0].metric
        scale = figures.metric_scale(metric)
        on = f" on {task}"
        slug = _slug(task)

        shown = groups[:MAX_CURVES]
        yield ReportFigure(
            f"validation-{slug}",
            f"Validation {metric} per epoch{on}",
            "Mean over seeds (line) and the min–max range over seeds (band) of each configuration's "
            "validation metric after every epoch.",
            figures.seed_curves_figure(
                [_epoch_curves(g, i, lambda m: m.get("val_metric")) for i, g in enumerate(shown)],
                title=f"Validation {metric} per epoch{on}",
                xlabel="epoch",
                ylabel=figures.metric_axis_label(metric, "validation"),
                scale=scale,
                note=_shown_note(len(shown), len(groups)),
            ),
        )

        rows = groups[:MAX_POINT_ROWS]
        yield ReportFigure(
            f"test-{slug}",
            f"Test {metric}{on}",
            "Each seed's test metric at its best validation epoch (dots), the mean and ±1 sample "
            "standard deviation over seeds (bar); best configuration on top.",
            figures.seed_points_figure(
                [
                    figures.SeedValues(g.label, np.asarray(g.test_values), [t.seed for t in g.trials])
                    for g in rows
                ],
                title=f"Test {metric} at the best validation epoch{on}",
                xlabel=figures.metric_axis_label(metric, "test"),
                scale=scale,
                note=_shown_note(len(rows), len(groups), "dots: seeds · bar: mean ± 1 std"),
            ),
        )

        for key in diagnostic_keys(groups):
            if key in EPOCH_FIGURES:
                ylabel, title, log_y = EPOCH_FIGURES[key]
            elif _is_drift(key):
                quantity, ratio = DRIFT_TITLES[key[len("drift_") :]]
                ylabel = f"{ratio} (fraction)"
                title, log_y = f"Drift of {quantity} since initialization", False
            else:
                continue
            curves = [
                _epoch_curves(g, i, lambda m, key=key: epoch_scalar(m, key)) for i, g in enumerate(shown)
            ]
            curves = [c for c in curves if c.x.size]
            if not curves:
                continue
            yield ReportFigure(
                f"{_slug(key)}-{slug}",
                f"{title}{on}",
                "Per epoch where diagnostics were recorded: mean over seeds (line), min–max (band).",
                figures.seed_curves_figure(
                    curves,
                    title=f"{title} per epoch{on}",
                    xlabel="epoch",
                    ylabel=ylabel,
                    log_y=log_y,
                    note=_shown_note(len(shown), len(groups)),
                ),
            )

        fourier = [c for c in (_fourier_curves(g, i) for i, g in enumerate(shown)) if c is not None]
        if fourier:
            yield ReportFigure(
                f"fourier-noise-{slug}",
                f"Accuracy under Fourier-mode input noise{on}",
                "Test accuracy when a sinusoid of the given frequency is added to every input "
                "sequence: mean over seeds (line), min–max (band). Clean accuracy: the test figure.",
                figures.seed_curves_figure(
                    fourier,
                    title=f"Accuracy under Fourier-mode input noise{on}",
                    xlabel="noise frequency (cycles per step; 0.5 = Nyquist)",
                    ylabel="test accuracy under noise (%)",
                    scale=100.0,
                    note=_shown_note(len(fourier), len(groups)),
                ),
            )

        yield from _array_figures(groups[:MAX_ARRAY_GROUPS], arrays, on, slug)


def write_report(
    data: ReportData,
    out_dir: Path,
    *,
    arrays: dict[int, dict[str, Any]] | None = None,
    claims: Sequence[dict[str, Any]] = (),
    study_figures: Iterable[ReportFigure] = (),
    study: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Render the report of `data` into `out_dir` (created; other files in it are left alone).
    A study (orchestrator.studies) adds its claims, its own figures (drawn first) and `study`, the
    study's name, paper and scale, under "study" in summary.json. Returns the path of index.html."""
    from .html import render_index

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (staging / "figures").mkdir()
        written = []
        planned = _planned_count(data, arrays or {})
        for done, item in enumerate(itertools.chain(study_figures, report_figures(data, arrays))):
            if progress is not None:
                progress(done, max(planned, done) + 1, item.name)
            png, svg = figures.to_png_and_svg(item.figure)
            (staging / "figures" / f"{item.name}.png").write_bytes(png)
            (staging / "figures" / f"{item.name}.svg").write_bytes(svg)
            written.append({"name": item.name, "title": item.title, "caption": item.caption})
            item.figure.clear()
        summary = build_summary(data, claims)
        if study is not None:
            summary = {"study": study, **summary}
        (staging / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, default=str) + "\n")
        (staging / "index.html").write_text(render_index(data, summary, written))
        if progress is not None:
            progress(len(written), len(written) + 1, "summary.json and index.html")

        out_dir.mkdir(parents=True, exist_ok=True)
        figures_dir = out_dir / "figures"
        if figures_dir.exists():  # an older report's figures: moved aside, deleted with the staging
            os.replace(figures_dir, staging / "old-figures")
        os.replace(staging / "figures", figures_dir)
        os.replace(staging / "summary.json", out_dir / "summary.json")
        os.replace(staging / "index.html", out_dir / "index.html")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "index.html"


def build_report(
    session, sweep_ids: Sequence[int], out_dir: Path, *, progress: Progress | None = None
) -> Path:
    """Load the sweeps from the database and write their report (see `write_report`)."""
    data = load_report_data(session, sweep_ids)
    arrays = load_diagnostic_arrays(session, diagnostic_runs(data))
    return write_report(data, out_dir, arrays=arrays, progress=progress)


# --- from report data to figure data -------------------------------------------------------------


def _epoch_curves(
    group: ConfigGroup, color_index: int, value: Callable[[dict[str, Any]], float | None]
) -> figures.SeedCurves:
    """One curve per seed over epochs counted from 1; `color_index` the group's rank in its task."""
    runs = [
        [(m["epoch"] + 1, v) for m in trial.epochs if (v := value(m)) is not None and math.isfinite(v)]
        for trial in group.trials
    ]
    return figures.SeedCurves.from_runs(group.label, [r for r in runs if r] or [[]], color_index)


def _fourier_curves(group: ConfigGroup, color_index: int) -> figures.SeedCurves | None:
    runs = [
        [(row["frequency"], row["accuracy"]) for row in t.fourier if row.get("frequency") is not None]
        for t in group.trials
        if t.fourier
    ]
    runs = [r for r in runs if r]
    return figures.SeedCurves.from_runs(group.label, runs, color_index) if runs else None


def _array_figures(
    groups: Sequence[ConfigGroup], arrays: dict[int, dict[str, Any]], on: str, slug: str
) -> Iterator[ReportFigure]:
    labelled = [
        (f"{g.label} (seed {g.trials[0].seed})", arrays[g.trials[0].run_id])
        for g in groups
        if g.trials[0].run_id in arrays
    ]
    yield from array_figures(labelled, on, slug)


def array_figures(
    labelled: Sequence[tuple[str, dict[str, Any]]], on: str = "", slug: str = "trial"
) -> Iterator[ReportFigure]:
    """The eigenvalues in the complex plane and MF(τ), at initialization and at the end, of trials'
    diagnostic arrays `(label, {"init": per layer, "end": per layer, …})` (`load_diagnostic_arrays`);
    nothing for a trial without both snapshots. A sweep's report draws one trial per configuration,
    a trial's page its own."""
    eigenvalues = _init_and_end(labelled, _layers_complex)
    memory = _init_and_end(labelled, _mean_memory_function)
    if eigenvalues:
        yield ReportFigure(
            f"eigenvalues-{slug}",
            f"Eigenvalues before and after training{on}",
            "Continuous-time eigenvalues λ of every SSM layer of one seed per configuration, at "
            "initialization (hollow) and at the end of training (filled).",
            figures.eigenvalue_plane_figure(eigenvalues, title=f"Eigenvalues before and after training{on}"),
        )
    if memory:
        yield ReportFigure(
            f"memory-function-{slug}",
            f"Memory function at initialization and at the end{on}",
            "MF(τ) averaged over the layers' channels, one seed per configuration: at "
            "initialization (dashed) and at the end of training (solid).",
            figures.memory_function_figure(memory, title=f"Memory function MF(τ){on}"),
        )


def _init_and_end(
    labelled: Sequence[tuple[str, dict[str, Any]]],
    quantity: Callable[[Sequence[dict[str, Any]]], np.ndarray | None],
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """`(label, quantity at init, quantity at the end)` of each trial whose arrays have both
    snapshots and give the quantity (not None) from both."""
    series = []
    for label, stored in labelled:
        if not stored or not stored.get("init") or not stored.get("end"):
            continue
        before, after = quantity(stored["init"]), quantity(stored["end"])
        if before is not None and after is not None:
            series.append((label, before, after))
    return series


def _layers_complex(per_layer: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """The eigenvalues of every layer (each a nested list ending in [re, im] pairs) as one array."""
    # studies.figures.layers_complex differs on purpose: any key, and empty input gives an empty array.
    values = []
    for layer in per_layer:
        pairs = np.asarray(layer.get("eigenvalues") or [], dtype=float)
        if pairs.size:
            pairs = pairs.reshape(-1, 2)
            values.append(pairs[:, 0] + 1j * pairs[:, 1])
    return np.concatenate(values) if values else None


def _mean_memory_function(per_layer: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """MF(τ) averaged over every channel of every layer (NaN — stored as None — ignored)."""
    # Not studies.figures.mean_memory_function (layers weighted equally, equal lags): this pools the
    # channels of all layers, cuts to the shortest lag, and gives None where nothing is finite.
    rows = []
    for layer in per_layer:
        mf = layer.get("memory_function")
        if mf:
            table = np.asarray(
                [[np.nan if v is None else v for v in row] for row in np.atleast_2d(mf).tolist()]
            )
            rows.append(table)
    if not rows:
        return None
    lags = min(r.shape[1] for r in rows)
    stacked = np.concatenate([r[:, :lags] for r in rows])
    with np.errstate(all="ignore"):
        mean = np.nanmean(stacked, axis=0)
    return mean if np.isfinite(mean).any() else None


def _planned_count(data: ReportData, arrays: dict[int, Any]) -> int:
    """About how many figures `report_figures` yields (for the progress line)."""
    count = 0
    for task in data.tasks:
        groups = data.groups_of(task)
        drawn = [k for k in diagnostic_keys(groups) if k in EPOCH_FIGURES or _is_drift(k)]
        count += 2 + len(drawn) + any(t.fourier for g in groups for t in g.trials)
        count += 2 * any(g.trials[0].run_id in arrays for g in groups[:MAX_ARRAY_GROUPS])
    return count


def _is_drift(key: str) -> bool:
    return key.startswith("drift_") and key[len("drift_") :] in DRIFT_TITLES


def _shown_note(shown: int, total: int, extra: str | None = None) -> str | None:
    parts = [f"the {shown} best of {total} configurations by mean test metric"] if shown < total else []
    if extra:
        parts.append(extra)
    return " · ".join(parts) or None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
