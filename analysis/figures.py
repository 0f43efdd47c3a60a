"""The heatmap and the interaction plot, drawn on a given Axes so the report can reuse them.

Colour: brighter is better, always. viridis runs dark purple -> bright yellow, so a metric
to maximise uses "viridis" and one to minimise (a loss) "viridis_r"; the eye goes to the
bright cell either way. The best cell gets a red outline; empty cells are hatched grey.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analysis.guards import Guarded
from analysis.labels import fmt_levels, fmt_number, is_number
from analysis.stats import best_cell
from sweepmap import keys

BEST_COLOUR = "tab:red"
ERROR_BARS = "±1 std over seeds"


def cmap_for(metric: str) -> str:
    return "viridis" if keys.goal_of(metric) == "max" else "viridis_r"


def _cell_text(row: pd.Series, with_spread: bool) -> str:
    """mean / ± std / n=k, and what went wrong in the cell, if anything."""
    lines = []
    if row["n"] > 0:
        lines.append(fmt_number(row["mean"]))
        if with_spread and not math.isnan(row["std"]):
            lines.append(f"±{fmt_number(row['std'])}")
    # A row of a mixed frame comes back as floats: counts are printed as ints.
    lines.append(f"n={int(row['n'])}")
    if row["failed"]:
        lines.append(f"{int(row['failed'])} failed")
    if row["unfinished"]:
        lines.append(f"{int(row['unfinished'])} running")
    return "\n".join(lines)


def draw_heatmap(
    ax: Axes,
    g: Guarded,
    cells: pd.DataFrame,
    metric: str,
    fontsize: float = 8.0,
    with_spread: bool = True,
    colorbar: bool = True,
) -> None:
    # Numeric y ascends upwards like any plot axis; categories read top-down in file order.
    y_rows = list(reversed(g.y_levels)) if all(map(is_number, g.y_levels)) else list(g.y_levels)
    by_cell = cells.set_index([g.x, g.y])
    mean = np.array([[by_cell.loc[(a, b), "mean"] for a in g.x_levels] for b in y_rows], float)
    text = np.array(
        [[_cell_text(by_cell.loc[(a, b)], with_spread) for a in g.x_levels] for b in y_rows]
    )
    goal = "higher" if keys.goal_of(metric) == "max" else "lower"
    sns.heatmap(
        pd.DataFrame(mean),
        ax=ax,
        cmap=cmap_for(metric),
        annot=text,
        fmt="",
        annot_kws={"fontsize": fontsize},
        linewidths=0.5,
        linecolor="white",
        cbar=colorbar,
        cbar_kws={"label": f"mean over seeds ({goal} is better, brighter)"} if colorbar else None,
        xticklabels=fmt_levels(g.x_levels),
        yticklabels=[g.label(g.y, v) for v in y_rows],
    )
    bar = ax.collections[0].colorbar if colorbar else None
    if bar is not None:
        bar.ax.tick_params(labelsize=fontsize)
        bar.ax.yaxis.label.set_fontsize(fontsize)
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
                    _cell_text(row, with_spread),
                    ha="center",
                    va="center",
                    fontsize=cell_font,
                    color="0.2",
                    zorder=3,
                    bbox={"facecolor": "0.93", "edgecolor": "none", "pad": 1},
                )
    best = best_cell(cells, metric)
    if best is not None:
        j, i = g.x_levels.index(best[g.x]), y_rows.index(best[g.y])
        ax.add_patch(
            Rectangle(
                (j + 0.03, i + 0.03),
                0.94,
                0.94,
                fill=False,
                edgecolor=BEST_COLOUR,
                linewidth=2.5,
                zorder=4,
            )
        )
    ax.set_xlabel(g.x, fontsize=fontsize + 1)
    ax.set_ylabel(g.y, fontsize=fontsize + 1)
    ax.tick_params(labelsize=fontsize, rotation=0)
    ax.set_title(f"{metric} (red box: best mean)", fontsize=fontsize + 2)


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
    cells: pd.DataFrame,
    metric: str,
    fontsize: float = 8.0,
    legend_below: bool = False,
    title: str | None = None,
) -> None:
    """Metric against x at even (categorical) positions, one line per y, error bars = std.

    The legend sits outside the axes (right, or below on a narrow page column) so that it
    never hides a line.
    """
    positions = np.arange(len(g.x_levels))
    width = 0.25  # lines are nudged apart within this band so their error bars do not overlap
    offsets = np.linspace(-width / 2, width / 2, len(g.y_levels)) if len(g.y_levels) > 1 else [0.0]
    by_cell = cells.set_index([g.x, g.y])
    for b, offset in zip(g.y_levels, offsets, strict=True):
        rows = [by_cell.loc[(a, b)] for a in g.x_levels]
        ax.errorbar(
            positions + offset,
            [r["mean"] for r in rows],
            yerr=[0.0 if math.isnan(r["std"]) else r["std"] for r in rows],
            marker="o",
            markersize=4,
            capsize=2.5,
            linewidth=1.3,
            label=g.label(g.y, b),
        )
    ax.set_xticks(positions, fmt_levels(g.x_levels))
    ax.set_xlim(-0.5, len(g.x_levels) - 0.5)  # room for the nudged outer points
    goal = "higher" if keys.goal_of(metric) == "max" else "lower"
    ax.set_xlabel(g.x, fontsize=fontsize + 1)
    ax.set_ylabel(f"{metric} ({goal} is better)", fontsize=fontsize + 1)
    ax.tick_params(labelsize=fontsize)
    ax.grid(alpha=0.3)
    where = (
        {"loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "ncols": min(3, len(g.y_levels))}
        if legend_below
        else {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}
    )
    ax.legend(
        title=f"{g.y} (bars: {ERROR_BARS})",
        fontsize=fontsize,
        title_fontsize=fontsize,
        frameon=False,
        **where,
    )
    ax.set_title(title or f"interaction: {metric} vs {g.x} by {g.y}", fontsize=fontsize + 2)


def _notes_text(notes: list[str], width: int) -> str:
    return "\n".join(textwrap.fill(n, width, subsequent_indent="    ") for n in notes)


def heatmap_figure(g: Guarded, cells: pd.DataFrame, metric: str) -> Figure:
    """A standalone heatmap with the guard results underneath."""
    nx, ny = len(g.x_levels), len(g.y_levels)
    width = max(6.5, 1.25 * nx + 2.5)
    notes = _notes_text(g.notes, int(width * 13))
    note_h = 0.13 * (notes.count("\n") + 1) + 0.15
    height = max(3.0, 0.75 * ny + 1.6) + note_h
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes(
        (1.2 / width, (note_h + 0.7) / height, 1 - 2.7 / width, 1 - (note_h + 1.2) / height)
    )
    draw_heatmap(ax, g, cells, metric, fontsize=8)
    fig.suptitle(g.study.name, fontsize=10, y=1 - 0.15 / height, va="top")
    fig.text(0.02, 0.1 / height, notes, fontsize=7, va="bottom", family="monospace")
    return fig


def interaction_figure(g: Guarded, cells: pd.DataFrame, metric: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    draw_interaction(ax, g, cells, metric, fontsize=9)
    return fig
