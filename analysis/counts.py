"""How far a sweep got, counted by grid point: finished, the state of its last run, not started.

A grid point is finished when any of its runs finished (a retry that succeeded is no loss).
Otherwise it is in the state of its last run, as the store or wandb names it: failed, crashed,
running, pending, or a state this module has never heard of (a store's new `error`, wandb's
`killed`); none of them is mistaken for finished. A point with no run at all is not started.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.design import study_axes
from analysis.labels import plain
from analysis.table import FINISHED, LOG_PATH, AnalysisError, Study
from sweepmap import keys

NOT_STARTED = "not started"
# The order in which states are named after "finished"; any other state follows, by name.
STATE_ORDER = ("failed", "crashed", "error", "running", "pending")
NO_REASON = "no reason recorded"


@dataclass(frozen=True)
class Progress:
    """One row per grid point: its parameters, status, last run_id, failure reason, log."""

    points: pd.DataFrame
    runs: int  # rows of the table, retries and duplicates included
    off_grid: int  # runs whose point is not on the sweep's grid (not counted anywhere)

    @property
    def total(self) -> int:
        return len(self.points)

    @property
    def finished(self) -> int:
        return int((self.points["status"] == FINISHED).sum())

    def counts(self) -> dict[str, int]:
        """status -> points, in reading order; only the statuses that occur."""
        seen = self.points["status"].value_counts().to_dict()
        rank = {s: i for i, s in enumerate((FINISHED, *STATE_ORDER))}
        order = sorted(seen, key=lambda s: (s == NOT_STARTED, rank.get(s, len(rank)), s))
        return {s: int(seen[s]) for s in order}

    def line(self) -> str:
        """'17 of 27 grid points finished; 2 crashed, 8 not started (21 runs)'."""
        rest = [f"{n} {s}" for s, n in self.counts().items() if s != FINISHED]
        head = f"{self.finished} of {self.total} grid points finished"
        runs = f"{self.runs} run{'s' * (self.runs != 1)}"
        if self.off_grid:
            runs += f", {self.off_grid} off the grid and not counted"
        return f"{head}{'; ' + ', '.join(rest) if rest else ''} ({runs})"

    def failures(self) -> pd.DataFrame:
        """Points that ran and did not finish, one row per (status, reason): n, an example
        log path, and the points themselves (for naming their cells)."""
        bad = self.points[~self.points["status"].isin([FINISHED, NOT_STARTED])]
        rows = []
        for (status, reason), group in bad.groupby(["status", "reason"], sort=False):
            logs = [p for p in group[LOG_PATH] if isinstance(p, str) and p]
            rows.append(
                {
                    "status": status,
                    "reason": reason,
                    "n": len(group),
                    "log": logs[0] if logs else None,
                    "points": group,
                }
            )
        rows.sort(key=lambda r: -int(r["n"]))
        return pd.DataFrame(rows, columns=["status", "reason", "n", "log", "points"])


def grid_points(study: Study) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(parameter names, points): the stored grid, else every combination of the levels,
    else (not a grid) the points the runs reached."""
    names = [a.name for a in study_axes(study) if a.name in study.table]
    if study.points is not None and names:
        return names, [tuple(plain(p.get(n)) for n in names) for p in study.points]
    if names:
        levels = [a.levels for a in study_axes(study) if a.name in study.table]
        return names, [tuple(plain(v) for v in p) for p in itertools.product(*levels)]
    names = [c for c in study.sweep_config.get("parameters", {}) if c in study.table]
    seen = study.table[names].itertuples(index=False, name=None)
    return names, list(dict.fromkeys(tuple(plain(v) for v in p) for p in seen))


def progress(study: Study) -> Progress:
    names, grid = grid_points(study)
    status: dict[tuple[Any, ...], dict[str, Any]] = {
        p: {"status": NOT_STARTED, "run_id": None, "reason": None, LOG_PATH: None} for p in grid
    }
    table = study.table
    failure = table[keys.FAILURE] if keys.FAILURE in table else pd.Series(None, index=table.index)
    logs = table[LOG_PATH] if LOG_PATH in table else pd.Series(None, index=table.index)
    off = 0
    for i, point in enumerate(table[names].itertuples(index=False, name=None)):
        point = tuple(plain(v) for v in point)
        if point not in status:
            off += 1
            continue
        if status[point]["status"] == FINISHED:
            continue  # a finished run settles its point; a later failure does not undo it
        state, why = str(table["state"].iloc[i]), failure.iloc[i]
        status[point] = {
            "status": state,
            "run_id": table["run_id"].iloc[i],
            "reason": None if state == FINISHED else _reason(why),
            LOG_PATH: logs.iloc[i],
        }
    frame = pd.DataFrame([(*p, *s.values()) for p, s in status.items()])
    frame.columns = [*names, "status", "run_id", "reason", LOG_PATH]
    return Progress(frame, len(table), off)


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return NO_REASON
    # One line of it: a reason may be a multi-line error; the log has the rest.
    return textwrap.shorten(value.strip().splitlines()[0], 90, placeholder=" …")


def refuse_without_finished(study: Study, p: Progress) -> None:
    """Zero finished runs: nothing to draw. Say how far the sweep got and where to look."""
    if p.finished:
        return
    failures = p.failures()
    why = "; ".join(f"{r.n} {r.status}: {r.reason}" for r in failures.head(2).itertuples())
    logs = [r.log for r in failures.itertuples() if r.log]
    if logs:
        where = f"logs in {Path(logs[0]).parent} (e.g. {logs[0]})"
    elif study.yaml_path and not p.runs:
        where = f"run it first: python -m localsweep run {study.yaml_path}"
    else:
        where = "no log recorded"
    raise AnalysisError(
        f"sweep {study.name}: no finished run to analyse: {p.line()}"
        f"{'; ' + why if why else ''}; {where}"
    )
