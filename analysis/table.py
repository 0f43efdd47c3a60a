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

from localsweep.rows import DB_NAME, StoreError
from localsweep.store import Store
from sweepmap import keys
from sweepmap.config import Config
from sweepmap.sweepfile import SweepError, metric, read_sweep, sweep_name

FINISHED = "finished"
ID_COLUMNS = ("run_id", "state")
LOG_PATH = "log_path"  # the run's log file (local store only): where a failure is explained
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
    # The grid as stored when the sweep was created (local store); None: from the axes.
    points: list[dict[str, Any]] | None = None

    def goal(self, name: str) -> str:
        """'max' or 'min': the sweep's own `metric.goal` for its metric, else by the key."""
        own = metric(self.sweep_config)
        if own is not None and own[0] == name:
            return "max" if own[1] == "maximize" else "min"
        return keys.goal_of(name)


def config_keys(sweep_config: Mapping[str, Any]) -> list[str]:
    """Config fields, then any sweep parameter that is not one (kept, never dropped)."""
    names = [f.name for f in dataclasses.fields(Config)]
    return names + [k for k in sweep_config.get("parameters", {}) if k not in names]


def table_from_records(
    records: Iterable[Mapping[str, Any]], sweep_config: Mapping[str, Any]
) -> pd.DataFrame:
    """Records of {run_id, state, config, summary, runtime, log_path?} -> the tidy table.

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
        row[LOG_PATH] = rec.get(LOG_PATH)
        rows.append(row)
    ordered = [*ID_COLUMNS, *cfg_cols, *_metric_order(metric_cols), keys.RUNTIME, LOG_PATH]
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


def build_table(
    store_dir: Path | str, sweep: str | None = None, yaml_path: Path | str | None = None
) -> Study:
    """The runs of one sweep in a local store, found by name, by its YAML file, or alone."""
    root = Path(store_dir)
    # Store() creates the folder and the database: check first, so a typo writes nothing.
    if not (root / DB_NAME).is_file():
        raise AnalysisError(f"--store {root}: no local store there (no {DB_NAME})")
    try:
        store = Store(root, create=False)
    except StoreError as err:  # corrupt: one line, with the fix
        raise AnalysisError(str(err)) from None
    try:
        names = [s.name for s in store.sweeps()]
        if yaml_path is not None:
            try:
                _, cfg = read_sweep(yaml_path)
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
        points = store.points(name)
    except StoreError as err:  # a page that reads as corrupt only now
        raise AnalysisError(str(err)) from None
    finally:
        store.close()
    records = [
        {
            "run_id": r.id,
            "state": r.state,
            "config": r.config,
            "summary": r.summary,
            "runtime": r.runtime,
            LOG_PATH: r.log_path,
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
        points=points or None,  # a store made before grids were stored: from the axes
    )
