"""Staggered starts: agents started together get the same first grid point (wandb/wandb#597)
when the server only counts a point once its run has begun; the launcher's --stagger avoids it.

The fake's `race=True` is that server. The first test shows the race is there (two agents
asking before either run begins get the same point); the second starts two real agents
through the launcher, --stagger apart, and they get different points.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fakewandb import FakeWandb
from tests.test_agents import ONE_EPOCH, agents, assert_finished_once
from tests.test_wandb_contract import TRAIN, create_sweep_cli, fake_grid, train_env


def gql(fake: FakeWandb, op: str, query: str, variables: dict[str, Any]) -> Any:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"{fake.url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["data"]


CREATE = "mutation CreateAgent { createAgent { agent { id } } }"
BEAT = "mutation Heartbeat { agentHeartbeat { agent { id } commands } }"


def first_points(race: bool) -> list[Any]:
    """Two agents' first heartbeats, both before either run's wandb.init."""
    with FakeWandb(race=race) as fake:
        config = {"method": "grid", "parameters": {"lr": {"values": [0.1, 0.01]}}}
        fake.graphql("UpsertSweep", {"id": "s1", "projectName": "p", "config": json.dumps(config)})
        points = []
        for _ in range(2):
            aid = gql(fake, "CreateAgent", CREATE, {"sweep": "s1"})["createAgent"]["agent"]["id"]
            beat = gql(fake, "Heartbeat", BEAT, {"id": aid, "runState": "{}"})
            [cmd] = json.loads(beat["agentHeartbeat"]["commands"])
            points.append(cmd["args"])
    return points


def test_the_fake_has_the_race() -> None:
    same = first_points(race=True)
    assert same[0] == same[1] == {"lr": {"value": 0.1}}
    assert first_points(race=False) == [{"lr": {"value": 0.1}}, {"lr": {"value": 0.01}}]


@pytest.mark.slow
def test_staggered_agents_get_different_points(tmp_path: Path) -> None:
    parameters = {"lr": {"values": [1.0e-3, 1.0e-2]}, **ONE_EPOCH}
    with FakeWandb(race=True) as fake:
        sweep = create_sweep_cli(fake, tmp_path, parameters, TRAIN, extra_env=train_env(tmp_path))
        args = ["--gpus", "none", "--per-gpu", "2", "--inprocess", "--count", "1"]
        done = agents(sweep, *args, "--heartbeat", "1", "--stagger", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    assert fake.unknown == [], fake.unknown
    assert "a1:cpu, 1 thread(s), 8 s after a0" in done.stdout
    runs = fake.sweep_runs(sweep.sweep_id)
    assert_finished_once(runs, fake_grid(parameters))  # one run per point: no duplicate
    # The window the stagger must cover: first heartbeat to wandb.init, well under 8 s here.
    windows = [r.started_at - r.handed_out_at for r in runs if r.started_at and r.handed_out_at]
    assert len(windows) == 2 and max(windows) < 8, windows
    print(f"heartbeat -> wandb.init: {', '.join(f'{w:.1f} s' for w in windows)}")
