"""Scans (method random or bayes, hyperband stopping) in localsweep, as real processes: points
proposed by wandb's engine as the scan runs, stopped runs in their own state, and the grid's
guarantees kept: no proposal run twice by N agents, nothing lost or doubled by SIGKILL then
resume, Ctrl-C clean."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from localsweep.grid import load_sweep
from localsweep.rows import Run
from localsweep.scan import propose, stop_reason
from localsweep.store import Store
from sweepmap.sweepfile import SweepError

from .conftest import run_py
from .test_localsweep import point_key, start, wait_for
from .test_run_path import localsweep, name_of

DONE = ("finished", "stopped")


def write_scan(path: Path, runs: int, epochs: int = 3, **extra: Any) -> Path:
    config = {
        "program": "train.py",
        "method": "random",
        "run_cap": runs,
        "metric": {"name": "val/accuracy", "goal": "maximize"},
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 0.1},
            "optimizer": {"values": ["sgd", "adam"]},
            "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.1},
            "epochs": {"value": epochs},
        },
        **extra,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


HYPERBAND = {"early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2}}


def stopped_at_its_rules_epoch(run: Run) -> None:
    """A stopped run trained exactly the epochs its reason names: no epoch after the rule's."""
    named = re.search(r" after (\d+) epochs? ", run.summary["stopped"])
    assert named and run.summary["epochs_completed"] == int(named.group(1)), run.summary


def each_proposal_done_once(store: Store, name: str, cap: int) -> list[Run]:
    """cap points proposed, no two alike, each with exactly one finished or stopped run."""
    points = store.points(name)
    assert len(points) == cap and len({point_key(p) for p in points}) == cap, points
    runs = store.runs(name)
    done = Counter(point_key(r.config) for r in runs if r.state in DONE)
    assert set(done) == {point_key(p) for p in points} and set(done.values()) == {1}, runs
    return runs


@pytest.mark.slow  # ~16 s; the rule itself: test_the_engine_sees_each_runs_history...
def test_a_hyperband_scan_stops_runs_in_their_own_state_with_the_epochs_they_did(
    wandb_env, tmp_path
) -> None:
    # name hb4: its seeded proposals put bad learning rates (sgd 8e-05, adam 2e-05) after
    # good ones, so that the rule has runs to compare with (one agent: a fixed order).
    scan = write_scan(tmp_path / "scan.yaml", runs=8, epochs=4, name="hb4", **HYPERBAND)
    store_dir = tmp_path / "store"
    done = localsweep(["run", str(scan), "--store", str(store_dir)], wandb_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a random scan of 8 runs with hyperband stopping" in done.stdout
    store = Store(store_dir)
    runs = each_proposal_done_once(store, name_of(scan), 8)
    stopped = [r for r in runs if r.state == "stopped"]
    assert stopped, [(r.state, r.summary.get("val/accuracy")) for r in runs]
    for run in stopped:
        history = store.history(run.id)
        assert run.summary["epochs_completed"] == len(history) < 4
        assert run.summary["stopped"].startswith("hyperband: best val/accuracy")
        assert run.exit_code == 0
        stopped_at_its_rules_epoch(run)
    for run in runs:
        if run.state == "finished":
            assert run.summary["epochs_completed"] == 4
    # The stopped runs were the worse ones at the epoch they stopped: the engine's rule.
    best = max(r.summary["best/val/accuracy"] for r in runs)
    assert all(r.summary["best/val/accuracy"] < best for r in stopped)


@pytest.mark.slow
def test_two_agents_never_run_one_proposal_twice_and_the_scan_is_reproducible(
    wandb_env, tmp_path
) -> None:
    scan = write_scan(tmp_path / "scan.yaml", runs=6, epochs=1)
    first = localsweep(["run", str(scan), "--store", str(tmp_path / "a"), "--agents", "2"],
                       wandb_env)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    runs = each_proposal_done_once(Store(tmp_path / "a"), name_of(scan), 6)
    assert len(runs) == 6
    # The same file in another store proposes the same points: each draw has its own seed.
    config = yaml.safe_load(scan.read_text())
    again = [propose(config, name_of(scan), i, [], lambda _: []) for i in range(6)]
    assert again == Store(tmp_path / "a").points(name_of(scan))


@pytest.mark.slow
def test_a_killed_agent_then_resume_loses_and_doubles_nothing(wandb_env, tmp_path) -> None:
    scan = write_scan(tmp_path / "scan.yaml", runs=3, epochs=2)
    store_dir = tmp_path / "store"
    args = ["run", str(scan), "--store", str(store_dir)]
    killed = localsweep(args, {**wandb_env, "SWEEPMAP_FAULT": "after-wandb-finish"})
    assert killed.returncode == 1 and "died: killed by SIGKILL" in killed.stdout, killed.stdout
    resumed = localsweep(args, wandb_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    each_proposal_done_once(Store(store_dir), name_of(scan), 3)


@pytest.mark.slow
def test_ctrl_c_leaves_no_run_running_and_resume_completes_the_scan(wandb_env, tmp_path) -> None:
    scan = write_scan(tmp_path / "scan.yaml", runs=3, epochs=12)
    store_dir = tmp_path / "store"
    runner = start(["run", str(scan), "--store", str(store_dir)], wandb_env)
    store, name = Store(store_dir), name_of(scan)
    wait_for(lambda: store.counts(name)["running"] == 1 and bool(store.history(
        store.runs(name)[0].id)), what="a run's first epoch")  # fmt: skip
    os.killpg(runner.pid, signal.SIGINT)
    assert runner.wait(60) == 130
    counts = store.counts(name)
    assert counts["running"] == counts["pending"] == 0 and counts["crashed"] == 1, counts
    assert store.stored(name) == 1  # the crashed run's point, to run again: no new proposal
    resumed = localsweep(["run", str(scan), "--store", str(store_dir), "--agents", "2"],
                         wandb_env, timeout=400)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    runs = each_proposal_done_once(store, name, 3)
    crashed = [r for r in runs if r.state == "crashed"]
    assert len(crashed) == 1 and crashed[0].config == store.points(name)[0]


REFUSALS = [
    ({"run_cap": None}, "run_cap: missing; a random scan proposes points without end"),
    ({"early_terminate": {"type": "envelope"}}, "early_terminate.type: 'envelope'; allowed"),
    ({"method": "bayes", "metric": None}, "metric: method bayes needs the metric"),
    ({"method": "grid", **HYPERBAND}, "early_terminate: refused in a grid study"),
    (
        {"parameters": {"lr": {"distribution": "uniform", "min": -1.0, "max": 0.1}}},
        "parameters: lr=-1.0: must be > 0",
    ),
]


@pytest.mark.parametrize(("edit", "says"), [REFUSALS[0], REFUSALS[3]])
def test_a_scan_it_cannot_run_is_refused_in_one_line(wandb_env, tmp_path, edit, says) -> None:
    """As `localsweep run` says it: one line, exit 2, no store made."""
    scan = edited_scan(tmp_path, edit)
    store_dir = tmp_path / "store"
    refused = run_py(["-m", "localsweep", "run", str(scan), "--store", str(store_dir)], wandb_env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in refused.stderr, lines
    assert not store_dir.exists()


@pytest.mark.parametrize(("edit", "says"), REFUSALS)
def test_each_refusal_names_the_key_and_what_is_allowed(tmp_path, edit, says) -> None:
    """The same check in this process (each subprocess costs seconds of imports)."""
    with pytest.raises(SweepError) as refused:
        load_sweep(edited_scan(tmp_path, edit))
    assert says in str(refused.value)


def edited_scan(tmp_path: Path, edit: dict[str, Any]) -> Path:
    scan = write_scan(tmp_path / "scan.yaml", runs=4)
    config = yaml.safe_load(scan.read_text())
    for key, value in edit.items():
        if value is None:
            config.pop(key)
        elif key == "parameters":
            config["parameters"].update(value)
        else:
            config[key] = value
    scan.write_text(yaml.safe_dump(config))
    return scan


def _run(run_id: str, state: str, lr: float) -> Run:
    return Run(run_id, "s", {"lr": lr}, state, {}, None, None, None, 0.0, None, None)


def test_the_engine_sees_each_runs_history_and_stops_the_worst_running_one() -> None:
    """The store's runs reach the engine with their histories (by the fields' aliases): the
    running run that is worst at the band is stopped, with the threshold in its reason."""
    config = {
        "method": "random", "metric": {"name": "acc", "goal": "maximize"},
        "parameters": {"lr": {"min": 0.0, "max": 1.0}}, **HYPERBAND,
    }  # fmt: skip
    histories = {
        "a": [{"acc": 0.5}, {"acc": 0.8}, {"acc": 0.9}],
        "b": [{"acc": 0.4}, {"acc": 0.7}, {"acc": 0.85}],
        "c": [{"acc": 0.1}, {"acc": 0.2}],
    }
    runs = [_run("a", "finished", 0.1), _run("b", "finished", 0.2), _run("c", "running", 0.3)]
    why = stop_reason(config, "c", runs, lambda run_id: histories[run_id])
    assert why is not None and "best acc 0.2 after 2 epochs is below 0.7" in why, why
    assert stop_reason(config, "a", runs, lambda run_id: histories[run_id]) is None


@pytest.mark.slow
def test_with_mode_process_a_run_is_stopped_through_its_stop_file(wandb_env, tmp_path) -> None:
    """`--mode process` (one train.py per run, as `wandb agent`): the agent reads each epoch
    from the run's record and writes the stop file; train.py ends the run as stopped."""
    scan = write_scan(tmp_path / "scan.yaml", runs=8, epochs=4, name="hb4", **HYPERBAND)
    store_dir = tmp_path / "store"
    args = ["run", str(scan), "--store", str(store_dir), "--mode", "process"]
    done = localsweep(args, wandb_env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    store = Store(store_dir)
    runs = each_proposal_done_once(store, name_of(scan), 8)
    stopped = [r for r in runs if r.state == "stopped"]
    assert stopped, [(r.state, r.summary.get("val/accuracy")) for r in runs]
    for run in stopped:
        assert run.summary["epochs_completed"] == len(store.history(run.id)) <= 4
        assert run.summary["stopped"].startswith("hyperband: ")
        stopped_at_its_rules_epoch(run)  # it waited for each epoch's verdict
    assert not list((store_dir / "stops").rglob("*")) or all(
        p.is_dir() for p in (store_dir / "stops").rglob("*")
    )


def test_bayes_proposes_from_the_results_so_far() -> None:
    """The engine's bayes search reads each finished run's metric: on a planted optimum
    (lr = 10^-2.5) its later proposals close in, and without the results they would differ."""
    config = {
        "method": "bayes", "metric": {"name": "acc", "goal": "maximize"},
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 0.1},
            "optimizer": {"values": ["sgd", "adam"]},
        },
    }  # fmt: skip
    runs: list[Run] = []
    for i in range(8):
        point = propose(config, "b", i, runs, lambda _: [])
        acc = 1 - abs(math.log10(point["lr"]) + 2.5) / 3
        runs.append(dataclasses.replace(_run(f"r{i}", "finished", 0.0), config=point,
                                        summary={"acc": acc}))  # fmt: skip
    accs = [r.summary["acc"] for r in runs]
    assert max(accs[4:]) > 0.95 and max(accs[4:]) > max(accs[:4]), accs
    assert propose(config, "b", 8, [], lambda _: []) != propose(config, "b", 8, runs, lambda _: [])
