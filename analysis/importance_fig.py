"""The importance figure: main effects and pair interactions as bars with their bootstrap
intervals, and the surrogate's mean prediction over the top pair as a small heatmap."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.labels import fmt_levels, fmt_number
from analysis.scan_runs import Param

if TYPE_CHECKING:
    from analysis.importance import Bootstrap

MAX_PAIRS = 10  # bars of pairs drawn; the table has them all


def _bars(ax: Any, rows: pd.DataFrame, colour: str, title: str, interval: float) -> None:
    rows = rows.iloc[::-1]  # the largest on top
    y = np.arange(len(rows))
    err = np.vstack([rows["share"] - rows["lo"], rows["hi"] - rows["share"]]).clip(min=0)
    ax.barh(y, rows["share"], xerr=err, color=colour, ecolor="0.25", capsize=3)
    ax.set_yticks(y, rows["parameters"])
    ax.set_xlabel(f"share of the surrogate's variance (median, {interval:.0%} interval)")
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_xlim(0, max(0.05, float(rows["hi"].max()) * 1.1))
    for yi, (share, hi, first) in enumerate(
        zip(rows["share"], rows["hi"], rows["first"], strict=True)
    ):
        ax.text(hi, yi, f"  {share:.2f} · first {first:.0%}", va="center", fontsize=8)


def importance_figure(
    boot: Bootstrap,
    table: pd.DataFrame,
    params: list[Param],
    metric: str,
    goal: str,
    title: str,
    interval: float,
) -> Figure:
    mains = table[table["kind"] == "main"]
    pairs = table[table["kind"] == "pair"].head(MAX_PAIRS)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    grid = fig.add_gridspec(
        2, 2, width_ratios=[1.25, 1], height_ratios=[len(mains) + 2, len(pairs) + 2]
    )
    _bars(fig.add_subplot(grid[0, 0]), mains, "#4c72b0", "main effects: V_i / V", interval)
    _bars(fig.add_subplot(grid[1, 0]), pairs, "#dd8452", "pair interactions: V_ij / V", interval)
    if len(pairs):
        top = pairs.iloc[0]
        _surface(
            fig.add_subplot(grid[:, 1]), boot, params, str(top["a"]), str(top["b"]), metric, goal
        )
    fig.suptitle("\n".join(textwrap.fill(line, 120) for line in title.splitlines()), fontsize=10)
    return fig


def _surface(
    ax: Any, boot: Bootstrap, params: list[Param], a: str, b: str, metric: str, goal: str
) -> None:
    i, j = boot.names.index(a), boot.names.index(b)
    key = (min(i, j), max(i, j))
    surface = boot.full.surface[key] if i < j else boot.full.surface[key].T
    by = {p.name: p for p in params}
    xs = fmt_levels([by[a].decode(v) for v in boot.levels[i]])
    ys = fmt_levels([by[b].decode(v) for v in boot.levels[j]])
    # Colour follows the goal: the better end is always the bright one.
    image = ax.imshow(
        surface.T, origin="lower", aspect="auto", cmap="viridis" if goal == "max" else "viridis_r"
    )
    ax.set_xticks(range(len(xs)), xs, rotation=45, ha="right")
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    best = np.unravel_index(
        np.argmax(surface) if goal == "max" else np.argmin(surface), surface.shape
    )
    ax.text(best[0], best[1], "★", ha="center", va="center", color="white", fontsize=14)
    fig = ax.get_figure()
    fig.colorbar(image, ax=ax, shrink=0.6, label=f"predicted {metric}")
    lo, hi = float(surface.min()), float(surface.max())
    ax.set_title(
        f"top pair: the surrogate's mean {metric}\nover the other parameters "
        f"({fmt_number(lo)} to {fmt_number(hi)}; ★ best)",
        loc="left",
        fontsize=10,
    )
