"""The heatmap and the interaction plot, drawn on a given Axes so the report can reuse them.

Colour: brighter is better, always. viridis runs dark purple -> bright yellow, so a metric
to maximise uses "viridis" and one to minimise (a loss) "viridis_r"; the eye goes to the
bright cell either way. The range is robust (see `reading.colour_range`): cells past it are
drawn at its end colour and marked. The best cell has a star, and every cell tied with it
(Tukey HSD) a red outline: one box alone would claim more than the seeds allow. Empty cells
are hatched grey.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, NullFormatter

from analysis.design import bounds
from analysis.guards import Guarded
from analysis.labels import fmt_levels, is_number
from analysis.reading import MetricResult
from analysis.stats import CI_LEVEL

TIE_COLOUR = "tab:red"
STATS = ("mean", "std", "n", "ci_lo", "ci_hi")  # the pivot's columns besides x, y, statuses


def cmap_for(goal: str) -> str:
    return "viridis" if goal == "max" else "viridis_r"


def ci_words(metric: str, short: bool = False) -> str:
    """'95% CI of the mean (t, n-1), clipped to [0, 1]': what the brackets and bars are."""
    low, high = bounds(metric)
    clip = ""
    if math.isfinite(low) or math.isfinite(high):
        clip = f", clipped to [{low:g}, {high:g}]".replace("inf", "∞")
    return f"{CI_LEVEL:.0%} CI{'' if short else ' of the mean'} (t, n-1){clip}"


def status_columns(g: Guarded, cells: pd.DataFrame) -> list[str]:
    """The pivot's per-status counts of points without a finished run (failed, ...)."""
    return [c for c in cells.columns if c not in (g.x, g.y, *STATS)]


def _cell_text(
    row: pd.Series, r: MetricResult, cell: tuple[object, object], ci: bool, status: list[str]
) -> str:
    """mean (★ best, ▼/▲ past the colour range) / [CI] / n=k / points without a result."""
    lines = []
    if row["n"] > 0:
        star = "★" if cell == r.ties.best else ""
        mark = r.colour.mark if cell in r.colour.clipped else ""
        lines.append(f"{star}{r.fmt(row['mean'])}{mark}")
        if ci and not math.isnan(row["ci_lo"]):
            lines.append(f"[{r.fmt(row['ci_lo'])}, {r.fmt(row['ci_hi'])}]")
    # A row of a mixed frame comes back as floats: counts are printed as ints.
    lines.append(f"n={int(row['n'])}")
    lines += [f"{int(row[s])} {s}" for s in status if row[s] > 0]
    return "\n".join(lines)


def draw_heatmap(
    ax: Axes,
    g: Guarded,
    r: MetricResult,
    fontsize: float = 8.0,
    with_spread: bool = True,
    colorbar: bool = True,
) -> None:
    # Numeric y ascends upwards like any plot axis; categories read top-down in file order.
    y_rows = list(reversed(g.y_levels)) if all(map(is_number, g.y_levels)) else list(g.y_levels)
    by_cell = r.cells.set_index([g.x, g.y])
    status = status_columns(g, r.cells)
    mean = np.array([[by_cell.loc[(a, b), "mean"] for a in g.x_levels] for b in y_rows], float)
    text = np.array(
        [
            [_cell_text(by_cell.loc[(a, b)], r, (a, b), with_spread, status) for a in g.x_levels]
            for b in y_rows
        ]
    )
    goal = "higher" if r.goal == "max" else "lower"
    extend = ("min" if r.goal == "max" else "max") if r.colour.clipped else "neither"
    sns.heatmap(
        pd.DataFrame(mean),
        ax=ax,
        cmap=cmap_for(r.goal),
        norm=LogNorm(r.colour.vmin, r.colour.vmax) if r.colour.log else None,
        vmin=None if r.colour.log else r.colour.vmin,
        vmax=None if r.colour.log else r.colour.vmax,
        annot=text,
        fmt="",
        annot_kws={"fontsize": fontsize},
        linewidths=0.5,
        linecolor="white",
        cbar=colorbar,
        cbar_kws={"label": f"cell mean ({goal} is better)", "extend": extend} if colorbar else None,
        xticklabels=fmt_levels(g.x_levels),
        yticklabels=[g.label(g.y, v) for v in y_rows],
    )
    bar = ax.collections[0].colorbar if colorbar else None
    if bar is not None:
        bar.ax.tick_params(which="both", labelsize=fontsize)
        bar.ax.yaxis.label.set_fontsize(fontsize)
        if r.colour.log:  # 0.05, 0.1, 0.5 rather than 5x10^-2 in large print
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
    # Cell text shrinks to fit its cell (measured now that the colorbar took its share).
    cell_font = min(fontsize, _fit(ax, text, len(g.x_levels), len(y_rows)))
    for t in ax.texts:
        t.set_fontsize(cell_font)
    for i, b in enumerate(y_rows):
        for j, a in enumerate(g.x_levels):
            row = by_cell.loc[(a, b)]
            if row["n"] == 0 or math.isnan(row["mean"]):
                # seaborn leaves NaN cells blank and unlabelled: hatch them and say why.
                ax.add_patch(
                    Rectangle(
                        (j, i),
                        1,
                        1,
                        facecolor="0.93",
                        edgecolor="0.6",
                        hatch="///",
                        linewidth=0.5,
                        zorder=2,
                    )
                )
                ax.text(
                    j + 0.5,
                    i + 0.5,
                    text[i, j],
                    ha="center",
                    va="center",
                    fontsize=cell_font,
                    color="0.2",
                    zorder=3,
                    bbox={"facecolor": "0.93", "edgecolor": "none", "pad": 1},
                )
    for a, b in r.ties.tied:
        j, i = g.x_levels.index(a), y_rows.index(b)
        ax.add_patch(
            Rectangle(
                (j + 0.04, i + 0.04),
                0.92,
                0.92,
                fill=False,
                edgecolor=TIE_COLOUR,
                linewidth=2.0 if len(r.ties.tied) > 1 else 2.5,
                zorder=4,
            )
        )
    ax.set_xlabel(g.x, fontsize=fontsize + 1)
    ax.set_ylabel(g.y, fontsize=fontsize + 1)
    ax.tick_params(labelsize=fontsize, rotation=0)
    tie = "★ best, red = tied (Tukey HSD)" if r.ties.tested else "★ best, ties untested"
    ax.set_title(f"{r.metric}: {tie}", fontsize=fontsize + 1.5)


def _fit(ax: Axes, text: np.ndarray, nx: int, ny: int) -> float:
    """The largest font (pt) at which every cell's lines fit inside the cell, 4 pt at least."""
    box = ax.get_position()
    width, height = ax.get_figure().get_size_inches()  # type: ignore[union-attr]
    cell_w, cell_h = 72 * box.width * width / nx, 72 * box.height * height / ny
    lines = max(t.count("\n") + 1 for t in text.flat)
    chars = max(len(line) for t in text.flat for line in t.splitlines())
    # DejaVu Sans digits are ~0.6 em wide; a line of text takes ~1.45 em (1.2 spacing on a
    # glyph box taller than the em); keep a margin.
    return max(4.0, min(0.9 * cell_w / (0.62 * chars), 0.85 * cell_h / (1.45 * lines)))


def draw_interaction(
    ax: Axes,
    g: Guarded,
    r: MetricResult,
    fontsize: float = 8.0,
    legend_below: bool = False,
    title: str | None = None,
) -> None:
    """Metric against x at even (categorical) positions, one line per y, bars = clipped CI.

    The legend sits outside the axes (right, or below on a narrow page column) so that it
    never hides a line.
    """
    positions = np.arange(len(g.x_levels))
    width = 0.25  # lines are nudged apart within this band so their error bars do not overlap
    offsets = np.linspace(-width / 2, width / 2, len(g.y_levels)) if len(g.y_levels) > 1 else [0.0]
    by_cell = r.cells.set_index([g.x, g.y])
    for b, offset in zip(g.y_levels, offsets, strict=True):
        rows = [by_cell.loc[(a, b)] for a in g.x_levels]
        means = np.array([row["mean"] for row in rows], float)
        # Asymmetric where clipped: a CI of accuracy stops at 1, its lower arm does not.
        low = np.nan_to_num(means - np.array([row["ci_lo"] for row in rows], float))
        high = np.nan_to_num(np.array([row["ci_hi"] for row in rows], float) - means)
        ax.errorbar(
            positions + offset,
            means,
            yerr=np.vstack([low, high]),
            marker="o",
            markersize=4,
            capsize=2.5,
            linewidth=1.3,
            label=g.label(g.y, b),
        )
    ax.set_xticks(positions, fmt_levels(g.x_levels))
    ax.set_xlim(-0.5, len(g.x_levels) - 0.5)  # room for the nudged outer points
    goal = "higher" if r.goal == "max" else "lower"
    ax.set_xlabel(g.x, fontsize=fontsize + 1)
    ax.set_ylabel(f"{r.metric} ({goal} is better)", fontsize=fontsize + 1)
    ax.tick_params(labelsize=fontsize)
    ax.grid(alpha=0.3)
    where = (
        {"loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "ncols": min(3, len(g.y_levels))}
        if legend_below
        else {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}
    )
    ax.legend(
        title=f"{g.y}; bars: {ci_words(r.metric, short=True)}",
        fontsize=fontsize,
        title_fontsize=fontsize,
        frameon=False,
        **where,
    )
    ax.set_title(title or f"interaction: {r.metric} vs {g.x} by {g.y}", fontsize=fontsize + 2)


def _notes_text(notes: list[str], width: int) -> str:
    return "\n".join(textwrap.fill(n, width, subsequent_indent="    ") for n in notes)


def legend_lines(g: Guarded, r: MetricResult) -> list[str]:
    """What a heatmap's marks mean, for this metric."""
    return [
        f"cells: mean, [{ci_words(r.metric)}], n = {g.n_counts}; hatched = no finished run",
        r.colour.how,
        f"★ best mean; red outline: tied with it ({r.ties.family}"
        + (
            f"; {len(r.ties.left_out)} left out: past the colour range or spread"
            if r.ties.left_out
            else ""
        )
        + ")",
    ]


def heatmap_figure(g: Guarded, r: MetricResult) -> Figure:
    """A standalone heatmap with its legend and the guard results underneath."""
    nx, ny = len(g.x_levels), len(g.y_levels)
    width = max(6.5, 1.25 * nx + 2.5)
    notes = _notes_text([*legend_lines(g, r), *g.notes], int(width * 16))
    note_h = 0.13 * (notes.count("\n") + 1) + 0.15
    height = max(3.0, 0.75 * ny + 1.85) + note_h
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes(
        (1.2 / width, (note_h + 0.7) / height, 1 - 2.7 / width, 1 - (note_h + 1.45) / height)
    )
    draw_heatmap(ax, g, r, fontsize=8)
    fig.suptitle(g.study.name, fontsize=10, y=1 - 0.15 / height, va="top")
    fig.text(0.02, 0.1 / height, notes, fontsize=7, va="bottom", family="monospace")
    return fig


def interaction_figure(g: Guarded, r: MetricResult) -> Figure:
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    draw_interaction(ax, g, r, fontsize=9)
    return fig
