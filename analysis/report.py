"""The one-page A4 report: question, finding, heatmaps, interaction, ANOVA with its scale check,
best configuration and its ties, checks, the student's note, and the command that remakes it.

Laid out in inches on a fixed 8.27 x 11.69 in page (A4 portrait) rather than by a layout
engine, so the page looks the same whatever the grid size. Text is fitted, never cut: a block
is wrapped to its column and its font shrinks until it fits; what cannot fit even at the
smallest font (a novel as a description or a note) is refused in one line before anything
is written.
"""

from __future__ import annotations

import shlex
import textwrap
import time

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from analysis.figures import ci_words, draw_heatmap, draw_interaction
from analysis.guards import Guarded
from analysis.labels import short_list, slug
from analysis.reading import MetricResult, finding
from analysis.table import AnalysisError
from sweepmap.sweepfile import question

A4 = (8.27, 11.69)  # inches; 595 x 842 pt
LEFT, WIDTH = 0.5, 7.27  # the text column, inches
# Average glyph width in em: DejaVu Sans prose ~0.52 (bold a little wider), DejaVu Sans Mono
# 0.6; with a margin so that an estimate never runs past the column.
EM = {"sans": 0.56, "bold": 0.6, "mono": 0.61}
LINE = 1.25  # line height in em (matplotlib's 1.2 spacing, and a margin)
NOTE_MIN = 0.45  # inches the student's note always has, heading included


def _rect(
    left: float, bottom: float, width: float, height: float
) -> tuple[float, float, float, float]:
    """Inches from the page's lower left corner, to figure fractions."""
    return (left / A4[0], bottom / A4[1], width / A4[0], height / A4[1])


def wrap(lines: list[str], chars: int, indent: str = "    ") -> list[str]:
    """Each line wrapped to `chars`, its continuation lines indented."""
    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, max(chars, 20), subsequent_indent=indent) or [""]
    return out


def fit(
    lines: list[str],
    width_in: float,
    height_in: float,
    sizes: tuple[float, float],
    face: str,
    indent: str = "",
) -> tuple[list[str], float] | None:
    """(wrapped lines, font size) at the largest size in sizes=(max, min), 0.25 pt steps,
    at which the lines fit width x height; None when they do not fit even at the minimum."""
    size = sizes[0]
    while size >= sizes[1]:
        wrapped = wrap(lines, int(width_in * 72 / (EM[face] * size)), indent)
        if len(wrapped) * LINE * size / 72 <= height_in:
            return wrapped, size
        size -= 0.25
    return None


def height(lines: list[str], size: float) -> float:
    return len(lines) * LINE * size / 72


def _text(fig: Figure, x_in: float, y_in: float, text: str, **kw: object) -> None:
    fig.text(x_in / A4[0], y_in / A4[1], text, va="top", **kw)  # type: ignore[arg-type]


def _shell_lines(command: str, width: int) -> list[str]:
    """A long command over several lines that still paste into a shell (trailing \\)."""
    words = [w if w == "&&" else shlex.quote(w) for w in shlex.split(command)]
    lines = [""]
    for word in words:  # split between shell words only, never inside a quoted one
        if lines[-1] and len(lines[-1]) + len(word) + 1 > width - 2:
            lines.append("    ")
        lines[-1] += (" " if lines[-1].strip() else "") + word
    return [line + " \\" for line in lines[:-1]] + lines[-1:]


def _header(fig: Figure, g: Guarded, r: MetricResult) -> None:
    """Title, the question in full, the finding, the grid; between 11.69 and 9.97 in."""
    study = g.study
    _text(fig, LEFT, 11.4, f"Sweep {study.name}", fontsize=15, weight="bold")
    asked = question(study.yaml_text, study.sweep_config) or "(no question in the sweep file)"
    found = f"Finding ({r.metric}): {finding(g, r)}"
    when = time.strftime("%Y-%m-%d %H:%M")
    grid = f"{len(g.x_levels)} {g.x} x {len(g.y_levels)} {g.y}"
    meta = textwrap.shorten(f"grid {grid}; runs from {study.origin}; drawn {when}", 150)
    # The finding first gets up to 2 lines; the question gets what is left, shrinking to fit.
    ans = fit([found], WIDTH, height([""] * 2, 8.5), (8.5, 6.5), "bold", "    ")
    if ans is None:
        ans = fit([found], WIDTH, 0.4, (6.5, 5.5), "bold", "    ")
    assert ans is not None  # a computed line of bounded length
    room = 11.02 - 9.97 - height(ans[0], ans[1]) - 0.22
    q = fit([asked], WIDTH, room, (10.0, 6.0), "sans")
    if q is None:
        raise AnalysisError(
            f"the sweep's question ({len(asked)} characters) does not fit the page even at "
            f"6 pt; shorten its description: or top comment to a paragraph"
        )
    _text(fig, LEFT, 11.02, "\n".join(q[0]), fontsize=q[1], style="italic")
    y = 11.02 - height(q[0], q[1]) - 0.05
    _text(fig, LEFT, y, "\n".join(ans[0]), fontsize=ans[1], weight="bold", color="0.1")
    y -= height(ans[0], ans[1]) + 0.03
    _text(fig, LEFT, y, meta, fontsize=7, color="0.35")


def render_report(
    g: Guarded,
    results: list[MetricResult],
    command: str,
    note: str | None = None,
) -> Figure:
    """The page as a Figure; results[0] (the primary metric) gets the large heatmap, the
    interaction plot, the ANOVA, the scale check and the finding."""
    fig = plt.figure(figsize=A4)
    r = results[0]
    try:
        # Text first: a refusal (a note too long) comes before any plot is drawn.
        _header(fig, g, r)
        _body(fig, g, results, command, note)
        _plots(fig, g, results)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _plots(fig: Figure, g: Guarded, results: list[MetricResult]) -> None:
    r = results[0]
    # Row A: the primary metric, large, beside its interaction plot (legend underneath).
    draw_heatmap(fig.add_axes(_rect(0.95, 6.9, 3.75, 2.8)), g, r, fontsize=7)
    ax = fig.add_axes(_rect(5.55, 7.4, 2.45, 2.3))
    draw_interaction(ax, g, r, fontsize=6.5, legend_below=True, title=f"{g.x} x {g.y}")
    # Row B: up to two more metrics, smaller.
    others = results[1:3]
    for k, other in enumerate(others):
        left = 0.95 if len(others) == 2 else 2.6
        draw_heatmap(fig.add_axes(_rect(left + 4.1 * k, 4.3, 3.0, 1.7)), g, other, fontsize=5.5)


def _body(
    fig: Figure, g: Guarded, results: list[MetricResult], command: str, note: str | None
) -> None:
    """The text under the plots, from 3.85 in down; a note that cannot fit is refused."""
    r = results[0]
    top = 3.85
    mono = 6.2
    _text(fig, LEFT, top, "Interaction (two-way ANOVA)", fontsize=9, weight="bold")
    left_lines = wrap([*r.anova.lines(), *(["", r.scale.text] if r.scale.text else [])], 66)
    _text(fig, LEFT, top - 0.18, "\n".join(left_lines), fontsize=mono, family="monospace")
    _text(fig, 4.55, top, "Best configuration", fontsize=9, weight="bold")
    right_lines = wrap(_best_lines(g, results), 62)
    _text(fig, 4.55, top - 0.18, "\n".join(right_lines), fontsize=mono, family="monospace")
    y = top - 0.18 - height(max(left_lines, right_lines, key=len), mono) - 0.12

    bottom = 1.05  # the Reproduce block sits below
    _text(fig, LEFT, y, "Runs and checks", fontsize=9, weight="bold")
    # The checks shrink to leave the note at least NOTE_MIN; past 4.5 pt the rest is left to
    # the terminal, which prints every line of them.
    room = y - 0.18 - bottom - NOTE_MIN
    fitted = fit(g.notes, WIDTH, room, (6.0, 4.5), "mono", "    ")
    if fitted is None:
        keep = wrap(g.notes, int(WIDTH * 72 / (EM["mono"] * 4.5)))
        keep = keep[: max(1, int(room / height([""], 4.5)) - 1)]
        fitted = ([*keep, "… (every check: in this command's terminal output)"], 4.5)
    checks, size = fitted
    _text(fig, LEFT, y - 0.18, "\n".join(checks), fontsize=size, family="monospace")
    y -= 0.18 + height(checks, size) + 0.08

    _text(fig, LEFT, y, "Reading (the student's note)", fontsize=9, weight="bold")
    if not note:
        hint = "(none given: python -m analysis report ... --note TEXT or --note-file FILE)"
        _text(fig, LEFT, y - 0.18, hint, fontsize=7, color="0.45")
    else:
        # Paragraphs (blank-line separated) are kept; line breaks inside one are not.
        paras = [" ".join(p.split()) for p in note.strip().split("\n\n")]
        room = y - 0.18 - bottom
        fitted = fit(paras, WIDTH, room, (9, 5.5), "sans")
        if fitted is None:
            cap = int(room / height([""], 5.5) * WIDTH * 72 / (EM["sans"] * 5.5))
            raise AnalysisError(
                f"--note: {len(note)} characters do not fit the page's free space "
                f"({room:.1f} in); at most about {cap} here"
            )
        _text(fig, LEFT, y - 0.18, "\n".join(fitted[0]), fontsize=fitted[1])

    _text(fig, LEFT, 0.9, "Reproduce", fontsize=9, weight="bold")
    legend = (
        f"(cells: mean, [{ci_words(r.metric)}], n = {g.n_counts}; hatched = no finished run;"
        f" ★ best mean; red outline = tied with it; {r.colour.mark} = past the colour range)"
    )
    shown = [m.metric for m in results[:3]]
    rest = [m.metric for m in results[3:]]
    footer = [*_shell_lines(command, 140), *wrap([legend], 140, " ")]
    if rest:
        csvs = ", ".join(f"pivot_{slug(m)}.csv" for m in rest)
        footer += wrap([f"(on this page: {', '.join(shown)}; in the CSVs only: {csvs})"], 140)
    _text(fig, LEFT, 0.72, "\n".join(footer), fontsize=6.0, family="monospace")


def _best_lines(g: Guarded, results: list[MetricResult]) -> list[str]:
    """The best cell of the primary metric, the cells tied with it, the other metrics there,
    their own bests, and the colour range."""
    r = results[0]
    if r.ties.best is None:
        return [f"no cell has a value of {r.metric}"]
    a, b = r.ties.best
    lines = [f"★ {g.where(a, b)}"]
    for m in results:
        row = m.cells.set_index([g.x, g.y]).loc[(a, b)]
        ci = "" if row["n"] < 2 else f" [{m.fmt(row['ci_lo'])}, {m.fmt(row['ci_hi'])}]"
        lines.append(f"  {m.metric}: {m.fmt(row['mean'])}{ci} (n={int(row['n'])}, goal {m.goal})")
    others = [c for c in r.ties.tied if c != r.ties.best]
    if r.ties.tested:
        # The heatmap outlines them all; here a few by name keeps the block to its room.
        named = short_list([g.where(x, y, "/") for x, y in others], 2) or "none"
        lines.append(f"tied with it: {len(others)} cell(s), outlined: {named}")
        lines.append(f"  ({r.ties.family})")
        if r.ties.left_out:
            named = short_list([g.where(x, y, "/") for x, y in r.ties.left_out], 1)
            lines.append(f"  left out (past the colour range or spread): {named}")
    else:
        lines.append(f"tied with it: {r.ties.family}")
    for m in results[1:]:
        if m.ties.best is not None and m.ties.best != r.ties.best:
            lines.append(f"best by {m.metric}: {g.where(*m.ties.best)}")
    lines.append(r.colour.how)
    return lines
