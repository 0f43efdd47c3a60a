"""analysis' wandb source against real runs: train.py through a sweep in the loopback fake.

A 2 lr x 2 seed grid of train.py (one epoch on digits) goes into the fake via the real
`wandb sweep` and an agent; then `analysis.wandbsrc.load_wandb` reads it through the real
`wandb.Api`, in a subprocess (wandb reads WANDB_BASE_URL / WANDB_API_KEY once per process), and
once more from its cache with the fake stopped.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sweepmap import keys
from sweepmap.config import Config
from tests.conftest import ROOT
from tests.fakewandb import FakeWandb
from tests.test_wandb_contract import TRAIN, fake_grid, run_sweep_cli, train_env

READER = """\
import json, sys
from analysis.wandbsrc import load_wandb

study = load_wandb(sys.argv[1], cache_dir=sys.argv[2], refresh=len(sys.argv) > 3)
table = study.table
print("RESULT " + json.dumps({
    "origin": study.origin, "sweep_config": study.sweep_config,
    "columns": list(table.columns), "rows": table.to_dict(orient="records"),
}))
"""


def read_study(
    path: str, cache: Path, env: dict[str, str], refresh: bool = False
) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", READER, path, str(cache), *(["--refresh"] if refresh else [])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def no_nan(row: dict[str, Any]) -> dict[str, Any]:
    """The cache writes NaN as null; compare them as equal."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


@pytest.mark.slow
def test_wandb_table_from_real_runs_then_from_cache(tmp_path: Path) -> None:
    parameters = {
        "lr": {"values": [1.0e-3, 1.0e-2]},
        "seed": {"values": [0, 1]},
        "epochs": {"value": 1},
    }
    cache = tmp_path / "wandb-cache"
    with FakeWandb() as fake:
        # The in-process agent makes the same runs as `wandb agent` (tests/test_agents.py)
        # in ~15 s instead of ~50 s.
        sweep = run_sweep_cli(
            fake, tmp_path, parameters, TRAIN, extra_env=train_env(tmp_path), inprocess=True
        )
        path = f"{sweep.path}/{sweep.sweep_id}"
        fresh = read_study(path, cache, sweep.env)
        fetches = fake.ops.count("Runs")
        assert "cache of" in read_study(path, cache, sweep.env)["origin"]
        assert fake.ops.count("Runs") == fetches  # the cache answered: no request
        refreshed = read_study(path, cache, sweep.env, refresh=True)
        assert "fetched" in refreshed["origin"] and fake.ops.count("Runs") > fetches
    assert fake.unknown == [], fake.unknown
    runs = {r.name: r for r in fake.sweep_runs(sweep.sweep_id)}
    assert len(runs) == 4 and all(r.state == "finished" for r in runs.values())

    assert fresh["sweep_config"]["parameters"] == parameters
    assert "fetched" in fresh["origin"]
    rows = {row["run_id"]: row for row in fresh["rows"]}
    assert sorted(rows) == sorted(runs)  # the 4 runs, nothing else
    columns = fresh["columns"]
    # Every Config key is a column (train.py logs its whole config), then the metrics.
    assert columns[:2] == ["run_id", "state"]
    assert columns[2 : 2 + len(Config().to_dict())] == list(Config().to_dict())
    points = [{k: row[k] for k in ("epochs", "lr", "seed")} for row in rows.values()]
    assert sorted(points, key=repr) == sorted(fake_grid(parameters), key=repr)
    for name, row in rows.items():
        run = runs[name]  # what the backend holds, read independently of the analysis
        assert row["state"] == "finished"
        assert {k: row[k] for k in run.params} == run.params
        for key in (keys.VAL_ACCURACY, keys.BEST_VAL_ACCURACY, keys.VAL_LOSS, keys.VAL_F1):
            assert row[key] == pytest.approx(run.summary[key])
        assert row[keys.EPOCHS_COMPLETED] == 1
        assert row[keys.RUNTIME] == pytest.approx(run.summary[keys.RUNTIME])
        assert not any(c.startswith("_") for c in row)  # wandb's bookkeeping stays out
        assert math.isfinite(row[keys.BEST_VAL_ACCURACY])

    # The fake is stopped: the second read comes from the cache file alone.
    assert len(list(cache.glob("*.json"))) == 1
    cached = read_study(path, cache, sweep.env)
    assert "cache of" in cached["origin"]
    assert cached["columns"] == fresh["columns"]
    assert [no_nan(r) for r in cached["rows"]] == [no_nan(r) for r in fresh["rows"]]
    assert cached["sweep_config"] == fresh["sweep_config"]
