"""What a page reads from one metric's cells: its colour range, the cells tied with the best,
the scale check near a bound, and the one line of finding.

Each choice is stated where it is drawn (GUIDE section 11): the colour range and the cells it
leaves out, the test and the family behind "tied with the best", and whether an interaction
survives a monotone transform (a "removable" interaction, Loftus 1978).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import studentized_range

from analysis.design import bounds
from analysis.guards import Guarded
from analysis.labels import decimals_for, fmt_fixed, fmt_number, is_number
from analysis.stats import Anova, anova, best_cell, pivot

ALPHA = 0.05
NEAR = 0.05  # a cell mean this close to 0 or 1 is near the bound of an accuracy
NEAR_SHARE = 0.25  # the scale check runs when at least this share of cells is near it
LOG_SPAN = 10.0  # a loss whose cell means span this factor is coloured on a log scale
EPS = 1e-3  # logit(0) and logit(1) are infinite: accuracies are clipped to [EPS, 1 - EPS]

Cell = tuple[Any, Any]


@dataclass(frozen=True)
class ColourRange:
    vmin: float
    vmax: float
    clipped: list[Cell]  # cells beyond the range, on the bad side: drawn at its end colour
    mark: str  # ▼ below (goal max) or ▲ above (goal min): the sign in a clipped cell
    how: str  # the legend's sentence
    log: bool = False  # coloured on a log scale (a loss spanning a factor of LOG_SPAN)


@dataclass(frozen=True)
class Ties:
    best: Cell | None
    tied: list[Cell]  # the best cell and those whose mean the test cannot tell from it
    family: str  # the test, its alpha and its family, in words
    tested: bool
    left_out: list[Cell]  # cells with runs kept out of the family (see tie_set)


@dataclass(frozen=True)
class ScaleCheck:
    text: str  # one line for the page; "" when the metric has no [0, 1] bound
    result: Anova | None
    removable: bool  # the interaction is significant on the raw scale and not on logit


@dataclass(frozen=True)
class MetricResult:
    metric: str
    goal: str
    cells: pd.DataFrame
    decimals: int | None  # None: three significant digits each (labels.decimals_for)
    colour: ColourRange
    ties: Ties
    anova: Anova
    scale: ScaleCheck

    def fmt(self, value: Any) -> str:
        return fmt_fixed(value, self.decimals)


def analyse(g: Guarded, metric: str) -> MetricResult:
    cells = pivot(g, metric)
    goal = g.goal(metric)
    decimals = decimals_for(cells["mean"].dropna())
    colour = colour_range(cells, g, metric, goal, decimals)
    result = anova(g, metric, cells)
    return MetricResult(
        metric,
        goal,
        cells,
        decimals,
        colour,
        tie_set(g, metric, cells, goal, colour),
        result,
        scale_check(g, metric, cells, result),
    )


def _cell(row: pd.Series, g: Guarded) -> Cell:
    return (row[g.x], row[g.y])


def colour_range(
    cells: pd.DataFrame, g: Guarded, metric: str, goal: str, decimals: int | None
) -> ColourRange:
    """The cell means' range, but a few diverged cells do not get to stretch it: on the bad
    side the range stops at Tukey's fence (Q1 - 1.5 IQR of the cell means for a goal of max,
    Q3 + 1.5 IQR for min); cells beyond it are drawn at the end colour and marked.

    A loss (>= 0) whose cell means span a factor of LOG_SPAN or more is coloured on a log
    scale, and fenced there: 0.05 and 0.14 are told apart beside a diverged 2.0, which on a
    linear scale would leave them one yellow.
    """
    have = cells[cells["n"] > 0].dropna(subset=["mean"])
    means = have["mean"].astype(float)
    if means.empty:
        return ColourRange(0.0, 1.0, [], "", "colour: no cell has a value")
    log = bounds(metric) == (0.0, math.inf) and means.min() > 0
    log = bool(log and means.max() / means.min() >= LOG_SPAN)
    scaled = np.log10(means) if log else means
    lo, hi = float(scaled.min()), float(scaled.max())
    q1, q3 = (float(q) for q in scaled.quantile([0.25, 0.75]))
    out = pd.Series(False, index=scaled.index)
    if len(means) >= 4:
        if goal == "max" and q1 - 1.5 * (q3 - q1) > lo:
            lo = q1 - 1.5 * (q3 - q1)
            out = scaled < lo
        elif goal == "min" and q3 + 1.5 * (q3 - q1) < hi:
            hi = q3 + 1.5 * (q3 - q1)
            out = scaled > hi
    if log:
        lo, hi = 10**lo, 10**hi
    clipped = [_cell(r, g) for _, r in have[out].iterrows()]
    mark = "▼" if goal == "max" else "▲"
    scale = "log colour scale, " if log else ""
    span = f"colour: {scale}cell means {fmt_fixed(lo, decimals)} to {fmt_fixed(hi, decimals)}"
    if not clipped:
        return ColourRange(lo, hi, [], mark, f"{span} (their full range)", log)
    side, fence = ("below", "Q1-1.5 IQR") if goal == "max" else ("above", "Q3+1.5 IQR")
    how = f"{span}; {len(clipped)} cell(s) {side} it ({fence} of the cell means) marked {mark}"
    return ColourRange(lo, hi, clipped, mark, how, log)


def tie_set(g: Guarded, metric: str, cells: pd.DataFrame, goal: str, colour: ColourRange) -> Ties:
    """The cells whose mean Tukey's HSD cannot tell from the best one's, at ALPHA.

    Tukey's test pools one variance over its family. The family: every cell with >= 2 runs,
    except cells past the colour range and cells whose spread is an outlier among the cells'
    (std past Q3 + 1.5 IQR of the cell stds: some seeds diverged). One such cell would swell
    the pooled variance until a cell at 0.92 looked tied with one at 0.99; they are named as
    left out, neither tied nor told apart.
    """
    best = best_cell(cells, goal)
    if best is None:
        return Ties(None, [], "no cell has a value", False, [])
    top = _cell(best, g)
    tested = cells[cells["n"] >= 2]
    std = tested["std"]
    q1, q3 = (float(q) for q in std.quantile([0.25, 0.75])) if len(std) else (0.0, 0.0)
    wild = tested[std > q3 + 1.5 * (q3 - q1)] if len(std) >= 4 else tested.iloc[:0]
    out = [*colour.clipped, *(c for c in (_cell(r, g) for _, r in wild.iterrows()))]
    out = list(dict.fromkeys(c for c in out if c != top))
    members = [c for c in (_cell(r, g) for _, r in tested.iterrows()) if c not in out]
    if top not in members or len(members) < 2:
        why = "not tested: needs >= 2 runs in the best cell and in another"
        return Ties(top, [top], why, False, [])
    by = cells.set_index([g.x, g.y])
    stats = by.loc[members, ["mean", "std", "n"]]
    # Tukey-Kramer, as statsmodels' pairwise_tukeyhsd computes it (tested equal), but only
    # the pairs with the best cell: one critical value instead of every pair's p-value.
    df = int(stats["n"].sum()) - len(members)
    mse = float(((stats["n"] - 1) * stats["std"] ** 2).sum()) / df
    crit = q_critical(len(members), df)
    best_mean, best_n = by.loc[top, "mean"], by.loc[top, "n"]
    tied = [top]
    for c in members:
        if c == top:
            continue
        diff = abs(best_mean - by.loc[c, "mean"])
        se = math.sqrt(mse / 2 * (1 / best_n + 1 / by.loc[c, "n"]))
        if (diff / se <= crit) if se > 0 else diff == 0:
            tied.append(c)
    family = f"Tukey HSD, α={ALPHA}, family: the {len(members)} cells with >= 2 runs"
    if out:
        family += " and a common spread"
    return Ties(top, tied, family, True, out)


@functools.lru_cache(maxsize=64)
def q_critical(k: int, df: int) -> float:
    """The studentized range's 1 - ALPHA quantile (scipy integrates it: ~0.5 s, so once)."""
    return float(studentized_range.ppf(1 - ALPHA, k, df))


def logit(values: pd.Series) -> pd.Series:
    v = values.clip(EPS, 1 - EPS)
    return np.log(v / (1 - v))


def scale_check(g: Guarded, metric: str, cells: pd.DataFrame, raw: Anova) -> ScaleCheck:
    """Near a bound an interaction can be the scale's, not the factors': at 0.99 the same
    gain is a smaller step than at 0.90. Test it again on logit(metric) and say what holds."""
    if bounds(metric) != (0.0, 1.0):
        return ScaleCheck("", None, False)
    means = cells["mean"].dropna()
    near = int(((means >= 1 - NEAR) | (means <= NEAR)).sum())
    where = f"{near} of {len(means)} cell means within {NEAR} of 0 or 1"
    if not len(means) or near < NEAR_SHARE * len(means):
        return ScaleCheck(f"scale check: {where}: not needed", None, False)
    if raw.table is None:  # the same reason holds on any scale; it is printed above
        return ScaleCheck(f"scale check: {where}; not possible: the ANOVA is skipped", None, False)
    result = anova(g, metric, cells, scale=("logit", logit))
    raw_row, row = raw.row("x:y"), result.row("x:y")
    if raw_row is None or row is None:
        return ScaleCheck(f"scale check: {where}; not possible: {result.reason}", result, False)
    before, after = raw_row["p"] < ALPHA, row["p"] < ALPHA
    term = f"the {g.x} x {g.y} interaction"
    on = f"on logit({metric}), clipped to [{EPS}, {1 - EPS}]"
    effect = result.effect()
    if before and after:
        verdict = f"{term} holds {on} ({effect})"
        raw_eta, eta = raw_row["eta2_p"], row["eta2_p"]
        if eta < raw_eta - 0.1:  # a much weaker interaction: part of it was the ceiling
            verdict += (
                f", weaker there (partial η² {fmt_number(raw_eta, 2)} raw): part of it is the "
                "scale's ceiling"
            )
    elif before:
        verdict = (
            f"{term} vanishes {on} ({effect}): it may be removable, a ceiling of the scale "
            "(Loftus 1978); do not claim it"
        )
    elif after:
        verdict = f"{term}, absent on the raw scale, appears {on} ({effect}): read with care"
    else:
        verdict = f"no {g.x} x {g.y} interaction on either scale ({on}: {effect})"
    return ScaleCheck(f"scale check: {where}: {verdict}", result, before and not after)


def best_per_level(g: Guarded, r: MetricResult) -> list[tuple[Any, Any]]:
    """(y level, its best x level) for every y level with a value."""
    out = []
    for b in g.y_levels:
        sub = r.cells[(r.cells[g.y] == b) & (r.cells["n"] > 0)].dropna(subset=["mean"])
        if not sub.empty:
            pick = sub["mean"].idxmax() if r.goal == "max" else sub["mean"].idxmin()
            out.append((b, sub.loc[pick, g.x]))
    return out


def finding(g: Guarded, r: MetricResult) -> str:
    """The data's plain reading in one line: where the best x lies for each y, and whether
    the interaction test (and the scale check) backs a claim that it depends on y."""
    per = best_per_level(g, r)
    if not per:
        return f"no cell has a value of {r.metric}"
    # "sgd 1e-1" reads as it is; "0.2 128" does not: numeric levels get an arrow.
    sep = " → " if all(is_number(b) for b, _ in per) else " "
    listing = ", ".join(f"{g.label(g.y, b)}{sep}{g.label(g.x, a)}" for b, a in per)
    row = r.anova.row("x:y")
    effect = f"({g.x} x {g.y}: {r.anova.effect()})"
    if row is None or math.isnan(row["p"]):
        why = (
            "a cell has < 2 finished runs"
            if "runs per cell" in str(r.anova.reason)
            else "see below"
        )
        same = len({a for _, a in per}) == 1
        text = (
            f"the best {g.x} is {g.label(g.x, per[0][1])} for every {g.y}"
            if same
            else f"best {g.x} per {g.y}: {listing}"
        )
        text += f"; whether that depends on the {g.y} is not tested ({why})"
    elif row["p"] < ALPHA and len({a for _, a in per}) > 1:
        text = f"the best {g.x} depends on the {g.y}: {listing} {effect}"
    elif row["p"] < ALPHA:
        text = (
            f"the best {g.x} is {g.label(g.x, per[0][1])} for every {g.y}, but how much {g.x} "
            f"matters depends on the {g.y} {effect}"
        )
    else:
        text = f"no evidence that the effect of {g.x} depends on the {g.y} {effect}"
        # "best: 0 → 32" would not say which number is which
        text += f"; best {g.x} per {g.y}: {listing}" if sep == " → " else f"; best: {listing}"
    if r.scale.removable:
        text += "; on the logit scale it vanishes: maybe a ceiling, not an interaction"
    return text
