"""Per-cell statistics over seeds, the best cell, and the two-way ANOVA with interaction."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm

from analysis.design import bounds
from analysis.guards import Guarded
from analysis.labels import fmt_number, fmt_p, plain, short_list

CI_LEVEL = 0.95


def pivot(g: Guarded, metric: str) -> pd.DataFrame:
    """One row per cell of the full grid (x levels outer, y inner): mean, std, n, the 95% CI
    of the mean, and the cell's grid points without a finished run (one column per status).

    std is the sample std (ddof=1), NaN for a single seed; n counts the runs with a value.
    The CI is mean ± t(0.975, n-1) · std/√n, clipped to the metric's range (an accuracy CI
    never leaves [0, 1]); NaN below 2 runs. Empty cells keep their row (n=0): nothing on the
    grid is silently dropped.
    """
    values = pd.to_numeric(g.runs[metric], errors="coerce")
    grouped = values.groupby([g.runs[g.x], g.runs[g.y]])
    stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1)})
    stats["n"] = grouped.count()
    index = pd.MultiIndex.from_product([g.x_levels, g.y_levels], names=[g.x, g.y])
    out = stats.reindex(index)
    out["n"] = out["n"].fillna(0).astype(int)
    n = out["n"].where(out["n"] >= 2)
    half = sps.t.ppf(0.5 + CI_LEVEL / 2, n - 1) * out["std"] / np.sqrt(n)
    low, high = bounds(metric)
    out["ci_lo"] = (out["mean"] - half).clip(lower=low)
    out["ci_hi"] = (out["mean"] + half).clip(upper=high)
    out = out.join(g.cells)
    return out.reset_index()


def best_cell(cells: pd.DataFrame, goal: str) -> pd.Series | None:
    """The cell with the best mean ('max' or 'min' goal); None when no cell has a value."""
    have = cells[cells["n"] > 0].dropna(subset=["mean"])
    if have.empty:
        return None
    return cells.loc[have["mean"].idxmax() if goal == "max" else have["mean"].idxmin()]


# Roles, not names, index the ANOVA table: a factor may be called anything, `residual`
# included (the skip-connection study), and must never collide with the error row.
ROLES = ("x", "y", "x:y", "residual")


@dataclass(frozen=True)
class Anova:
    """Two-way ANOVA of one metric (on some scale); `table` is None when skipped, and
    `reason` says why. Rows are ROLES; the `term` column names them for a reader."""

    metric: str  # as analysed: val/accuracy, or logit(val/accuracy)
    x: str
    y: str
    table: pd.DataFrame | None  # index ROLES; columns term, df, sum_sq, F, p, eta2_p
    reason: str | None
    n_obs: int

    def row(self, role: str) -> pd.Series | None:
        return None if self.table is None else self.table.loc[role]

    def effect(self, role: str = "x:y") -> str:
        """'F=8.9, p<1e-4, partial η² 0.69' for one term."""
        r = self.row(role)
        if r is None:
            return f"not tested: {self.reason}"
        p = fmt_p(r["p"])
        return f"F={_fmt_f(r['F'])}, p{p if p.startswith('<') else '=' + p}, " + (
            f"partial η² {fmt_number(r['eta2_p'], 2)}"
        )

    def lines(self) -> list[str]:
        head = f"{self.metric} ~ C({self.x}) * C({self.y}), type II"
        if self.table is None:
            return [f"{head}: skipped: {self.reason}"]
        # Columns as wide as their widest entry: a long factor name shifts nothing.
        width = max(len("term"), *(len(t) for t in self.table["term"]))
        out = [f"{head}, {self.n_obs} runs", f"{'term':<{width}}   df       F        p  part. η²"]
        for role, row in self.table.iterrows():
            cells = f"{row['term']:<{width}} {row['df']:>4.0f}"
            if role != "residual":
                cells += (
                    f" {_fmt_f(row['F']):>7} {fmt_p(row['p']):>8} {fmt_number(row['eta2_p'], 2):>9}"
                )
            out.append(cells)
        return out


def _fmt_f(f: float) -> str:
    return "–" if math.isnan(f) else f"{f:.1f}" if f < 1e4 else f"{f:.1e}"


def anova(
    g: Guarded,
    metric: str,
    cells: pd.DataFrame | None = None,
    scale: tuple[str, Callable[[pd.Series], pd.Series]] | None = None,
) -> Anova:
    """F, p and partial eta squared for x, y and x:y; needs >= 2 finished runs in every cell.

    With one seed per cell the interaction has no residual to be tested against (it *is*
    the residual), and an empty cell leaves the interaction unestimable, so both are refused
    in words rather than given as numbers that mean nothing. `scale` is (name, transform):
    the same test on, e.g., logit(accuracy).
    """
    cells = pivot(g, metric) if cells is None else cells
    few = cells[cells["n"] < 2]
    values = pd.to_numeric(g.runs[metric], errors="coerce")
    label = metric
    if scale is not None:
        label, values = f"{scale[0]}({metric})", scale[1](values)

    def skip(reason: str) -> Anova:
        return Anova(label, g.x, g.y, None, reason, int(cells["n"].sum()))

    if len(g.x_levels) < 2 or len(g.y_levels) < 2:
        return skip(f"needs >= 2 levels of each of {g.x} and {g.y}")
    if not few.empty:
        where = [f"{g.where(r[g.x], r[g.y], '/')} (n={int(r['n'])})" for _, r in few.iterrows()]
        return skip(
            f"ANOVA needs >= 2 finished runs per cell; cells with fewer: {short_list(where, 4)}"
        )
    # Formula names cannot hold '/' (val/accuracy) or clash with patsy's own words: rename.
    data = pd.DataFrame(
        {"m": values, "a": g.runs[g.x].map(_category), "b": g.runs[g.y].map(_category)}
    ).dropna()
    model = ols("m ~ C(a) * C(b)", data=data).fit()
    raw = anova_lm(model, typ=2)
    patsy_names = ("C(a)", "C(b)", "C(a):C(b)", "Residual")
    table = raw.rename(index=dict(zip(patsy_names, ROLES, strict=True)))
    table = table.rename(columns={"PR(>F)": "p"}).loc[list(ROLES)]
    ss_res = float(table.loc["residual", "sum_sq"])
    table["eta2_p"] = table["sum_sq"] / (table["sum_sq"] + ss_res)
    table.loc["residual", ["F", "p", "eta2_p"]] = math.nan
    table.insert(0, "term", [g.x, g.y, f"{g.x}:{g.y}", "residual"])
    table = table[["term", "df", "sum_sq", "F", "p", "eta2_p"]]
    return Anova(label, g.x, g.y, table, None, len(data))


def _category(value: Any) -> str:
    # Levels as strings: C() then treats 1e-3 and 1e-2 as names, never as a slope.
    return str(plain(value))
