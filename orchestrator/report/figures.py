"""The one figure module: every figure of a report (and of the web pages) is drawn here.

Each function takes plain data — numbers, lists, numpy arrays, labels — and returns a matplotlib
`Figure`; none reads the database. `to_png` / `to_svg` turn a figure into bytes. Matplotlib runs on
the Agg backend (no display needed) through the object API, so figures can be drawn from any thread
without touching pyplot's global state.

Conventions, so that a reader can compare figures:
- a configuration is named in words by its label ("s4d · inv · exp · frozen"), the leaderboard's;
- an accuracy is shown in percent, another metric (r²) as it is;
- a curve over seeds is the mean line with a min–max band (`SeedCurves`);
- artists carry the label of what they draw (`Line2D.get_label()`, `PathCollection.get_label()`),
  which is how the tests read the plotted data back.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")  # before any pyplot import anywhere: reports run without a display

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Readable at 100% zoom: figures are about 900 px wide at the PNG's dpi, text at 10 pt.
DPI = 100
WIDTH_IN = 9.0
HEIGHT_IN = 5.0
FONT_SIZE = 10
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")

RC = {
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE,
    "legend.fontsize": FONT_SIZE - 1,
    "svg.fonttype": "none",  # text stays text in the SVG: searchable, sharp, small
    "svg.hashsalt": "ssmbench",  # stable ids: the same data gives the same SVG
}


@dataclass(frozen=True)
class SeedCurves:
    """One configuration's curve over several seeds: `y[seed][i]` at `x[i]`; NaN where a seed has no
    value (it stopped early). Drawn as the mean over seeds with a min–max band."""

    label: str
    x: np.ndarray  # (points,)
    y: np.ndarray  # (seeds, points)
    # The configuration's place in the palette, so that it keeps its colour from figure to figure
    # when another figure lacks some configurations; None: its position in the figure.
    color_index: int | None = None

    @staticmethod
    def from_runs(
        label: str, runs: Sequence[Sequence[tuple[float, float]]], color_index: int | None = None
    ) -> SeedCurves:
        """From per-seed lists of (x, y) points, aligned on the union of their x values."""
        xs = sorted({x for run in runs for x, _ in run})
        column = {x: i for i, x in enumerate(xs)}
        y = np.full((len(runs), len(xs)), np.nan)
        for row, run in enumerate(runs):
            for x, value in run:
                y[row, column[x]] = np.nan if value is None else value
        return SeedCurves(label, np.asarray(xs, dtype=float), y, color_index)

    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, mean, min, max) over seeds where at least one seed has a value."""
        present = ~np.all(np.isnan(self.y), axis=0)
        y = self.y[:, present]
        return self.x[present], np.nanmean(y, axis=0), np.nanmin(y, axis=0), np.nanmax(y, axis=0)


@dataclass(frozen=True)
class SeedValues:
    """One configuration's final values, one per seed."""

    label: str
    values: np.ndarray  # (seeds,)
    seeds: Sequence[int] = ()


def metric_axis_label(metric: str, prefix: str) -> str:
    """ "validation accuracy (%)", "test r² (coefficient of determination)" …"""
    if metric == "accuracy":
        return f"{prefix} accuracy (%)"
    if metric == "r2":
        return f"{prefix} r² (1 = perfect fit)"
    return f"{prefix} {metric}"


def metric_scale(metric: str) -> float:
    """Factor from the stored value (a fraction for accuracy) to the plotted one (percent)."""
    return 100.0 if metric == "accuracy" else 1.0


F = TypeVar("F", bound=Callable)


def _styled(function: F) -> F:
    """Draw (or save) under the report's style: matplotlib reads font sizes when an artist is
    created and the SVG settings when the file is written, so both run inside the context."""

    @functools.wraps(function)
    def styled(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return function(*args, **kwargs)

    return styled  # type: ignore[return-value]


# --- figures -------------------------------------------------------------------------------------


@_styled
def seed_curves_figure(
    curves: Sequence[SeedCurves],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    scale: float = 1.0,
    log_y: bool = False,
    note: str | None = None,
) -> Figure:
    """Curves over seeds (validation metric vs epoch, drift vs epoch, accuracy vs noise frequency …):
    per configuration the mean over seeds as a line (labelled with the configuration) and the
    min–max band over seeds around it (labelled "<label> (min–max over seeds)"). `scale` multiplies
    every y value (100 for percent); `note` is a line under the title (e.g. "10 best of 40 groups")."""
    fig = _figure(height=_height_for_legend(len(curves)))
    ax = fig.add_subplot()
    indices = [i if c.color_index is None else c.color_index for i, c in enumerate(curves)]
    palette = _colors(max(indices, default=0) + 1)
    for curve, index in zip(curves, indices, strict=True):
        x, mean, low, high = curve.summary()
        seeds = curve.y.shape[0]
        color = palette[index]
        ax.plot(
            # a marker per configuration: curves that coincide (frozen ones at zero drift) stay visible
            x, mean * scale, color=color, marker=MARKERS[index % len(MARKERS)] if len(x) <= 30 else None,
            markersize=4, markerfacecolor="none" if index % 2 else color,
            label=f"{curve.label} (n={seeds})",
        )  # fmt: skip
        if seeds > 1:
            ax.fill_between(
                x, low * scale, high * scale, color=color, alpha=0.18 if len(curves) <= 4 else 0.1, linewidth=0,
                label=f"{curve.label} (min–max over seeds)",
            )  # fmt: skip
    if log_y:
        ax.set_yscale("log")
    else:
        _readable_linear_y(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, title, note)
    ax.grid(True, alpha=0.3)
    if _integer_axis(curves):
        ax.xaxis.get_major_locator().set_params(integer=True)
    _legend(ax, only_lines=True)
    return fig


@_styled
def seed_points_figure(
    groups: Sequence[SeedValues], *, title: str, xlabel: str, scale: float = 1.0, note: str | None = None
) -> Figure:
    """Final values per configuration, one row each (best mean on top): every seed as a dot, the mean
    as a bar with ±1 sample std whiskers. Dots carry the label "<label> seeds", the mean marker
    "<label> mean"."""
    height = max(HEIGHT_IN * 0.6, 0.9 + 0.38 * len(groups))
    fig = _figure(height=height)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter only separates overlapping dots vertically
    for row, group in enumerate(groups):
        y = len(groups) - 1 - row
        values = np.asarray(group.values, dtype=float) * scale
        jitter = rng.uniform(-0.12, 0.12, size=len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(
            values, y + jitter, s=18, color="tab:blue", alpha=0.75, zorder=3, label=f"{group.label} seeds"
        )
        mean = float(np.mean(values))
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        ax.errorbar(
            [mean], [y], xerr=[std], fmt="|", markersize=16, color="black", capsize=4, zorder=4,
            label=f"{group.label} mean",
        )  # fmt: skip
    ax.set_yticks(range(len(groups)), [f"{g.label} (n={len(g.values)})" for g in reversed(groups)])
    ax.set_ylim(-0.7, len(groups) - 0.3)
    ax.set_xlabel(xlabel)
    _title(ax, title, note or "dots: seeds · bar: mean ± 1 std")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


@_styled
def eigenvalue_plane_figure(
    series: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str = "Eigenvalues before and after training",
    discrete: bool = False,
    note: str = "grey circles: at initialization · coloured dots: at the end of training",
) -> Figure:
    """Eigenvalues in the complex plane, one panel per configuration `(label, before, after)`
    (complex arrays of any shape, flattened; panels share their axes): before as grey hollow circles
    ("<label> before"), after as coloured dots on top ("<label> after"). In one shared panel the
    configurations' many eigenvalues would hide each other. Continuous-time λ (`discrete=False`);
    discrete Ā (`discrete=True`) get the unit circle, the stability boundary."""
    columns = 1 if len(series) == 1 else 2
    rows = max(1, math.ceil(len(series) / columns))
    fig = _figure(height=1.0 + 3.4 * rows)
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (label, before, after), color in zip(axes, series, _colors(len(series)), strict=False):
        before, after = np.ravel(before), np.ravel(after)
        ax.scatter(
            before.real, before.imag, s=26, facecolors="none", edgecolors="0.45", linewidths=0.9,
            label=f"{label} before", zorder=2,
        )  # fmt: skip
        ax.scatter(after.real, after.imag, s=9, color=color, label=f"{label} after", zorder=3)
        ax.set_title(label, fontsize=FONT_SIZE, loc="left")
        ax.grid(True, alpha=0.3)
        if discrete:
            angle = np.linspace(0, 2 * np.pi, 361)
            ax.plot(np.cos(angle), np.sin(angle), color="grey", linewidth=0.8, label="_unit circle")
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    for ax in axes[: len(series)]:
        if ax.get_subplotspec().is_last_row() or ax is axes[len(series) - 1]:
            ax.set_xlabel("Re Ā (per step)" if discrete else "Re λ (decay rate, 1 / unit time)")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("Im Ā (per step)" if discrete else "Im λ (frequency, rad / unit time)")
    _title(axes[0], title, note)
    return fig


@_styled
def memory_function_figure(
    series: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str = "Memory function MF(τ) at initialization and at the end",
) -> Figure:
    """MF(τ) per configuration `(label, mf_init, mf_end)`, 1-D arrays over lags τ = 1, 2, … steps:
    at init dashed ("<label> init"), at the end solid ("<label> end"), on a logarithmic y axis (MF
    decays over orders of magnitude)."""
    fig = _figure(height=_height_for_legend(2 * len(series)))
    ax = fig.add_subplot()
    for (label, init, end), color in zip(series, _colors(len(series)), strict=True):
        for values, style, when in ((init, "--", "init"), (end, "-", "end")):
            values = np.asarray(values, dtype=float)
            lags = np.arange(1, len(values) + 1)
            ax.plot(lags, values, linestyle=style, color=color, label=f"{label} {when}")
    ax.set_yscale("log")
    ax.set_xlabel("lag τ (steps)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # lags are whole steps, however few
    ax.set_ylabel("MF(τ) (fraction of input variance)")
    _title(ax, title, "dashed: at initialization · solid: at the end of training")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return fig


# --- output --------------------------------------------------------------------------------------


@_styled
def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


@_styled
def to_svg(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def to_png_and_svg(fig: Figure) -> tuple[bytes, bytes]:
    """Both files, laying the figure out once: the constrained layout (measuring every text) is most
    of the time a figure takes, and it does not change between the two formats."""
    png = to_png(fig)
    fig.set_layout_engine("none")  # keep the positions computed for the PNG
    return png, to_svg(fig)


# --- internals -----------------------------------------------------------------------------------


def _figure(width: float = WIDTH_IN, height: float = HEIGHT_IN) -> Figure:
    # A Figure not attached to pyplot: garbage-collected when dropped, no global state.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _colors(n: int) -> list:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _title(ax, title: str, note: str | None) -> None:
    """Title (and a note under it) at the figure's left edge: over the axes it would be cut where
    long tick labels push the axes right."""
    fig = ax.get_figure()
    fig.suptitle(title if not note else f"{title}\n{note}", x=0.01, ha="left", fontsize=FONT_SIZE + 1)


def _legend(ax, only_lines: bool = False) -> None:
    """The legend under the axes, full width: configuration labels are long, and beside the axes
    they would squeeze the plot."""
    handles, labels = ax.get_legend_handles_labels()
    if only_lines:  # the bands share the line's colour: one entry per configuration
        keep = [(h, lbl) for h, lbl in zip(handles, labels, strict=True) if "(min–max" not in lbl]
        handles, labels = [h for h, _ in keep], [lbl for _, lbl in keep]
    if not handles:
        return
    columns = 2 if max(len(lbl) for lbl in labels) <= 48 and len(labels) > 3 else 1
    ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(0.0, -0.13), ncols=columns, frameon=False,
        borderaxespad=0.0,
    )  # fmt: skip


def _height_for_legend(entries: int, base: float = HEIGHT_IN) -> float:
    """Figure height: the axes keep `base` inches, the legend below gets a line per entry (two
    entries a line when they fit in two columns)."""
    return base + 0.5 + 0.2 * entries


def _readable_linear_y(ax) -> None:
    """No "1e-11+1.6e1" offset above the axis: a flat curve (a capacity that does not move) gets a
    ±5% range around its value instead of a range of rounding noise."""
    ax.ticklabel_format(axis="y", useOffset=False)
    low, high = ax.dataLim.intervaly
    if np.isfinite(low) and np.isfinite(high) and high - low <= 1e-9 * max(abs(low), abs(high), 1e-300):
        middle = (low + high) / 2
        half = 0.05 * abs(middle) or 1.0
        ax.set_ylim(middle - half, middle + half)


def _integer_axis(curves: Sequence[SeedCurves]) -> bool:
    return all(np.all(np.equal(np.mod(c.x, 1), 0)) for c in curves)
