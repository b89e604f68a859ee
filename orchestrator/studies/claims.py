"""Claims and the rules that decide them, fixed before any run (DESIGN.md "studies").

A claim is judged on one quantity: either a sample over seeds (a difference between two arms
paired by seed, a drift, a ratio …), summarized by its mean and a 95% Student-t interval, or a
number computed directly (no seeds: no interval). A rule turns the interval into a verdict:

- `at_least(margin)`:  holds when the whole interval is ≥ −margin, fails when it is all below −margin
  ("frozen ≥ trained − 1 point"); otherwise inconclusive.
- `positive()`:        holds when the interval is all > 0, fails when it is all < 0.
- `below(limit)`:      holds when the interval is all < limit, fails when it is all > limit.
- `threshold(...)`:    a directly computed value against a limit (no interval): holds or fails.

Fewer than two values, or a non-finite one, give no interval and the verdict `inconclusive`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

Verdict = Literal["holds", "fails", "inconclusive"]
VERDICTS: tuple[str, ...] = ("holds", "fails", "inconclusive")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of a sample and its two-sided 95% Student-t interval (None with fewer than 2 values)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t_{(1+c)/2, n−1} · s / √n over the finite values (s: the sample std, ddof 1)."""
    sample = np.asarray([v for v in values if v is not None], dtype=float)
    sample = sample[np.isfinite(sample)]
    n = int(sample.size)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = float(sample.mean())
    if n < 2:
        return Interval(mean, None, None, n)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * sample.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class Rule:
    """A decision on an interval (or a directly computed value), described in words for summary.json."""

    text: str
    decide: Callable[[Interval], Verdict]

    def __call__(self, interval: Interval) -> Verdict:
        return self.decide(interval)


def interval_rule(
    text: str, holds: Callable[[float, float], bool], fails: Callable[[float, float], bool]
) -> Rule:
    """A rule on the interval's ends (low, high): "holds" when `holds(low, high)`, else "fails" when
    `fails(low, high)`, else (or with no interval) "inconclusive"."""

    def decide(iv: Interval) -> Verdict:
        if iv.low is None or iv.high is None:
            return "inconclusive"
        if holds(iv.low, iv.high):
            return "holds"
        if fails(iv.low, iv.high):
            return "fails"
        return "inconclusive"

    return Rule(text, decide)


def at_least(margin: float, what: str) -> Rule:
    """Holds when the interval's low end ≥ −margin, fails when its high end < −margin."""
    return interval_rule(
        f"holds if the 95% interval of {what} lies at or above −{margin:g}; fails if it lies "
        f"below −{margin:g}; inconclusive otherwise",
        holds=lambda low, high: low >= -margin,
        fails=lambda low, high: high < -margin,
    )


def positive(what: str) -> Rule:
    """Holds when the interval is all above 0, fails when it is all below 0."""
    return interval_rule(
        f"holds if the 95% interval of {what} lies above 0; fails if it lies below 0; inconclusive otherwise",
        holds=lambda low, high: low > 0,
        fails=lambda low, high: high < 0,
    )


def negative(what: str) -> Rule:
    """Holds when the interval is all below 0, fails when it is all above 0."""
    return interval_rule(
        f"holds if the 95% interval of {what} lies below 0; fails if it lies above 0; inconclusive otherwise",
        holds=lambda low, high: high < 0,
        fails=lambda low, high: low > 0,
    )


def below(limit: float, what: str) -> Rule:
    """Holds when the interval is all below `limit`, fails when it is all above it."""
    return interval_rule(
        f"holds if the 95% interval of {what} lies below {limit:g}; fails if it lies above "
        f"{limit:g}; inconclusive otherwise",
        holds=lambda low, high: high < limit,
        fails=lambda low, high: low > limit,
    )


def outside(low: float, high: float, what: str) -> Rule:
    """Holds when the interval excludes [low, high] entirely, fails when it lies inside it: "changes"
    means by more than the band, "no change" means within it."""
    band_low, band_high = low, high
    return interval_rule(
        f"holds if the 95% interval of {what} lies outside [{low:g}, {high:g}]; fails if it lies "
        f"inside it; inconclusive otherwise",
        holds=lambda low, high: low > band_high or high < band_low,
        fails=lambda low, high: low >= band_low and high <= band_high,
    )


def threshold(test: Callable[[float], bool], text: str) -> Rule:
    """A directly computed value (no interval): holds when `test(value)`, else fails; no value:
    inconclusive."""

    def decide(iv: Interval) -> Verdict:
        if iv.mean is None or not math.isfinite(iv.mean):
            return "inconclusive"
        return "holds" if test(iv.mean) else "fails"

    return Rule(text, decide)


@dataclass(frozen=True)
class ClaimDefinition:
    """A claim of a paper and the test that decides it, fixed in the study's code before any run."""

    id: str
    paper: str
    statement: str  # the paper's claim, in short
    quantity: str  # what is measured, with units
    rule: Rule


def judged(
    claim: ClaimDefinition, interval: Interval, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The claim as summary.json holds it: `{id, paper, statement, quantity, value, ci, n, rule,
    verdict}` (+ `details`, the numbers behind the value)."""
    record = {
        "id": claim.id,
        "paper": claim.paper,
        "statement": claim.statement,
        "quantity": claim.quantity,
        "value": interval.mean,
        "ci": None if interval.low is None else [interval.low, interval.high],
        "n": interval.n,
        "rule": claim.rule.text,
        "verdict": claim.rule(interval),
    }
    if details:
        record["details"] = details
    return record


def direct(value: float | None) -> Interval:
    """A directly computed value as an interval without width (n = 1)."""
    if value is None or not math.isfinite(value):
        return Interval(None, None, None, 0)
    return Interval(float(value), None, None, 1)


__all__ = [
    "CONFIDENCE",
    "VERDICTS",
    "ClaimDefinition",
    "Interval",
    "Rule",
    "Verdict",
    "at_least",
    "below",
    "direct",
    "judged",
    "negative",
    "outside",
    "positive",
    "t_interval",
    "threshold",
]
