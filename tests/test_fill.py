"""`python -m agents fill`: a cloud grid's holes found and run, against the loopback fake.

A 3-point grid of train.py (one epoch on digits) gets two runs from an in-process agent; the
backend then marks one of them crashed (what the server does when a run's heartbeats stop).
`fill` must run exactly the crashed point and the never-started one, in a new sweep that
holds the finished run as a prior run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.fill import RunInfo, plan_fill
from tests.conftest import TWO, Ran
from tests.fakewandb import FakeWandb
from tests.test_agents import ONE_EPOCH, agents, assert_finished_once
from tests.test_wandb_contract import TRAIN, create_sweep_cli, isolated_env, train_env

GRID = {"method": "grid", "parameters": {"lr": {"values": [0.1, 0.01]}, "seed": {"values": [0, 1]}}}


def test_holes_are_the_points_without_a_finished_or_running_run() -> None:
    runs = [
        RunInfo("a", "finished", {"lr": 0.1, "seed": 0, "epochs": 3}, "g"),
        RunInfo("b", "failed", {"lr": 0.1, "seed": 1}),
        RunInfo("c", "crashed", {"lr": 0.01, "seed": 0}),
        RunInfo("d", "running", {"lr": 0.01, "seed": 0}, "g"),  # a second run of c's point
    ]
    plan = plan_fill(GRID, runs)
    # Computed here by hand: 4 points, (0.1, 0) finished, (0.01, 0) running.
    assert sorted(plan.holes, key=repr) == [{"lr": 0.01, "seed": 1}, {"lr": 0.1, "seed": 1}]
    assert [r.name for r in plan.taken] == ["a", "d"]
    assert plan.group == "g"
    assert plan_fill(GRID, []).holes == [
        {"lr": 0.1, "seed": 0}, {"lr": 0.1, "seed": 1}, {"lr": 0.01, "seed": 0},
        {"lr": 0.01, "seed": 1},
    ]  # fmt: skip


def fill(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents", "fill", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.mark.slow
def test_fill_runs_exactly_the_holes(tmp_path: Path) -> None:
    parameters = {"lr": {"values": [1.0e-3, 1.0e-2, 1.0e-1]}, **ONE_EPOCH}
    with FakeWandb() as fake:
        sweep = create_sweep_cli(fake, tmp_path, parameters, TRAIN, extra_env=train_env(tmp_path))
        first = agents(sweep, "--inprocess", "--count", "2", "--heartbeat", "1")
        assert first.returncode == 0, first.stdout + first.stderr
        ran = fake.sweep_runs(sweep.sweep_id)
        assert [r.state for r in ran] == ["finished", "finished"]
        crashed, kept = ran
        crashed.state = "crashed"
        never = ({1.0e-3, 1.0e-2, 1.0e-1} - {r.params["lr"] for r in ran}).pop()

        path = f"{sweep.path}/{sweep.sweep_id}"
        dry = fill(sweep.env, tmp_path, path, "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        holes = sorted(line for line in dry.stdout.splitlines() if "hole:" in line)
        assert holes == sorted(
            f"  hole: epochs=1, lr={lr}, seed=0" for lr in (crashed.params["lr"], never)
        )
        assert len(fake.sweeps) == 1  # a dry run creates nothing

        done = fill(sweep.env, tmp_path, path, "--inprocess", "--heartbeat", "1")
        assert done.returncode == 0, done.stdout + done.stderr
        [new_id] = [s for s in fake.sweeps if s != sweep.sweep_id]
    assert fake.unknown == [], fake.unknown
    assert f"python -m agents {sweep.path}/{new_id}" in done.stdout
    # The old sweep keeps its crashed run; the new one has the finished run as a prior run...
    assert [r.name for r in fake.sweep_runs(sweep.sweep_id)] == [crashed.name]
    new_runs = fake.sweep_runs(new_id)
    assert new_runs[0] is kept and kept.state == "finished"
    # ...and exactly one new, finished run per hole: the crashed point and the never-started one.
    filled = new_runs[1:]
    assert_finished_once(
        filled, [{"lr": crashed.params["lr"], "epochs": 1}, {"lr": never, "epochs": 1}]
    )
    assert fake.sweeps[new_id].config["parameters"] == parameters
    assert f"(fill of {sweep.sweep_id})" in fake.sweeps[new_id].config["name"]

    # A grid with no hole left: said, and no sweep made.
    with FakeWandb() as fake2:
        one = {"lr": {"value": 1.0e-3}, **ONE_EPOCH}
        again = create_sweep_cli(fake2, tmp_path / "b", one, TRAIN, extra_env=train_env(tmp_path))
        assert agents(again, "--inprocess", "--heartbeat", "1").returncode == 0
        full = fill(again.env, tmp_path, f"{again.path}/{again.sweep_id}")
    assert full.returncode == 0 and "0 without a finished or running run" in full.stdout
    assert list(fake2.sweeps) == [again.sweep_id]


# Run two at a time with the other tests' work (conftest.TwoAtATime).
@TWO.of("test_no_key_or_no_server_is_one_line_exit_2", 4)
def fill_refused(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    """`fill` against a dead server, then without a key."""
    with FakeWandb() as fake:
        env = isolated_env(fake, tmp_path, "p")
    # The fake is stopped: nothing answers on its port.
    dead = fill(env | {"WANDB_API_KEY": "f" * 40, "WANDB_HTTP_TIMEOUT": "2"}, tmp_path, "e/p/abc")
    no_key = {k: v for k, v in env.items() if k != "WANDB_API_KEY"}
    return dead, fill(no_key, tmp_path, "e/p/abc")


def test_no_key_or_no_server_is_one_line_exit_2(ran: Ran) -> None:
    dead, nokey = ran.result()
    for done in (dead, nokey):
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("agents fill: e/p/abc: "), done.stderr
    assert "API key" in nokey.stderr
