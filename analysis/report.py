"""The one-page A4 report: question, heatmaps, interaction, ANOVA, best cell, checks, command.

Laid out in inches on a fixed 8.27 x 11.69 in page (A4 portrait) rather than by a layout
engine, so the page looks the same whatever the grid size and the text lengths; long text
is wrapped to its column and cut with a marker rather than allowed to run into a figure.
"""

from __future__ import annotations

import shlex
import textwrap
import time

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import draw_heatmap, draw_interaction
from analysis.guards import Guarded
from analysis.labels import fmt_number
from analysis.stats import Anova, best_cell
from sweepmap import keys
from sweepmap.sweepfile import question

A4 = (8.27, 11.69)  # inches; 595 x 842 pt


def _rect(
    left: float, bottom: float, width: float, height: float
) -> tuple[float, float, float, float]:
    """Inches from the page's lower left corner, to figure fractions."""
    return (left / A4[0], bottom / A4[1], width / A4[0], height / A4[1])


def _block(lines: list[str], width: int, max_lines: int, indent: str = "    ") -> str:
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(line, width, subsequent_indent=indent) or [""]
    if len(wrapped) > max_lines:
        wrapped = [*wrapped[: max_lines - 1], "… (full list in the text output)"]
    return "\n".join(wrapped)


def _shell_lines(command: str, width: int) -> list[str]:
    """A long command over several lines that still paste into a shell (trailing \\)."""
    words = [w if w == "&&" else shlex.quote(w) for w in shlex.split(command)]
    lines = [""]
    for word in words:  # split between shell words only, never inside a quoted one
        if lines[-1] and len(lines[-1]) + len(word) + 1 > width - 2:
            lines.append("    ")
        lines[-1] += (" " if lines[-1].strip() else "") + word
    return [line + " \\" for line in lines[:-1]] + lines[-1:]


def _text(fig: Figure, x_in: float, y_in: float, text: str, **kw: object) -> None:
    fig.text(x_in / A4[0], y_in / A4[1], text, va="top", **kw)  # type: ignore[arg-type]


def render_report(
    g: Guarded,
    metrics: list[str],
    cells: dict[str, pd.DataFrame],
    result: Anova,
    command: str,
) -> Figure:
    """The page as a Figure; metrics[0] gets the large heatmap, interaction plot and ANOVA."""
    study = g.study
    fig = plt.figure(figsize=A4)
    primary = metrics[0]

    _text(fig, 0.5, 11.4, f"Sweep {study.name}", fontsize=15, weight="bold")
    asked = question(study.yaml_text, study.sweep_config) or "(no question in the sweep file)"
    asked = _block([asked], 95, 3, indent="")
    _text(fig, 0.5, 11.0, asked, fontsize=10, style="italic")
    when = time.strftime("%Y-%m-%d %H:%M")
    grid = f"{len(g.x_levels)} {g.x} x {len(g.y_levels)} {g.y}"
    below = 11.0 - 0.19 * (asked.count("\n") + 1) - 0.08  # under the question, however long
    _text(
        fig,
        0.5,
        below,
        textwrap.shorten(f"grid {grid}; runs from {study.origin}; drawn {when}", 135),
        fontsize=7.5,
        color="0.35",
    )

    # Row A: the primary metric, large, beside its interaction plot (legend underneath).
    ax = fig.add_axes(_rect(0.95, 6.95, 3.75, 3.0))
    draw_heatmap(ax, g, cells[primary], primary, fontsize=7)
    ax = fig.add_axes(_rect(5.55, 7.45, 2.45, 2.5))
    draw_interaction(
        ax,
        g,
        cells[primary],
        primary,
        fontsize=6.5,
        legend_below=True,
        title=f"interaction: {g.x} x {g.y}",
    )
    # Row B: up to two more metrics, smaller.
    others = metrics[1:3]
    for k, metric in enumerate(others):
        left = 0.95 if len(others) == 2 else 2.6
        ax = fig.add_axes(_rect(left + 4.1 * k, 3.85, 3.0, 2.2))
        draw_heatmap(ax, g, cells[metric], metric, fontsize=5.5)

    _text(fig, 0.5, 3.35, "Interaction (two-way ANOVA)", fontsize=9, weight="bold")
    _text(fig, 0.5, 3.15, _block(result.lines(), 62, 7), fontsize=6.5, family="monospace")
    _text(fig, 4.55, 3.35, "Best configuration", fontsize=9, weight="bold")
    _text(
        fig,
        4.55,
        3.15,
        _block(_best_lines(g, metrics, cells), 62, 7),
        fontsize=6.5,
        family="monospace",
    )

    _text(fig, 0.5, 2.2, "Runs and checks", fontsize=9, weight="bold")
    _text(fig, 0.5, 2.02, _block(g.notes, 140, 10), fontsize=6.2, family="monospace")
    _text(fig, 0.5, 0.78, "Reproduce", fontsize=9, weight="bold")
    footer = [
        *_shell_lines(command, 130),
        *[f"(not on this page: {', '.join(metrics[3:])}; see the heatmap command)"]
        * (len(metrics) > 3),
        "(cells: mean, ±1 std over seeds, n = finished runs;"
        " hatched = no finished run; red box = best mean)",
    ]
    _text(fig, 0.5, 0.6, "\n".join(footer), fontsize=6.2, family="monospace")
    return fig


def _best_lines(g: Guarded, metrics: list[str], cells: dict[str, pd.DataFrame]) -> list[str]:
    """The best cell of the primary metric, the other metrics there, and their own bests."""
    primary = metrics[0]
    best = best_cell(cells[primary], primary)
    if best is None:
        return [f"no cell has a value of {primary}"]
    lines = [
        g.where(best[g.x], best[g.y]),
        f"  {primary}: {_mean_sd(best)} (goal: {keys.goal_of(primary)})",
    ]
    for metric in metrics[1:]:
        row = cells[metric].set_index([g.x, g.y]).loc[(best[g.x], best[g.y])]
        lines.append(f"  {metric}: {_mean_sd(row)}")
    for metric in metrics[1:]:
        own = best_cell(cells[metric], metric)
        if own is not None and (own[g.x], own[g.y]) != (best[g.x], best[g.y]):
            lines.append(f"best by {metric}: {g.where(own[g.x], own[g.y])}")
    return lines


def _mean_sd(row: pd.Series) -> str:
    spread = "" if pd.isna(row["std"]) else f" ± {fmt_number(row['std'])}"
    return f"{fmt_number(row['mean'])}{spread} (n={int(row['n'])})"
