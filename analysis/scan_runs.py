"""A scan's runs at one budget: which runs count, at which epoch's value, and how each
parameter is encoded for the surrogate.

A scan (`method: random` or `bayes`, often with hyperband) ends its runs at different epochs.
One surrogate is fitted at one budget N: a run that reached epoch N counts with its value
at epoch N from its history (a stopped run at the rung it completed, a finished one as it
stood then), never with its last summary; a run stopped before N is left out; failed,
crashed and unfinished runs are left out. Every choice is said in one line.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.labels import plain
from analysis.table import FINISHED, AnalysisError, Study
from sweepmap import keys

SCAN_METHODS = ("random", "bayes")
STOPPED = "stopped"  # the store's state of a run ended by its scan's early_terminate rule
USABLE = (FINISHED, STOPPED)
REACHED_SHARE = 2 / 3  # the default budget: the largest epoch that this share of runs reached
# Distributions whose values spread over orders of magnitude: encoded and spaced as log10.
LOG_DISTRIBUTIONS = (
    "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
    "inv_log_uniform", "inv_log_uniform_values", "log_normal", "q_log_normal",
)  # fmt: skip
# log_uniform and q_log_uniform take min and max as exponents of e, not as values.
EXPONENT_BOUNDS = ("log_uniform", "q_log_uniform", "inv_log_uniform")

History = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Param:
    """One varied parameter of a scan: how it is drawn, so how it is encoded and spaced."""

    name: str
    kind: str  # categorical, log, linear or int
    values: tuple[Any, ...] = ()  # categorical: the listed values, in order (codes 0..k-1)
    low: float | None = None  # the distribution's bounds, as values
    high: float | None = None

    @property
    def categorical(self) -> bool:
        return self.kind == "categorical"

    def encode(self, column: pd.Series) -> np.ndarray:
        if self.categorical:
            codes = {plain(v): k for k, v in enumerate(self.values)}
            return np.array([codes.get(plain(v), math.nan) for v in column], dtype=float)
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        if self.kind == "log":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(numbers > 0, np.log10(numbers), math.nan)
        return numbers

    def decode(self, level: float) -> Any:
        """A quadrature level back to a value of the parameter (for labels)."""
        if self.categorical:
            return self.values[round(float(level))]
        if self.kind == "log":
            return float(10**level)
        return round(float(level)) if self.kind == "int" else float(level)


def is_scan(config: dict[str, Any]) -> bool:
    return config.get("method") in SCAN_METHODS


def scan_params(config: dict[str, Any]) -> tuple[list[Param], list[str]]:
    """(varied parameters, notes): seed is the replicate, not a choice, and is left out."""
    out, notes = [], []
    for name, spec in (config.get("parameters") or {}).items():
        if not isinstance(spec, dict) or "value" in spec:
            continue
        if name == "seed":
            notes.append("seed is the replicate, not a choice: left out of the surrogate")
            continue
        if name == "epochs":
            notes.append("epochs varies in the scan: left out, the runs are compared at one budget")
            continue
        dist = str(spec.get("distribution", ""))
        values = spec.get("values")
        if isinstance(values, list):
            if len(values) > 1:
                out.append(Param(name, "categorical", tuple(plain(v) for v in values)))
            continue
        low, high = spec.get("min"), spec.get("max")
        if not dist:
            ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
            dist = "int_uniform" if ints else "uniform"
        if dist in EXPONENT_BOUNDS and low is not None and high is not None:
            low, high = math.exp(low), math.exp(high)
        kind = "log" if dist in LOG_DISTRIBUTIONS else "int" if dist == "int_uniform" else "linear"
        out.append(Param(name, kind, (), _num(low), _num(high)))
    return out, notes


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def reached(study: Study, history: History) -> pd.Series:
    """Epochs each run completed: its summary's count, else its last logged epoch."""
    table = study.table
    done = pd.to_numeric(table[keys.EPOCHS_COMPLETED], errors="coerce")
    if keys.EPOCH in table:
        done = done.fillna(pd.to_numeric(table[keys.EPOCH], errors="coerce"))
    last = table["run_id"].map(
        lambda r: max((int(h.get(keys.EPOCH, 0)) for h in history.get(r, [])), default=math.nan)
    )
    return done.fillna(last)


def default_budget(reach: pd.Series) -> int:
    """The largest epoch count that at least REACHED_SHARE of the usable runs reached."""
    counts = reach.dropna().astype(int)
    need = math.ceil(REACHED_SHARE * len(counts))
    return max(e for e in sorted(set(counts)) if (counts >= e).sum() >= need)


def value_at(history: list[dict[str, Any]], metric: str, epoch: int) -> float:
    """The metric at that epoch from the run's history; NaN when not logged there."""
    for row in history:
        if int(row.get(keys.EPOCH, -1)) == epoch and row.get(metric) is not None:
            return float(row[metric])
    return math.nan


@dataclass(frozen=True)
class AtBudget:
    budget: int
    runs: pd.DataFrame  # run_id, state, the parameters (raw values) and "y"
    line: str  # which runs count and which are left out, with how many
    why: str  # how the budget was chosen


def at_budget(
    study: Study, history: History, metric: str, budget: int | None, params: list[Param]
) -> AtBudget:
    table = study.table
    reach = reached(study, history)
    # A wandb run that its scan stopped is `finished` there (train.py exits 0); the summary's
    # reason says what it is.
    said = table[keys.STOPPED] if keys.STOPPED in table else pd.Series(None, index=table.index)
    state = table["state"].where(~(said.notna() & (table["state"] == FINISHED)), STOPPED)
    usable = state.isin(USABLE)
    if not usable.any():
        states = ", ".join(f"{n} {s}" for s, n in Counter(table["state"]).most_common()) or "none"
        raise AnalysisError(f"sweep {study.name}: no finished or stopped run yet (runs: {states})")
    if budget is None:
        budget = default_budget(reach[usable])
        why = f"the largest epoch count that at least 2/3 of the {int(usable.sum())} "
        why += "finished and stopped runs reached; --budget N to choose"
    else:
        why = "--budget"
        if not (reach[usable] >= budget).any():
            seen = Counter(int(e) for e in reach[usable].dropna())
            runs = ", ".join(f"{e} ({n} runs)" for e, n in sorted(seen.items())) or "none known"
            raise AnalysisError(
                f"--budget {budget}: no finished or stopped run reached epoch {budget}; "
                f"epochs they completed: {runs}"
            )
    values, notes = [], Counter[str]()
    for i, row in table.iterrows():
        if not usable[i]:
            notes[f"{state[i]}"] += 1
            values.append(math.nan)
            continue
        if not reach[i] >= budget:
            notes[f"{state[i]} before epoch {budget}"] += 1
            values.append(math.nan)
            continue
        value = value_at(history.get(str(row["run_id"]), []), metric, budget)
        if math.isnan(value) and reach[i] == budget and metric in table:
            value = pd.to_numeric(pd.Series([row[metric]]), errors="coerce").iloc[0]
        if math.isnan(value):
            notes[f"no {metric} at epoch {budget}"] += 1
        values.append(value)
    y = pd.Series(values, index=table.index, dtype=float)
    kept = table[y.notna()].assign(state=state[y.notna()], y=y[y.notna()])
    stopped = int((kept["state"] == STOPPED).sum())
    line = f"budget {budget} epochs: {len(kept)} runs"
    if stopped:
        line += f" ({stopped} stopped run{'s' * (stopped != 1)} at their epoch-{budget} value)"
    if notes:
        out = sum(notes.values())
        line += f"; {out} left out (" + ", ".join(f"{n} {w}" for w, n in notes.items()) + ")"
    cols = ["run_id", "state", *(p.name for p in params if p.name in kept), "y"]
    return AtBudget(budget, kept[cols].reset_index(drop=True), line, why)


def design(runs: pd.DataFrame, params: list[Param]) -> pd.DataFrame:
    """The surrogate's inputs: one encoded column per parameter; a run with a value outside
    its parameter's levels (a categorical value the file does not list) is an error."""
    out = {}
    for p in params:
        column = p.encode(runs[p.name])
        bad = runs.loc[np.isnan(column), p.name]
        if len(bad):
            allowed = ", ".join(str(v) for v in p.values) if p.categorical else "> 0"
            raise AnalysisError(
                f"parameters.{p.name}: run {runs.loc[bad.index[0], 'run_id']} has "
                f"{bad.iloc[0]!r}; allowed: {allowed}"
            )
        out[p.name] = column
    return pd.DataFrame(out, index=runs.index)
