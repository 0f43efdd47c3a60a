"""Runs of a wandb sweep through the public API, cached on disk so replotting is offline."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from analysis.table import AnalysisError, Study, table_from_records
from sweepmap.wandb_exit import wandb_error

if TYPE_CHECKING:
    import wandb

DEFAULT_CACHE = Path(".sweepmap") / "wandb-cache"
# One page of runs per request: the API's default (50), and api.sweep(...).runs (10 per
# page), make a 48-run sweep cost many round trips.
PER_PAGE = 200


def parse_path(path: str) -> tuple[str, str, str]:
    """ENTITY/PROJECT/SWEEP_ID, or ENTITY/PROJECT/sweeps/SWEEP_ID as in the web URL."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) == 4 and parts[2] == "sweeps":
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) != 3:
        raise AnalysisError(f"--wandb {path!r}: expected ENTITY/PROJECT/SWEEP_ID")
    return parts[0], parts[1], parts[2]


def fetch_wandb(path: str, api: wandb.Api | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(table, sweep config) of a wandb sweep; `api` may point at any server (tests: a fake)."""
    entity, project, sweep_id = parse_path(path)
    if api is None:
        import wandb  # imported here: a second or two that store-only analyses need not pay

        api = wandb.Api()
    sweep_config = dict(api.sweep(f"{entity}/{project}/{sweep_id}").config)
    # lazy=False: config and summary come in the listing itself, not one request per run.
    runs = api.runs(
        f"{entity}/{project}", filters={"sweep": sweep_id}, per_page=PER_PAGE, lazy=False
    )
    records = [
        {
            "run_id": run.id,
            "state": run.state,
            "config": dict(run.config),
            "summary": dict(run.summary_metrics),
            "runtime": None,
        }
        for run in runs
    ]
    return table_from_records(records, sweep_config), sweep_config


def cache_path(path: str, cache_dir: Path | str) -> Path:
    entity, project, sweep_id = parse_path(path)
    return Path(cache_dir) / f"{entity}_{project}_{sweep_id}.json"


def load_wandb(
    path: str,
    cache_dir: Path | str = DEFAULT_CACHE,
    refresh: bool = False,
    api: wandb.Api | None = None,
) -> Study:
    """From the cache when there is one (and not `refresh`), else fetched and cached."""
    entity, project, sweep_id = parse_path(path)
    file = cache_path(path, cache_dir)
    if file.is_file() and not refresh:
        cached = json.loads(file.read_text())
        table = pd.DataFrame(cached["rows"], columns=cached["columns"])
        sweep_config, fetched = cached["sweep_config"], cached["fetched"]
        origin = f"wandb {entity}/{project}/{sweep_id} (cache of {fetched}; --refresh to update)"
    else:
        try:
            table, sweep_config = fetch_wandb(path, api)
        except AnalysisError:
            raise
        except Exception as err:  # network, auth, unknown sweep: one line, not a traceback
            raise AnalysisError(f"--wandb {path}: {wandb_error(err)}") from None
        fetched = time.strftime("%Y-%m-%d %H:%M")
        _write_cache(file, table, sweep_config, fetched)
        origin = f"wandb {entity}/{project}/{sweep_id} (fetched {fetched})"
    return Study(
        name=f"{project}-{sweep_id}",
        table=table,
        sweep_config=sweep_config,
        # The server keeps the parsed config, not the file, so comments are gone; the
        # question then comes from `description:` only (or from --yaml, see cli).
        yaml_text=yaml.safe_dump(sweep_config, sort_keys=False),
        origin=origin,
    )


def _write_cache(file: Path, table: pd.DataFrame, sweep_config: dict[str, Any], when: str) -> None:
    rows = [[_json_value(v) for v in row] for row in table.itertuples(index=False)]
    data = {"fetched": when, "sweep_config": sweep_config, "columns": list(table.columns)}
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    # Written whole then renamed: an interrupted fetch never leaves a truncated cache.
    tmp.write_text(json.dumps({**data, "rows": rows}))
    tmp.replace(file)


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
