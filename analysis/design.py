"""What a study varies and what it measures: its axes, their levels, its metrics and their goals.

The axes and their levels are read from the sweep file exactly as wandb's grid engine
enumerates them (`sweepmap.sweepfile.axes`: values, value, int_uniform, q_uniform), so an
`int_uniform` axis is as varied as a `values` one, and a level that no run reached yet is still
a column of the heatmap.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import pandas as pd

from analysis.labels import fmt_value, is_number, plain
from analysis.table import DEFAULT_METRICS, AnalysisError, Study, metric_columns
from sweepmap import keys
from sweepmap.sweepfile import Axis, SweepError, axes, metric


def study_axes(study: Study) -> list[Axis]:
    """The sweep's parameters with their levels; none for a sweep that is not a grid."""
    try:
        return axes(study.sweep_config)
    except SweepError:  # a wandb random/bayes sweep: its distributions have no levels
        return []


def varied_axes(study: Study) -> list[str]:
    """Parameters with more than one level, in file order (seed included)."""
    return [a.name for a in study_axes(study) if len(a.levels) > 1]


def axes_of(study: Study, x: str | None, y: str | None) -> tuple[str, str]:
    """The two varied parameters other than seed, in file order; --x/--y choose among them.

    seed is the replicate (averaged in each cell) and a fixed parameter has one level: neither
    can be an axis, and each is refused in one line that lists what can be.
    """
    refuse_scan(study)
    by_name = {a.name: a for a in study_axes(study)}
    choices = [p for p in varied_axes(study) if p != "seed"]
    offer = ", ".join(choices) or "none"
    for flag, name in (("--x", x), ("--y", y)):
        if name is None or name in choices:
            continue
        if name == "seed":
            why = "seed is the replicate, averaged in each cell, not an axis"
        elif name in by_name:
            level = fmt_value(by_name[name].levels[0]) if by_name[name].levels else "nothing"
            why = f"fixed at {level} in this sweep (one level)"
        else:
            close = difflib.get_close_matches(
                name, choices, n=1, cutoff=0.5
            ) or difflib.get_close_matches(name, list(by_name), n=1)
            why = "not a parameter of this sweep"
            if close:
                why += f"; did you mean {close[0]!r}?"
        raise AnalysisError(f"{flag} {name!r}: {why}; varied parameters: {offer}")
    free = [p for p in choices if p not in (x, y)]
    x = x or (free.pop(0) if free else None)
    y = y or (free.pop(0) if free else None)
    if x is None or y is None:
        vary = ", ".join(varied_axes(study)) or "none"
        raise AnalysisError(
            f"sweep {study.name}: needs two varied parameters besides seed (varied: {vary})"
        )
    if x == y:
        raise AnalysisError(f"--x and --y are both {x!r}: a heatmap needs two parameters")
    return x, y


def refuse_scan(study: Study) -> None:
    """A scan (random or bayes) is never a heatmap when its runs differ in budget (hyperband:
    one heatmap = one budget) or when its parameters are drawn from distributions (no levels,
    so no cells). Its place is `analysis importance`, which ranks its pairs and writes the
    grid of the top one."""
    config = study.sweep_config
    method = config.get("method")
    if method not in ("random", "bayes"):
        return
    rule = config.get("early_terminate")
    yaml = f" --yaml {study.yaml_path}" if study.yaml_path else ""
    then = (
        f"rank its pairs with `python -m analysis importance{yaml}`, then run the grid it "
        "writes (--emit-grid FILE)"
    )
    if isinstance(rule, dict):
        table = study.table
        said = table[keys.STOPPED].notna() if keys.STOPPED in table else False
        stopped = table[(table["state"] == "stopped") | said]  # wandb: finished, with a reason
        done = pd.to_numeric(stopped[keys.EPOCHS_COMPLETED], errors="coerce").dropna()
        at = f", at epochs {fmt_value(done.min())} to {fmt_value(done.max())}" if len(done) else ""
        raise AnalysisError(
            f"sweep {study.name} is a scan (method {method}) with early_terminate "
            f"{rule.get('type', '?')}: its runs differ in budget ({len(stopped)} stopped "
            f"early{at}), and one heatmap is one budget; {then}"
        )
    if not study_axes(study):
        raise AnalysisError(
            f"sweep {study.name} is a scan (method {method}) over distributions: its runs "
            f"fill no grid of levels, so a heatmap has no cells; {then}"
        )


def axis_levels(study: Study, name: str) -> list[Any]:
    """One axis' levels in axis order: numbers ascend; categories (and True/False) keep the
    file's order, as the author listed them (sgd before adam). A value seen in the runs but
    not in the file (a wandb sweep edited after its runs) is added, never dropped."""
    declared = next((a.levels for a in study_axes(study) if a.name == name), ())
    out = [plain(v) for v in declared]
    for v in study.table.get(name, ()):
        v = plain(v)
        if v not in out and not (isinstance(v, float) and math.isnan(v)):
            out.append(v)
    if out and all(is_number(v) for v in out):
        out.sort()
    return out


def choose_metrics(study: Study, asked: list[str] | None) -> tuple[list[str], list[str]]:
    """(metrics, notes): the asked ones, else the sweep's own `metric.name` first, then the
    defaults that the runs have. The first one is the page's primary metric."""
    available = metric_columns(study.table, study.sweep_config)
    notes: list[str] = []
    if asked:
        for m in asked:
            if m not in available:
                close = difflib.get_close_matches(m, available, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise AnalysisError(
                    f"--metric {m!r}: no run of {study.name} has it; {hint}"
                    f"allowed: {', '.join(available) or 'none (no run has a summary yet)'}"
                )
        return list(dict.fromkeys(asked)), notes
    own = metric(study.sweep_config)
    chosen = [m for m in DEFAULT_METRICS if m in available]
    if own is not None:
        if own[0] in available:
            chosen = [own[0], *(m for m in chosen if m != own[0])]
        else:
            notes.append(
                f"WARNING the sweep's metric {own[0]} is in no finished run's summary; "
                f"shown instead: {', '.join(chosen) or 'nothing'}"
            )
    if not chosen:
        raise AnalysisError(
            f"sweep {study.name}: neither its metric nor the defaults "
            f"({', '.join(DEFAULT_METRICS)}) are in the runs; "
            f"choose with --metric from: {', '.join(available) or 'none'}"
        )
    return chosen, notes


def bounds(name: str) -> tuple[float, float]:
    """The range a metric can take: accuracy and F1 in [0, 1], a loss >= 0, else unbounded.
    Confidence intervals are clipped to it, and the scale check looks at its edges."""
    base = name.removeprefix("best/").lower()
    if "accuracy" in base or "f1" in base:
        return 0.0, 1.0
    if "loss" in base or base == keys.RUNTIME:
        return 0.0, math.inf
    return -math.inf, math.inf
