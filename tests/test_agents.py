"""agents: the launch plan, and the agents against the loopback wandb fake.

The agent tests run the real train.py for one epoch on digits through `python -m
agents`, in a subprocess with an isolated HOME / WANDB_DIR under tmp_path.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agents.launcher import AgentPlan, child_argv, plan_agents, resolve_gpus
from sweepmap import keys
from sweepmap.config import Config
from tests.conftest import TWO, Ran
from tests.fakewandb import FakeRun, FakeWandb
from tests.test_wandb_contract import (
    ANSI,
    TRAIN,
    SweepOutcome,
    create_sweep_cli,
    fake_grid,
    train_env,
)

ONE_EPOCH = {"epochs": {"value": 1}, "seed": {"value": 0}}


def no_gpus() -> int:
    raise AssertionError("torch was asked although CUDA_VISIBLE_DEVICES says which GPUs")


# -- the plan ----------------------------------------------------------------------------
def test_four_gpus_two_agents_each() -> None:
    gpus = resolve_gpus("auto", {}, lambda: 4)
    plans = plan_agents(gpus, per_gpu=2, cpus=16)
    assert [p.env()["CUDA_VISIBLE_DEVICES"] for p in plans] == [
        "0", "0", "1", "1", "2", "2", "3", "3",
    ]  # fmt: skip
    assert [p.index for p in plans] == list(range(8))
    # 16 cores / 8 agents, less one each for the run's wandb-core and the agent
    assert {p.env()["SWEEPMAP_THREADS"] for p in plans} == {"1"}
    assert {p.threads for p in plan_agents(gpus, per_gpu=1, cpus=16)} == {3}
    assert plans[3].label == "a3:gpu1"


def test_auto_follows_cuda_visible_devices() -> None:
    assert resolve_gpus("auto", {"CUDA_VISIBLE_DEVICES": "2,3"}, no_gpus) == ["2", "3"]
    uuids = "GPU-aa,GPU-bb"  # UUIDs and MIG ids pass through as they are
    assert resolve_gpus("auto", {"CUDA_VISIBLE_DEVICES": uuids}, no_gpus) == ["GPU-aa", "GPU-bb"]
    assert resolve_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""}, no_gpus) == []
    assert resolve_gpus("auto", {"CUDA_VISIBLE_DEVICES": "-1"}, no_gpus) == []
    assert resolve_gpus("auto", {"CUDA_VISIBLE_DEVICES": "1,-1,2"}, no_gpus) == ["1"]
    assert resolve_gpus("auto", {}, lambda: 0) == []  # no GPU here: CPU agents


def test_explicit_list_and_none() -> None:
    assert resolve_gpus("0,1,3", {"CUDA_VISIBLE_DEVICES": "5"}, no_gpus) == ["0", "1", "3"]
    assert resolve_gpus("none", {"CUDA_VISIBLE_DEVICES": "0"}, no_gpus) == []
    for bad in ("0,0", "0,,1", ""):
        with pytest.raises(ValueError, match="--gpus"):
            resolve_gpus(bad, {}, no_gpus)


def test_cpu_agents_share_the_cores() -> None:
    plans = plan_agents([], per_gpu=3, cpus=10)
    assert plans == [AgentPlan(0, None, 2), AgentPlan(1, None, 2), AgentPlan(2, None, 2)]
    # An empty CUDA_VISIBLE_DEVICES hides every GPU: device=auto trains on the CPU.
    assert plans[0].env() == {"CUDA_VISIBLE_DEVICES": "", "SWEEPMAP_THREADS": "2"}
    assert plans[0].label == "a0:cpu"
    # More agents than cores: one thread each, never zero.
    assert {p.threads for p in plan_agents(["0", "1"], per_gpu=4, cpus=4)} == {1}
    # The user's SWEEPMAP_THREADS wins over the share.
    assert {p.threads for p in plan_agents([], per_gpu=2, cpus=64, threads=3)} == {3}
    with pytest.raises(ValueError, match="--per-gpu"):
        plan_agents(["0"], per_gpu=0, cpus=4)


def test_child_commands() -> None:
    assert child_argv("e/p/s", 3, False, 5) == [
        sys.executable, "-m", "wandb", "agent", "--count", "3", "e/p/s",
    ]  # fmt: skip
    assert child_argv("e/p/s", None, True, 1) == [
        sys.executable, "-m", "agents", "e/p/s", "--inprocess", "--heartbeat", "1",
    ]  # fmt: skip


# -- against the fake --------------------------------------------------------------------
def agents(sweep: SweepOutcome, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m agents ENTITY/PROJECT/ID ARGS`, as a user would start it."""
    return subprocess.run(
        [sys.executable, "-m", "agents", f"{sweep.path}/{sweep.sweep_id}", *args],
        cwd=Path(sweep.env["WANDB_DIR"]), env=sweep.env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def assert_finished_once(runs: list[FakeRun], points: list[dict[str, Any]]) -> None:
    """Each point ran exactly once with that config, finished, with train.py's summary."""
    got = [{k: r.params[k] for k in points[0]} for r in runs]
    assert sorted(got, key=repr) == sorted(points, key=repr)
    for r, point in zip(runs, got, strict=True):
        assert r.params == Config().to_dict() | point
        assert (r.state, r.exitcode) == ("finished", 0)
        assert r.summary[keys.EPOCHS_COMPLETED] == 1
        assert r.summary[keys.BEST_VAL_ACCURACY] >= r.summary[keys.VAL_ACCURACY] > 0.1


Swept = tuple[FakeWandb, SweepOutcome, subprocess.CompletedProcess]
GOOD = {"lr": {"values": [1.0e-3, 1.0e-2]}, **ONE_EPOCH}
BAD = {"lr": {"values": [-1.0, 1.0e-3]}, **ONE_EPOCH}


def sweep_and_inprocess_agent(folder: Path, parameters: dict[str, Any]) -> Swept:
    """`wandb sweep` a grid into a fake of its own, then `python -m agents --inprocess
    --count 2` it; the fake's records stay readable once it has stopped."""
    with FakeWandb() as fake:
        sweep = create_sweep_cli(fake, folder, parameters, TRAIN, extra_env=train_env(folder))
        done = agents(sweep, "--inprocess", "--count", "2", "--heartbeat", "1")
    return fake, sweep, done


# The good grid and the bad value, each with its own fake, run two at a time with the other
# tests' work (conftest.TwoAtATime): an in-process agent trains on one thread.
@TWO.of("test_inprocess_agent_runs_each_point_once", 11)
def good_grid(folder: Path) -> Swept:
    return sweep_and_inprocess_agent(folder, GOOD)


@TWO.of("test_bad_value_is_one_line_and_no_run", 10)
def bad_value(folder: Path) -> Swept:
    return sweep_and_inprocess_agent(folder, BAD)


def test_inprocess_agent_runs_each_point_once(ran: Ran) -> None:
    fake, sweep, done = ran.result()
    assert done.returncode == 0, done.stdout + done.stderr
    assert fake.unknown == [], fake.unknown
    assert_finished_once(fake.sweep_runs(sweep.sweep_id), fake_grid(GOOD))
    # One process trained both: its stdout holds both runs' epochs.
    assert done.stdout.count("epoch 1/1") == 2


def test_bad_value_is_one_line_and_no_run(ran: Ran) -> None:
    fake, sweep, done = ran.result()
    out = ANSI.sub("", done.stderr)
    assert done.returncode == 2, done.stdout + out  # a config error, as train.py's exit code
    lines = [line for line in out.splitlines() if "lr=-1.0" in line]
    assert len(lines) == 1, out
    assert lines[0].endswith("config error: lr=-1.0: must be > 0")
    assert "Traceback" not in out
    runs = fake.sweep_runs(sweep.sweep_id)
    assert "running" not in [r.state for r in runs]
    bad = [r for r in runs if r.params["lr"] == -1.0]
    # Handed out by the backend, never started: no wandb.init, so no files and no state.
    assert [(r.state, r.exitcode, r.files) for r in bad] == [("pending", None, {})]
    # ...and the agent went on to the next point.
    assert_finished_once([r for r in runs if r not in bad], [{"lr": 1.0e-3, "epochs": 1}])


@pytest.mark.slow
def test_launcher_cpu_agents_count_each(tmp_path: Path) -> None:
    # Three points, two agents with --count 1: two runs, so --count reached each agent.
    parameters = {"lr": {"values": [1.0e-3, 1.0e-2, 1.0e-1]}, **ONE_EPOCH}
    logs = tmp_path / "logs"
    with FakeWandb() as fake:
        sweep = create_sweep_cli(fake, tmp_path, parameters, TRAIN, extra_env=train_env(tmp_path))
        args = ["--gpus", "none", "--per-gpu", "2", "--count", "1", "--log-dir", str(logs)]
        done = agents(sweep, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert fake.unknown == [], fake.unknown
    runs = fake.sweep_runs(sweep.sweep_id)
    points = [p for p in fake_grid(parameters) if p["lr"] in {r.params["lr"] for r in runs}]
    assert len(runs) == 2 and len(points) == 2
    assert_finished_once(runs, points)
    # Each child is the real `wandb agent` (train.py in its own process); output prefixed.
    for label in ("a0:cpu", "a1:cpu"):
        assert f"[{label}] epoch 1/1" in done.stdout
    assert sorted(p.name for p in logs.iterdir()) == ["agent-0.log", "agent-1.log"]
    assert all("epoch 1/1" in p.read_text() for p in logs.iterdir())


def test_ctrl_c_reaches_inprocess_agents_and_ends_their_runs(tmp_path: Path) -> None:
    parameters = {"lr": {"value": 1.0e-3}, "epochs": {"value": 1000}}
    with FakeWandb() as fake:
        sweep = create_sweep_cli(fake, tmp_path, parameters, TRAIN, extra_env=train_env(tmp_path))
        argv = ["--gpus", "none", "--inprocess", "--heartbeat", "1"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "agents", f"{sweep.path}/{sweep.sweep_id}", *argv],
            cwd=tmp_path, env=sweep.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while not any("epoch 2/1000" in line for line in lines):
                assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the launcher
            proc.wait(timeout=60)
        finally:
            proc.kill()
        reader.join(timeout=10)
        [run] = fake.sweep_runs(sweep.sweep_id)
    out = "".join(lines)
    assert proc.returncode == 128 + signal.SIGINT, out
    assert "SIGINT: passed on to the agents" in out
    # The run was ended by its agent (exit code 1), not left "running" for hours.
    assert (run.state, run.exitcode) == ("failed", 1)
    assert 2 <= len(run.history) < 1000
