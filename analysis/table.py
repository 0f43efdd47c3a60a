"""One tidy table of runs, one row per run, whatever the source (local store or wandb).

Columns: run_id, state, every Config key (the store keeps only the sweep point, so the rest
comes from Config defaults), the summary metrics, epochs_completed and runtime.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from localsweep.grid import load_sweep
from localsweep.store import DB_NAME, Store
from sweepmap import keys
from sweepmap.config import Config
from sweepmap.sweepfile import SweepError, sweep_name, varied

FINISHED = "finished"
# States that may still turn into a finished run; anything else that is not finished
# (failed, crashed, killed, preempted) counts as a failure of its grid point.
UNFINISHED = ("pending", "running", "preempting")
ID_COLUMNS = ("run_id", "state")
DEFAULT_METRICS = (keys.BEST_VAL_ACCURACY, keys.VAL_ACCURACY, keys.VAL_LOSS)


class AnalysisError(ValueError):
    """Bad input or a refused analysis; its message is the one line a user sees (exit 2)."""


@dataclass(frozen=True)
class Study:
    """A sweep's runs and what is known about the sweep itself."""

    name: str
    table: pd.DataFrame
    sweep_config: dict[str, Any]
    yaml_text: str
    origin: str  # where the runs came from, for the report's footer
    yaml_path: str | None = None


def config_keys(sweep_config: Mapping[str, Any]) -> list[str]:
    """Config fields, then any sweep parameter that is not one (kept, never dropped)."""
    names = [f.name for f in dataclasses.fields(Config)]
    return names + [k for k in sweep_config.get("parameters", {}) if k not in names]


def table_from_records(
    records: Iterable[Mapping[str, Any]], sweep_config: Mapping[str, Any]
) -> pd.DataFrame:
    """Records of {run_id, state, config, summary, runtime} -> the tidy table.

    Summary keys starting with '_' are wandb's bookkeeping and are dropped, except _runtime,
    which stands in for `runtime` when train.py's own value is absent (a crash before the end).
    Non-scalar summary values (histograms, tables) have no place in a cell and are dropped.
    """
    defaults = Config().to_dict()
    cfg_cols = config_keys(sweep_config)
    rows: list[dict[str, Any]] = []
    metric_cols: list[str] = []
    for rec in records:
        config = {k: v for k, v in rec["config"].items() if not k.startswith("_")}
        row: dict[str, Any] = {"run_id": str(rec["run_id"]), "state": str(rec["state"])}
        row.update({k: config.get(k, defaults.get(k)) for k in cfg_cols})
        summary = dict(rec.get("summary") or {})
        runtime = summary.get(keys.RUNTIME, rec.get("runtime"))
        if runtime is None:
            runtime = summary.get("_runtime")
        for k, v in summary.items():
            if k.startswith("_") or k == keys.RUNTIME or not _scalar(v):
                continue
            col = k if k not in row else f"summary.{k}"  # never shadow a config column
            row[col] = v
            if col not in metric_cols:
                metric_cols.append(col)
        row[keys.RUNTIME] = runtime
        rows.append(row)
    ordered = [*ID_COLUMNS, *cfg_cols, *_metric_order(metric_cols), keys.RUNTIME]
    table = pd.DataFrame(rows, columns=ordered)
    if keys.EPOCHS_COMPLETED not in table:
        table[keys.EPOCHS_COMPLETED] = math.nan
    return table


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _metric_order(cols: list[str]) -> list[str]:
    """Logged metrics first in keys' order, then their bests, then the rest as seen."""
    known = [*keys.EPOCH_METRICS, *keys.BEST_OF.values(), keys.EPOCHS_COMPLETED]
    return [c for c in known if c in cols] + [c for c in cols if c not in known]


def metric_columns(table: pd.DataFrame, sweep_config: Mapping[str, Any]) -> list[str]:
    """Numeric summary columns with at least one value: the metrics one can plot."""
    skip = {*ID_COLUMNS, *config_keys(sweep_config), keys.EPOCHS_COMPLETED}
    return [
        c
        for c in table.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
        and table[c].notna().any()
    ]


def axes_of(study: Study, x: str | None, y: str | None) -> tuple[str, str]:
    """The two varied parameters other than seed, in file order; --x/--y override."""
    allowed = [c for c in config_keys(study.sweep_config) if c in study.table]
    for flag, name in (("--x", x), ("--y", y)):
        if name is not None and name not in allowed:
            raise AnalysisError(f"{flag} {name!r}: not a parameter; allowed: {', '.join(allowed)}")
    free = [p for p in varied(study.sweep_config) if p != "seed" and p not in (x, y)]
    x = x or (free.pop(0) if free else None)
    y = y or (free.pop(0) if free else None)
    if x is None or y is None:
        vary = ", ".join(varied(study.sweep_config)) or "none"
        raise AnalysisError(
            f"sweep {study.name}: needs two varied parameters besides seed (varied: {vary}); "
            f"name them with --x and --y"
        )
    if x == y:
        raise AnalysisError(f"--x and --y are both {x!r}: a heatmap needs two parameters")
    return x, y


def check_metrics(study: Study, metrics: list[str] | None) -> list[str]:
    """Asked-for metrics must exist; the defaults are used where the runs have them."""
    available = metric_columns(study.table, study.sweep_config)
    if metrics:
        for m in metrics:
            if m not in available:
                raise AnalysisError(
                    f"--metric {m!r}: no run of {study.name} has it; "
                    f"allowed: {', '.join(available) or 'none (no run has a summary yet)'}"
                )
        return list(dict.fromkeys(metrics))
    chosen = [m for m in DEFAULT_METRICS if m in available]
    if not chosen:
        raise AnalysisError(
            f"sweep {study.name}: none of the default metrics ({', '.join(DEFAULT_METRICS)}) "
            f"in the runs; choose with --metric from: {', '.join(available) or 'none'}"
        )
    return chosen


def build_table(
    store_dir: Path | str, sweep: str | None = None, yaml_path: Path | str | None = None
) -> Study:
    """The runs of one sweep in a local store, found by name, by its YAML file, or alone."""
    root = Path(store_dir)
    # Store() creates the folder and the database: check first, so a typo writes nothing.
    if not (root / DB_NAME).is_file():
        raise AnalysisError(f"--store {root}: no local store there (no {DB_NAME})")
    store = Store(root)
    try:
        names = [s.name for s in store.sweeps()]
        if yaml_path is not None:
            try:
                _, cfg = load_sweep(yaml_path)
            except SweepError as err:
                raise AnalysisError(str(err)) from None
            name = sweep_name(yaml_path, cfg)
            if sweep is not None and sweep != name:
                raise AnalysisError(f"--sweep {sweep!r} and --yaml {yaml_path} (= {name}) differ")
            if name not in names:
                raise AnalysisError(
                    f"--yaml {yaml_path}: its sweep {name} is not in {root} "
                    f"(sweeps there: {', '.join(names) or 'none'}); "
                    f"run `python -m localsweep run {yaml_path} --store {root}` first"
                )
        elif sweep is not None:
            if sweep not in names:
                raise AnalysisError(
                    f"--sweep {sweep!r}: not in {root}; sweeps there: {', '.join(names) or 'none'}"
                )
            name = sweep
        elif len(names) == 1:
            name = names[0]
        else:
            raise AnalysisError(
                f"--store {root}: holds {len(names)} sweeps; choose one with --sweep NAME "
                f"or --yaml FILE: {', '.join(names) or 'none'}"
            )
        record = store.sweep(name)
        runs = store.runs(name)
    finally:
        store.close()
    records = [
        {
            "run_id": r.id,
            "state": r.state,
            "config": r.config,
            "summary": r.summary,
            "runtime": r.runtime,
        }
        for r in runs
    ]
    return Study(
        name=name,
        table=table_from_records(records, record.config),
        sweep_config=record.config,
        yaml_text=record.yaml,
        origin=f"local store {root}",
        yaml_path=str(yaml_path) if yaml_path is not None else None,
    )
