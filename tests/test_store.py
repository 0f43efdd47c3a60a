"""The store hands out grid points as wandb's engine would, without loading the engine.

The oracle is `sweeps.next_run` itself, given the runs the store holds at each step: a claim
must return the engine's next point after finished, failed, running and crashed runs alike.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localsweep.grid import all_points, sweeps
from localsweep.store import Store

from .conftest import ROOT

CONFIG: dict[str, Any] = {
    "method": "grid",
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "parameters": {
        "lr": {"values": [0.1, 0.01, 0.001]},
        "optimizer": {"values": ["sgd", "adam"]},
        "seed": {"values": [0, 1]},
        "epochs": {"value": 1},
    },
}


def engine_next(store: Store, sweep: str, retry_failed: bool) -> dict[str, Any] | None:
    """What wandb's engine proposes next, seeing the runs that hold a grid point."""
    skip = ("crashed", "failed") if retry_failed else ("crashed",)
    runs = [
        sweeps.SweepRun(
            name=r.id, state="running", config={k: {"value": v} for k, v in r.config.items()}
        )
        for r in store.runs(sweep)
        if r.state not in skip
    ]
    nxt = sweeps.next_run(CONFIG, runs, validate=False)
    return None if nxt is None else {k: v["value"] for k, v in nxt.config.items()}


def make(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    assert store.create_sweep("s", "", CONFIG, all_points(CONFIG))
    return store


@pytest.mark.parametrize("retry_failed", [False, True])
def test_claims_follow_the_engine_through_every_state(tmp_path: Path, retry_failed: bool) -> None:
    store = make(tmp_path)
    # finished, failed, crashed, still running: every state a run can leave its point in
    outcomes = ["finished", "failed", "crashed", "finished", "running"] * 4
    claimed = []
    for i, outcome in enumerate(outcomes):
        expected = engine_next(store, "s", retry_failed)
        run = store.claim("s", f"r{i}", retry_failed)
        assert (run and run.config) == expected, f"claim {i} differs from the engine"
        if run is None:
            break
        claimed.append(run.config)
        if outcome != "running":
            store.finish(run.id, outcome, {}, 0.0, 0)
    assert store.claim("s", "last", retry_failed) is None
    assert engine_next(store, "s", retry_failed) is None
    assert len(claimed) > len(CONFIG["parameters"]["lr"]["values"]) * 4  # crashed re-ran


def test_remaining_counts_points_without_a_run(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert store.total("s") == 12 and store.remaining("s") == 12
    a, b = store.claim("s", "a"), store.claim("s", "b")
    assert a and b
    store.finish(a.id, "failed", {}, 0.0, 1)
    assert store.remaining("s") == 10
    assert store.remaining("s", retry_failed=True) == 11
    store.finish(b.id, "crashed", {}, 0.0, None)
    assert store.remaining("s") == 11


def test_resume_keeps_the_stored_grid(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert not store.create_sweep("s", "", CONFIG, all_points(CONFIG)[:3])
    assert store.points("s") == all_points(CONFIG)


def test_a_sweep_without_a_stored_grid_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.create_sweep("bare", "", CONFIG)
    with pytest.raises(KeyError, match="no grid stored"):
        store.claim("bare", "x")
    with pytest.raises(KeyError, match="no sweep 'nope'"):
        store.claim("nope", "x")


def test_an_agent_does_not_load_the_sweep_engine() -> None:
    """The engine's scipy.stats import is ~0.5 s of each agent's start-up."""
    code = "import sys, localsweep.agent; print('sweeps' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["False"], out.stderr
