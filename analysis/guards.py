"""What may go into one heatmap, and what was left out and why.

The rules (GUIDE section 5): only finished runs; one training budget (same `epochs`, every
run completed them, so no early-stopped run sits beside a full one); a repeated point counts
once; failed and missing cells stay visible. Each check leaves a line in `notes`, which the
text output and every figure show.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.labels import fmt_on_axis, fmt_value, levels, short_list
from analysis.table import FINISHED, UNFINISHED, AnalysisError, Study, config_keys
from sweepmap import keys
from sweepmap.sweepfile import varied


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
    cells: pd.DataFrame  # per (x, y) cell: failed and unfinished grid points, no finished run
    counts: dict[str, int]  # runs per state, before any guard
    notes: list[str] = field(default_factory=list)  # "OK ..." or "WARNING ..." lines
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> run ids

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
    table = study.table
    counts = dict(Counter(table["state"]))
    notes: list[str] = []
    dropped: dict[str, list[str]] = {}
    total = len(table)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    notes.append(f"OK {total} runs: {summary or 'none'}; only finished runs are counted")

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

    x_levels = levels(x, study.sweep_config, table[x])
    y_levels = levels(y, study.sweep_config, table[y])
    cells = _failures(table, runs, key, x, y, x_levels, y_levels)
    failed, unfinished = int(cells["failed"].sum()), int(cells["unfinished"].sum())
    if failed or unfinished:
        parts = [f"{failed} failed"] * bool(failed) + [f"{unfinished} running"] * bool(unfinished)
        notes.append(
            f"WARNING {failed + unfinished} grid point(s) without a finished run "
            f"({', '.join(parts)}); counted in their cells"
        )
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
    pooled = [p for p in varied(study.sweep_config) if p not in (x, y, "seed")]
    if pooled:
        notes.append(f"WARNING {', '.join(pooled)} also varied: pooled with the seeds in each cell")
    return Guarded(study, x, y, x_levels, y_levels, runs, cells, counts, notes, dropped)


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


def _failures(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    key: list[str],
    x: str,
    y: str,
    x_levels: list[Any],
    y_levels: list[Any],
) -> pd.DataFrame:
    """Per cell, the grid points that never finished: failed (or crashed) and still running.

    A point that failed and then finished on a retry is not a loss, so it is not counted.
    """
    done = set(map(tuple, runs[key].itertuples(index=False, name=None)))
    rest = table[table["state"] != FINISHED]
    open_point = [p not in done for p in rest[key].itertuples(index=False, name=None)]
    rest = rest.loc[pd.Series(open_point, index=rest.index, dtype=bool)]
    rest = rest.drop_duplicates(subset=key, keep="last")  # a point counts once, by its last run
    index = pd.MultiIndex.from_product([x_levels, y_levels], names=[x, y])
    unfinished = rest["state"].isin(UNFINISHED)
    out = pd.DataFrame(
        {
            "failed": rest[~unfinished].groupby([x, y]).size(),
            "unfinished": rest[unfinished].groupby([x, y]).size(),
        }
    )
    return out.reindex(index).fillna(0).astype(int)
