"""What may go into one heatmap, and what was left out and why.

The rules (GUIDE section 5): only finished runs; one training budget (same `epochs`, every
run completed them, so no early-stopped run sits beside a full one); a repeated point counts
once; failed, interrupted and never-started points stay visible in their cells, with the
failures' reasons. Each check leaves a line in `notes`, which the text output and every figure
show; a line that starts with WARNING is one a reader must not miss.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.counts import NOT_STARTED, STATE_ORDER, Progress, progress, refuse_without_finished
from analysis.design import axis_levels, study_axes, varied_axes
from analysis.labels import fmt_on_axis, fmt_value, short_list
from analysis.table import FINISHED, AnalysisError, Study, config_keys
from sweepmap import keys


class BudgetError(AnalysisError):
    """Runs of different training budgets in one heatmap; --allow-mixed-budgets overrides."""


@dataclass
class Guarded:
    """The runs a heatmap may count, with the grid it is drawn on and the guard results."""

    study: Study
    x: str
    y: str
    x_levels: list[Any]
    y_levels: list[Any]
    runs: pd.DataFrame  # finished, deduplicated, one budget: every row counts
    cells: pd.DataFrame  # per (x, y) cell: grid points without a finished run, per status
    progress: Progress  # every grid point's status, before any guard
    n_counts: str  # what n in a cell counts: "seeds", or the seeds and a pooled factor
    notes: list[str] = field(default_factory=list)  # "OK ..." or "WARNING ..." lines
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> run ids

    def goal(self, metric: str) -> str:
        return self.study.goal(metric)

    def label(self, axis: str, value: Any) -> str:
        """A level as its axis writes it (1e-2 on an axis of 1e-4 .. 1e-1)."""
        return fmt_on_axis(value, self.x_levels if axis == self.x else self.y_levels)

    def where(self, a: Any, b: Any, sep: str = ", ") -> str:
        return f"{self.x}={self.label(self.x, a)}{sep}{self.y}={self.label(self.y, b)}"


def point_keys(study: Study) -> list[str]:
    """What makes two runs the same grid point: every sweep parameter, seed included."""
    params = list(study.sweep_config.get("parameters", {})) or config_keys(study.sweep_config)
    return [p for p in params if p in study.table]


def apply_guards(study: Study, x: str, y: str, allow_mixed_budgets: bool = False) -> Guarded:
    """The runs one heatmap may count; refuses a sweep with no finished run (AnalysisError)."""
    table = study.table
    notes: list[str] = []
    dropped: dict[str, list[str]] = {}
    done = progress(study)
    refuse_without_finished(study, done)
    short = done.finished < done.total or done.off_grid
    notes.append(f"{'WARNING' if short else 'OK'} {done.line()}; only finished runs are counted")
    x_levels, y_levels = axis_levels(study, x), axis_levels(study, y)
    notes += _failure_lines(done, x, y, x_levels, y_levels)

    finished = table[table["state"] == FINISHED]
    finished = _budget(finished, x, y, allow_mixed_budgets, notes, dropped)

    key = point_keys(study)
    dup = finished.duplicated(subset=key, keep="first")
    if dup.any():
        ids = list(finished.loc[dup, "run_id"])
        dropped["duplicate"] = ids
        notes.append(
            f"WARNING {len(ids)} duplicate run(s) of a point already finished, counted once "
            f"(first kept): {short_list(ids)}"
        )
    else:
        notes.append("OK no duplicate runs")
    runs = finished[~dup].reset_index(drop=True)

    cells = _open_points(done, x, y, x_levels, y_levels)
    have = {(a, b) for a, b in zip(runs[x], runs[y], strict=True)}
    empty = [
        f"{x}={fmt_on_axis(a, x_levels)}/{y}={fmt_on_axis(b, y_levels)}"
        for b in y_levels
        for a in x_levels
        if (a, b) not in have
    ]
    if empty:
        notes.append(f"WARNING {len(empty)} empty cell(s), hatched: {short_list(empty, 4)}")

    if study.sweep_config.get("early_terminate"):
        kind = study.sweep_config["early_terminate"].get("type", "early_terminate")
        notes.append(
            f"WARNING sweep has early_terminate ({kind}): a stopped run is a smaller budget; "
            f"the epochs check catches it"
        )
    if "stacked" in runs and runs["stacked"].notna().any():
        n = int(runs["stacked"].notna().sum())
        notes.append(
            f"NOTE {n} of {len(runs)} runs trained stacked (localsweep --stack): each is its own "
            "seed's run, summed in another float order; a chaotic cell's runs end elsewhere "
            "than they would alone"
        )
    n_counts = _replicates(study, x, y, notes)
    return Guarded(study, x, y, x_levels, y_levels, runs, cells, done, n_counts, notes, dropped)


def _replicates(study: Study, x: str, y: str, notes: list[str]) -> str:
    """What n counts in a cell, and a WARNING when it is not seeds alone."""
    sizes = {a.name: len(a.levels) for a in study_axes(study)}
    pooled = [p for p in varied_axes(study) if p not in (x, y, "seed")]
    seeds = sizes.get("seed", 1) > 1
    if pooled:
        what = " x ".join(f"{p} ({sizes[p]})" for p in pooled)
        notes.append(
            f"WARNING {', '.join(pooled)} also varied: pooled in each cell, so n counts runs "
            f"over {'seeds x ' if seeds else ''}{what}, and the spread is partly theirs"
        )
        return f"runs over {'seeds x ' if seeds else ''}{' x '.join(pooled)}"
    if not seeds:
        notes.append(
            "WARNING no seed axis: one run per cell, so no spread, no CI, no ANOVA and no "
            "tie test; add seed: {values: [0, 1, 2]}"
        )
        return "runs (no seed axis)"
    return "seeds"


def _failure_lines(
    done: Progress, x: str, y: str, x_levels: list[Any], y_levels: list[Any]
) -> list[str]:
    """Per status and reason: how many points, in which cells, and one log to read."""
    out = []
    for r in done.failures().itertuples():
        cells = Counter(
            f"{x}={fmt_on_axis(a, x_levels)}/{y}={fmt_on_axis(b, y_levels)}"
            for a, b in zip(r.points[x], r.points[y], strict=True)
        )
        where = short_list([f"{c} x{n}" if n > 1 else c for c, n in cells.items()], 3)
        log = f"; log e.g. {r.log}" if r.log else ""
        out.append(f"WARNING {r.n} {r.status}: {r.reason} (in {where}{log})")
    return out


def _budget(
    finished: pd.DataFrame,
    x: str,
    y: str,
    allow: bool,
    notes: list[str],
    dropped: dict[str, list[str]],
) -> pd.DataFrame:
    """One budget: same epochs (unless epochs is an axis), and all of them completed."""
    epochs = finished["epochs"]
    done = pd.to_numeric(finished[keys.EPOCHS_COMPLETED], errors="coerce")
    short = finished[~(done == epochs)]
    problems = [
        f"{r.run_id} ({_completed(r)}/{fmt_value(r.epochs)} epochs)" for r in short.itertuples()
    ]
    budgets = sorted({fmt_value(e) for e in epochs})
    if "epochs" not in (x, y) and len(budgets) > 1:
        main = epochs.mode().iloc[0]
        other = finished[(epochs != main) & (done == epochs)]
        problems += [f"{r.run_id} (epochs={fmt_value(r.epochs)})" for r in other.itertuples()]
    if finished.empty:
        notes.append("WARNING no finished run yet: every cell is empty")
        return finished
    if not problems:
        budget = budgets[0] if len(budgets) == 1 else "per cell"
        notes.append(f"OK one budget: every finished run completed its {budget} epochs")
        return finished
    what = f"epochs {', '.join(budgets)}" if len(budgets) > 1 else "incomplete runs"
    message = (
        f"mixed training budgets ({what}): {len(problems)} finished run(s) off budget: "
        f"{short_list(problems)}"
    )
    if not allow:
        raise BudgetError(
            f"{message}; one heatmap is one budget (--allow-mixed-budgets to draw anyway)"
        )
    dropped["mixed budget (kept)"] = [p.split(" ")[0] for p in problems]
    notes.append(f"WARNING {message}; kept (--allow-mixed-budgets)")
    return finished


def _completed(run: Any) -> str:
    value = getattr(run, keys.EPOCHS_COMPLETED)
    return "?" if pd.isna(value) else fmt_value(value)


def _open_points(
    done: Progress, x: str, y: str, x_levels: list[Any], y_levels: list[Any]
) -> pd.DataFrame:
    """Per cell, the grid points without a finished run, one column per status (failed,
    crashed, running, ..., not started), in reading order."""
    index = pd.MultiIndex.from_product([x_levels, y_levels], names=[x, y])
    rest = done.points[done.points["status"] != FINISHED]
    out = rest.groupby([x, y, "status"]).size().unstack("status") if len(rest) else None
    if out is None:
        return pd.DataFrame(index=index)
    rank = {s: i for i, s in enumerate(STATE_ORDER)}
    cols = sorted(out.columns, key=lambda s: (s == NOT_STARTED, rank.get(s, len(rank)), s))
    return out[cols].reindex(index).fillna(0).astype(int)
