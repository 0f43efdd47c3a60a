"""The local sweep runner as real processes: parallel agents, SIGKILL, Ctrl-C, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from localsweep.grid import all_points, load_sweep
from localsweep.store import Store
from sweepmap import keys
from sweepmap.sweepfile import sweep_name

from .conftest import ROOT, TWO, Ran, offline_env, run_py, write_sweep
from .wandb_offline import inspect_run, offline_run_dir, run_record


def point_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "localsweep", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a test can send it Ctrl-C
    )


def wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def finished_exactly_once(store: Store, name: str, sweep_file: Path) -> list:
    runs = store.runs(name)
    finished = Counter(point_key(r.config) for r in runs if r.state == "finished")
    grid = {point_key(p) for p in all_points(load_sweep(sweep_file)[1])}
    assert set(finished) == grid, "some grid points never finished"
    assert set(finished.values()) == {1}, f"points finished twice: {finished}"
    return runs


def test_two_agents_run_every_point_exactly_once(wandb_env, tmp_path) -> None:
    sweep = write_sweep(
        tmp_path / "six.yaml",
        {"lr": [1.0e-3, 1.0e-2], "optimizer": ["sgd", "adam", "adamw"], "seed": 0, "epochs": 2},
    )
    store_dir = tmp_path / "store"
    created = run_py(
        ["-m", "localsweep", "create", str(sweep), "--store", str(store_dir)], wandb_env
    )
    assert created.returncode == 0, created.stderr
    name = sweep_name(sweep, load_sweep(sweep)[1])
    assert name in created.stdout
    agents = [start(["agent", name, "--store", str(store_dir)], wandb_env) for _ in range(2)]
    outputs = [a.communicate(timeout=300)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], outputs

    store = Store(store_dir)
    runs = finished_exactly_once(store, name, sweep)
    assert len(runs) == 6
    # Both agents took part: each printed at least one finished run.
    assert all(out.count(" finished ") >= 1 for out in outputs), outputs
    for run in runs:
        assert [h[keys.EPOCH] for h in store.history(run.id)] == [1, 2]
        assert run.summary[keys.EPOCHS_COMPLETED] == 2 and run.exit_code == 0
        assert Path(run.log_path or "").read_text().count("epoch ") == 2
    # The offline wandb run carries the sweep's name as group and tag, and no sweep id.
    logged = inspect_run(offline_run_dir(store_dir, runs[0].id))
    assert name in logged["tags"] and logged["config"]["lr"] == runs[0].config["lr"]
    assert logged["summary"][keys.VAL_ACCURACY] == runs[0].summary[keys.VAL_ACCURACY]


@pytest.mark.slow
def test_in_process_runs_record_the_git_state_of_the_agent(wandb_env, tmp_path) -> None:
    """The agent reads git once, not at every wandb.init: each run must still carry it."""
    repo = tmp_path / "study"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://example.com/team/study.git"],
                   check=True)  # fmt: skip
    sweep = write_sweep(repo / "two.yaml", {"seed": [0, 1], "epochs": 1})
    subprocess.run([*git, "add", "two.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "study"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    store_dir = tmp_path / "store"
    done = run_py(["-m", "localsweep", "run", str(sweep), "--store", str(store_dir)], wandb_env,
                  cwd=repo)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    runs = Store(store_dir).runs(sweep_name(sweep, load_sweep(sweep)[1]))
    assert len(runs) == 2
    for run in runs:
        git_info = run_record(offline_run_dir(store_dir, run.id))["git"]
        assert git_info == {"commit": head.strip(),
                            "remote_url": "https://example.com/team/study.git"}  # fmt: skip


@pytest.mark.slow
def test_sigkill_then_resume_finishes_every_point_once(wandb_env, tmp_path) -> None:
    sweep = write_sweep(
        tmp_path / "four.yaml", {"lr": [1.0e-3, 1.0e-2], "seed": [0, 1], "epochs": 6}
    )
    store_dir = tmp_path / "store"
    name = sweep_name(sweep, load_sweep(sweep)[1])
    # One train.py process per run, so the kill also tests that the child dies with its agent.
    runner = start(["run", str(sweep), "--store", str(store_dir), "--mode", "process"], wandb_env)
    store = Store(store_dir)

    def training() -> bool:
        running = (
            [r for r in store.runs(name) if r.state == "running"] if store_dir.exists() else []
        )
        return any("epoch 2/6" in _text(r.log_path) for r in running)

    wait_for(training, what="a run in its second epoch")
    victim = next(r for r in store.runs(name) if r.state == "running")
    os.killpg(runner.pid, signal.SIGKILL)  # the runner, its agent and the agent's train.py
    runner.wait()
    wait_for(lambda: not _processes_with(str(store_dir)), 30, "the agent's children to die")
    assert store.run(victim.id).state == "running"  # nobody has noticed yet

    resumed = run_py(["-m", "localsweep", "run", str(sweep), "--store", str(store_dir)], wandb_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "crashed" in resumed.stdout
    runs = finished_exactly_once(store, name, sweep)
    assert store.run(victim.id).state == "crashed"
    assert len([r for r in runs if r.state == "finished"]) == 4

    again = run_py(["-m", "localsweep", "run", str(sweep), "--store", str(store_dir)], wandb_env)
    assert (
        again.returncode == 0 and "is complete" in again.stdout and "nothing to run" in again.stdout
    )
    assert len(store.runs(name)) == len(runs)


def test_a_zombie_agent_counts_as_dead() -> None:
    """An agent killed with its runner stays a zombie until init reaps it (some container
    inits do so late): os.kill(pid, 0) finds it, so the reaper must look at its state."""
    from localsweep.rows import pid_alive

    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here: a zombie cannot be told from a live process")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            break  # exited, not yet waited for: a zombie
        time.sleep(0.01)
    try:
        assert not pid_alive(child.pid)
        assert pid_alive(os.getpid())
    finally:
        child.wait()
    assert not pid_alive(child.pid)


def test_ctrl_c_stops_cleanly_and_keeps_finished_runs(wandb_env, tmp_path) -> None:
    sweep = write_sweep(
        tmp_path / "six.yaml", {"lr": [1.0e-3, 1.0e-2, 0.1], "seed": [0, 1], "epochs": 3}
    )
    store_dir = tmp_path / "store"
    name = sweep_name(sweep, load_sweep(sweep)[1])
    runner = start(["run", str(sweep), "--store", str(store_dir)], wandb_env)
    store = Store(store_dir)
    wait_for(
        lambda: store_dir.exists() and store.counts(name)["finished"] >= 1, what="a finished run"
    )
    os.killpg(runner.pid, signal.SIGINT)
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 130, out
    counts = store.counts(name)
    assert counts["running"] == counts["pending"] == 0, counts
    assert counts["finished"] >= 1
    # Finished runs keep their results; the interrupted one will run again.
    assert all(r.summary.get(keys.VAL_ACCURACY) for r in store.runs(name) if r.state == "finished")


def test_bad_yaml_exits_2_before_any_run(wandb_env, tmp_path) -> None:
    bad = write_sweep(tmp_path / "bad.yaml", {"lr": [0.01, -1.0], "seed": [0, 1, 2]})
    store_dir = tmp_path / "store"
    proc = run_py(["-m", "localsweep", "run", str(bad), "--store", str(store_dir)], wandb_env)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and str(bad) in line and "lr=-1.0" in line, line
    assert not store_dir.exists()
    # The agents it started before checking the file are gone too.
    assert not _processes_with(str(store_dir), "cmdline")


# Run two at a time with the other tests' work (conftest.TwoAtATime).
@TWO.of("test_a_waiting_agent_that_gets_no_sweep_leaves_nothing", 5)
def agent_given_nothing(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "localsweep", "agent", "-", "--store", str(tmp_path / "store")]
    env = offline_env(tmp_path)
    return subprocess.run(argv, input="", cwd=ROOT, env=env, capture_output=True, text=True)


def test_a_waiting_agent_that_gets_no_sweep_leaves_nothing(ran: Ran) -> None:
    """`agent -` is how `run` starts agents before the sweep file is checked."""
    store_dir, proc = ran.folder / "store", ran.result()
    assert proc.returncode == 0, proc.stderr
    assert not store_dir.exists()


def _text(path: str | None) -> str:
    """A run's log so far; it may not exist yet just after the run was marked running."""
    try:
        return Path(path or "").read_text()
    except (FileNotFoundError, IsADirectoryError):
        return ""


def _processes_with(needle: str, where: str = "environ") -> list[int]:
    """Pids whose environment (or command line) mentions `needle`: leftover children."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle.encode() in (proc / where).read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids
