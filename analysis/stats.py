"""Per-cell statistics over seeds, the best cell, and the two-way ANOVA with interaction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm

from analysis.guards import Guarded
from analysis.labels import fmt_number, fmt_p, plain, short_list
from sweepmap import keys


def pivot(g: Guarded, metric: str) -> pd.DataFrame:
    """One row per cell of the full grid (x levels outer, y inner): mean, std, n, failures.

    std is the sample std (ddof=1), NaN for a single seed; n counts the runs with a value.
    Empty cells keep their row (n=0), so nothing on the grid is silently dropped.
    """
    values = pd.to_numeric(g.runs[metric], errors="coerce")
    grouped = values.groupby([g.runs[g.x], g.runs[g.y]])
    stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1)})
    stats["n"] = grouped.count()
    index = pd.MultiIndex.from_product([g.x_levels, g.y_levels], names=[g.x, g.y])
    out = stats.reindex(index)
    out["n"] = out["n"].fillna(0).astype(int)
    out = out.join(g.cells)
    return out.reset_index()


def best_cell(cells: pd.DataFrame, metric: str) -> pd.Series | None:
    """The cell with the best mean, by the metric's goal; None when no cell has a value."""
    have = cells[cells["n"] > 0].dropna(subset=["mean"])
    if have.empty:
        return None
    pick = have["mean"].idxmax() if keys.goal_of(metric) == "max" else have["mean"].idxmin()
    return cells.loc[pick]


def describe_best(g: Guarded, cells: pd.DataFrame, metric: str) -> str:
    best = best_cell(cells, metric)
    if best is None:
        return f"best {metric}: no cell has a value"
    spread = "" if math.isnan(best["std"]) else f" ± {fmt_number(best['std'])}"
    return (
        f"best {metric} ({keys.goal_of(metric)}): {g.where(best[g.x], best[g.y])}: "
        f"{fmt_number(best['mean'])}{spread} (n={int(best['n'])})"
    )


@dataclass(frozen=True)
class Anova:
    """Two-way ANOVA of one metric; `table` is None when skipped, and `reason` says why."""

    metric: str
    x: str
    y: str
    table: pd.DataFrame | None  # rows x, y, x:y, residual; columns df, sum_sq, F, p, eta2_p
    reason: str | None
    n_obs: int

    def lines(self) -> list[str]:
        head = f"two-way ANOVA of {self.metric} ~ C({self.x}) * C({self.y}), type II"
        if self.table is None:
            return [f"{head}: skipped: {self.reason}"]
        out = [f"{head}, {self.n_obs} runs", "term           df       F        p  partial η²"]
        for term, row in self.table.iterrows():
            if term == "residual":
                out.append(f"{term:<12} {row['df']:>4.0f}")
                continue
            out.append(
                f"{term:<12} {row['df']:>4.0f} {_fmt_f(row['F']):>7} {fmt_p(row['p']):>8}"
                f" {fmt_number(row['eta2_p'], 2):>11}"
            )
        return out


def _fmt_f(f: float) -> str:
    return "–" if math.isnan(f) else f"{f:.1f}" if f < 1e4 else f"{f:.1e}"


def anova(g: Guarded, metric: str, cells: pd.DataFrame | None = None) -> Anova:
    """F, p and partial eta squared for x, y and x:y; needs >= 2 seeds in every cell.

    With one seed per cell the interaction has no residual to be tested against (it *is*
    the residual), and an empty cell leaves the interaction unestimable, so both are refused
    in words rather than given as numbers that mean nothing.
    """
    cells = pivot(g, metric) if cells is None else cells
    few = cells[cells["n"] < 2]

    def skip(reason: str) -> Anova:
        return Anova(metric, g.x, g.y, None, reason, int(cells["n"].sum()))

    if len(g.x_levels) < 2 or len(g.y_levels) < 2:
        return skip(f"needs >= 2 levels of each of {g.x} and {g.y}")
    if not few.empty:
        where = [f"{g.where(r[g.x], r[g.y], '/')} (n={int(r['n'])})" for _, r in few.iterrows()]
        return skip(f"ANOVA needs >= 2 seeds per cell; cells with fewer: {short_list(where, 4)}")
    # Formula names cannot hold '/' (val/accuracy) or clash with patsy's own words: rename.
    data = pd.DataFrame(
        {
            "m": pd.to_numeric(g.runs[metric], errors="coerce"),
            "a": g.runs[g.x].map(_category),
            "b": g.runs[g.y].map(_category),
        }
    ).dropna()
    model = ols("m ~ C(a) * C(b)", data=data).fit()
    raw = anova_lm(model, typ=2)
    names = {"C(a)": g.x, "C(b)": g.y, "C(a):C(b)": f"{g.x}:{g.y}", "Residual": "residual"}
    table = raw.rename(index=names).rename(columns={"PR(>F)": "p"})
    ss_res = float(table.loc["residual", "sum_sq"])
    ss = table["sum_sq"]
    table["eta2_p"] = ss / (ss + ss_res)
    table.loc["residual", ["F", "p", "eta2_p"]] = math.nan
    table = table[["df", "sum_sq", "F", "p", "eta2_p"]]
    return Anova(metric, g.x, g.y, table, None, len(data))


def _category(value: Any) -> str:
    # Levels as strings: C() then treats 1e-3 and 1e-2 as names, never as a slope.
    return str(plain(value))
