"""`localsweep run --stack` as real processes: a cell's runs trained as one stacked model give
each point the results it gets alone, each its own wandb run and record; SIGKILL mid-stack
marks the stack's runs crashed and resume runs each point once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localsweep.store import Store

from .conftest import GESTURES_ZIP, ROOT, TWO, Ran, offline_env, run_py, write_sweep
from .test_faults import resume_then_each_point_finished_once, wandb_finished_per_point
from .test_localsweep import _processes_with, point_key, wait_for
from .test_run_path import localsweep, name_of


@pytest.mark.slow  # ~22 s: the cell twice; tests/test_stack.py checks the same equality in-process
def test_a_stacked_cell_gives_each_point_its_result_alone(wandb_env, tmp_path) -> None:
    # No batchnorm with adaptive steps: that pairing amplifies float32 rounding (a summation
    # order) to 1e-2 in two epochs, alone as well (tests/test_stack.py measures both).
    # Two factors (the report needs them): lr, which a stack's runs may differ in, and
    # momentum, which they may not: two stacks of 4.
    cell = {"seed": [0, 1], "lr": [0.01, 0.05], "momentum": [0.0, 0.5], "epochs": 2, "dropout": 0.0}
    sweep = write_sweep(tmp_path / "cell.yaml", {**cell, "batchnorm": False, "optimizer": "sgd"})
    results = {}
    for how in ("alone", "stacked"):
        store_dir = tmp_path / how
        args = ["run", str(sweep), "--store", str(store_dir)]
        done = localsweep(args + (["--stack"] if how == "stacked" else []), wandb_env)
        assert done.returncode == 0, done.stdout + done.stderr
        runs = Store(store_dir).runs(name_of(sweep))
        assert len(runs) == 8 and {r.state for r in runs} == {"finished"}
        results[how] = {point_key(r.config): r.summary for r in runs}
    assert results["alone"].keys() == results["stacked"].keys()
    for point, alone in results["alone"].items():
        stacked = results["stacked"][point]
        # float32 sums in another order (grouped convolutions): equal to about 1e-6.
        assert stacked["val/loss"] == pytest.approx(alone["val/loss"], rel=1e-4), point
        assert stacked["val/accuracy"] == pytest.approx(alone["val/accuracy"], abs=1e-3), point
        assert stacked["epochs_completed"] == alone["epochs_completed"] == 2
    # Each stacked run is its own wandb run (offline files, exit record) and has its own record.
    on_wandb = wandb_finished_per_point(tmp_path / "stacked")
    assert sum(on_wandb.values()) == 8 and len(on_wandb) == 4, on_wandb  # keyed by seed, lr
    logs = tmp_path / "stacked" / "logs" / name_of(sweep)
    assert len(list(logs.glob("*.jsonl"))) == 8
    said = "".join(p.read_text() for p in logs.glob("*.log"))
    assert said.count("cnn on digits: 4 runs stacked") == 2, said[-2000:]  # not a fallback
    # The report says which runs were stacked: they are not bit for bit the runs alone.
    report = run_py(["-m", "analysis", "report", "--store", str(tmp_path / "stacked"), "--yaml",
                     str(sweep), "--out", str(tmp_path / "report")], wandb_env)  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert "NOTE 8 of 8 runs trained stacked (localsweep --stack)" in report.stdout


@pytest.mark.slow
def test_sigkill_mid_stack_marks_its_runs_crashed_and_resume_runs_each_once(
    wandb_env, tmp_path
) -> None:
    sweep = write_sweep(tmp_path / "cell.yaml", {"seed": [0, 1, 2], "lr": [0.01], "epochs": 40})
    store_dir = tmp_path / "store"
    args = ["run", str(sweep), "--store", str(store_dir), "--stack"]
    runner = subprocess.Popen(
        [sys.executable, "-m", "localsweep", *args], cwd=ROOT, env=wandb_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    store, name = Store(store_dir), name_of(sweep)
    wait_for(lambda: store_dir.exists() and store.counts(name)["running"] == 3, what="a stack")
    wait_for(lambda: all(store.history(r.id) for r in store.runs(name)), what="an epoch")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    wait_for(lambda: not _processes_with(str(store_dir), "cmdline"), 30, "the agents to die")
    short = write_sweep(tmp_path / "cell.yaml", {"seed": [0, 1, 2], "lr": [0.01], "epochs": 40})
    resume_then_each_point_finished_once(args, wandb_env, short, store_dir, points=3)
    crashed = [r for r in store.runs(name) if r.state == "crashed"]
    assert len(crashed) == 3, [r.state for r in store.runs(name)]


@TWO.of("test_a_stack_that_falls_back_says_so_where_the_user_looks", 12)
def gru_stack_on_the_cpu(tmp_path: Path) -> subprocess.CompletedProcess[str] | None:
    """`run --stack` on a GRU cell on the CPU, which can_stack refuses; None without the zip."""
    if not GESTURES_ZIP.exists():
        return None
    env = offline_env(tmp_path) | {"SWEEPMAP_GESTURES_ZIP": str(GESTURES_ZIP)}
    sweep = write_sweep(tmp_path / "gru.yaml", {"seed": [0, 1], "dataset": "gestures",
                        "model": "gru", "hidden_size": 16, "epochs": 1})  # fmt: skip
    return localsweep(["run", str(sweep), "--store", str(tmp_path / "store"), "--stack"], env)


def test_a_stack_that_falls_back_says_so_where_the_user_looks(ran: Ran) -> None:
    """The agent's line (in the stack's log) reaches `localsweep run`'s own output, once."""
    done = ran.result()
    if done is None:
        pytest.skip(f"gestures zip not found at {GESTURES_ZIP}")
    assert done.returncode == 0, done.stdout + done.stderr
    said = "stack: one run at a time: model=gru on the CPU: a stack trains no faster than one run"
    assert done.stdout.count(said) == 1, done.stdout
