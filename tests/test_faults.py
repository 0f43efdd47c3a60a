"""Faults as real processes: kills inside the crash windows, a stalled agent, one agent killed,
a corrupt store, a read-only store, a full disk. wandb's own offline files are read back to
show that every point ends with exactly one finished run."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from localsweep.store import Store

from .conftest import ROOT, TWO, Ran, offline_env, run_py, write_sweep
from .test_localsweep import _processes_with, point_key, wait_for
from .test_run_path import localsweep, name_of, pid_of, two_running
from .wandb_offline import inspect_run


def wandb_finished_per_point(store_dir: Path) -> Counter[str]:
    """Finished runs per grid point, as wandb's own files of the runs tell it."""
    found: Counter[str] = Counter()
    for run_dir in (store_dir / "wandb").glob("offline-run-*"):
        logged = inspect_run(run_dir)
        if logged.get("exit_code") == 0:
            config = {k: v for k, v in logged["config"].items() if k in ("seed", "lr")}
            found[point_key(config)] += 1
    return found


Resumed = tuple[subprocess.CompletedProcess[str], list, Counter[str], Counter[str]]


def resume(args: list[str], env: dict[str, str], sweep: Path, store_dir: Path) -> Resumed:
    """`localsweep run` again; then its runs, and the finished runs per point in the store and
    in wandb's own files."""
    resumed = localsweep(args, env)
    runs = Store(store_dir).runs(name_of(sweep))
    finished = Counter(point_key(r.config) for r in runs if r.state == "finished")
    return resumed, runs, finished, wandb_finished_per_point(store_dir)


def each_point_finished_once(got: Resumed, points: int) -> None:
    """The resume completed the grid with one finished run per point, in the store and in
    wandb's own files."""
    resumed, runs, finished, on_wandb = got
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(finished) == points and set(finished.values()) == {1}, runs
    assert len(on_wandb) == points and set(on_wandb.values()) == {1}, on_wandb


def resume_then_each_point_finished_once(
    args: list[str], env: dict[str, str], sweep: Path, store_dir: Path, points: int
) -> None:
    each_point_finished_once(resume(args, env, sweep, store_dir), points)


def three_points(tmp_path: Path, epochs: int = 2) -> Path:
    return write_sweep(tmp_path / "three.yaml", {"seed": [0, 1, 2], "epochs": epochs})


@pytest.mark.parametrize(
    "window",
    [
        "after-wandb-finish",  # wandb has the exit record, the run's record and store do not
        pytest.param("before-wandb-finish", marks=pytest.mark.slow),  # record says, wandb not
        pytest.param("before-store", marks=pytest.mark.slow),  # all but the store
    ],
)
def test_a_kill_inside_a_crash_window_leaves_one_finished_run(ran: Ran, window: str) -> None:
    first, resumed = ran.result()
    assert first.returncode == 1, first.stdout + first.stderr
    assert "agent 0" in first.stdout and "died: killed by SIGKILL" in first.stdout
    each_point_finished_once(resumed, points=2)


def kill_in_the_window(window: str) -> None:
    """The sweep of one case above, run two at a time with the other tests' work
    (conftest.TwoAtATime): the kill comes at a named point of the code, not after a time."""

    @TWO.of(f"test_a_kill_inside_a_crash_window_leaves_one_finished_run[{window}]", 15)
    def work(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Resumed]:
        # The first run is killed in the window; resume runs it again, and the point after it.
        env = offline_env(tmp_path)
        sweep = write_sweep(tmp_path / "two.yaml", {"seed": [0, 1], "epochs": 1})
        store_dir = tmp_path / "store"
        args = ["run", str(sweep), "--store", str(store_dir)]
        first = localsweep(args, {**env, "SWEEPMAP_FAULT": window})
        return first, resume(args, env, sweep, store_dir)


for _window in ("after-wandb-finish", "before-wandb-finish", "before-store"):
    kill_in_the_window(_window)


@pytest.mark.slow
def test_a_stalled_agent_cannot_finish_a_point_twice(wandb_env, tmp_path) -> None:
    """SIGSTOP past the heartbeat timeout: the point goes to the other agent; on SIGCONT the
    first one's run ends superseded, not finished."""
    sweep = write_sweep(tmp_path / "two.yaml", {"seed": [0, 1], "epochs": 12})
    store_dir = tmp_path / "store"
    env = {**wandb_env, "SWEEPMAP_HEARTBEAT_S": "0.5", "SWEEPMAP_STALE_AFTER_S": "3"}
    runner, store, name = two_running(sweep, store_dir, env)
    victim = store.runs(name)[0]
    pid = pid_of(store, victim.id)
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: store.run(victim.id).state == "crashed", 120, "the stalled run reaped")
    finally:
        os.kill(pid, signal.SIGCONT)
    out, _ = runner.communicate(timeout=300)
    assert runner.returncode == 0, out
    finished = Counter(point_key(r.config) for r in store.runs(name) if r.state == "finished")
    assert set(finished.values()) == {1} and len(finished) == 2, store.runs(name)
    assert (
        "superseded"
        in (store_dir / "logs" / name / "agent-0.log").read_text()
        + (store_dir / "logs" / name / "agent-1.log").read_text()
    )
    on_wandb = wandb_finished_per_point(store_dir)
    assert len(on_wandb) == 2 and set(on_wandb.values()) == {1}, on_wandb


@pytest.mark.slow
def test_one_agent_killed_is_said_and_the_grid_still_finishes(wandb_env, tmp_path) -> None:
    sweep = write_sweep(tmp_path / "four.yaml", {"seed": [0, 1, 2, 3], "epochs": 12})
    store_dir = tmp_path / "store"
    runner, store, name = two_running(sweep, store_dir, wandb_env)
    victim = store.runs(name)[0]
    os.kill(pid_of(store, victim.id), signal.SIGKILL)
    out, _ = runner.communicate(timeout=300)
    assert "died: killed by SIGKILL" in out and f"its run {victim.id} is marked crashed" in out
    assert "carrying on with 1 agent(s)" in out, out
    # The other agent ran the rest, the killed point included.
    assert runner.returncode == 0, out
    assert store.run(victim.id).state == "crashed" and store.counts(name)["finished"] == 4


@pytest.mark.slow  # ~15 s: a sweep, then the fault, then resume
def test_a_corrupt_store_is_refused_and_repaired_from_the_runs_files(wandb_env, tmp_path):
    sweep = three_points(tmp_path, epochs=1)
    store_dir = tmp_path / "store"
    done = localsweep(["run", str(sweep), "--store", str(store_dir)], wandb_env)
    assert done.returncode == 0, done.stderr
    db = store_dir / "store.db"
    with sqlite3.connect(db) as conn:  # everything into the main file, then damage it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    rng = random.Random(0)
    for page in range(1, len(data) // 4096):  # every page but the header's
        start_at = page * 4096 + rng.randrange(0, 4000)
        data[start_at : start_at + 64] = rng.randbytes(64)
    db.write_bytes(bytes(data))
    report = ["-m", "analysis", "report", "--yaml", str(sweep), "--out", str(tmp_path / "r")]
    for command in (
        ["-m", "localsweep", "status"],
        ["-m", "localsweep", "run", str(sweep)],
        report,
    ):
        proc = run_py([*command, "--store", str(store_dir)], wandb_env)
        assert proc.returncode in (2, 3), proc.stdout + proc.stderr
        line = proc.stderr.strip()
        assert "corrupt" in line and "localsweep repair" in line and "\n" not in line, line
    fixed = localsweep(["repair", "--store", str(store_dir)], wandb_env)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 sweep(s), 3 run(s), 3 finished" in fixed.stdout
    again = localsweep(["run", str(sweep), "--store", str(store_dir)], wandb_env)
    assert again.returncode == 0 and "is complete: 3/3 finished" in again.stdout


@contextlib.contextmanager
def mounted(args: list[str], target: Path) -> Iterator[None]:
    target.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount here ({made.stderr.strip() or 'mount failed'})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.slow
def test_a_read_only_store_can_still_be_read(wandb_env, tmp_path) -> None:
    sweep = write_sweep(
        tmp_path / "lr.yaml",
        {"lr": [1.0e-3, 1.0e-2], "optimizer": ["sgd", "adam"]} | {"seed": [0, 1], "epochs": 1},
    )
    store_dir = tmp_path / "store"
    assert localsweep(["run", str(sweep), "--store", str(store_dir)], wandb_env).returncode == 0
    view = tmp_path / "view"
    with mounted(["--bind", str(store_dir)], view):
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=False)
        if remount.returncode != 0:
            pytest.skip("cannot remount read-only here")
        status = localsweep(["status", "--store", str(view)], wandb_env)
        assert status.returncode == 0 and "8/8 finished" in status.stdout, status.stderr
        report = run_py(["-m", "analysis", "report", "--store", str(view), "--yaml", str(sweep),
                         "--out", str(tmp_path / "rep")], wandb_env)  # fmt: skip
        assert report.returncode == 0, report.stdout + report.stderr


@pytest.mark.slow  # ~16 s: a sweep, then the fault, then resume
def test_a_full_disk_stops_the_sweep_in_one_line_and_resume_completes(wandb_env, tmp_path):
    sweep = write_sweep(tmp_path / "twelve.yaml", {"seed": list(range(12)), "epochs": 1})
    small = tmp_path / "small"
    with mounted(["-t", "tmpfs", "-o", "size=700k", "tmpfs"], small):
        store_dir = small / "store"
        proc = localsweep(["run", str(sweep), "--store", str(store_dir)], wandb_env)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        said = proc.stdout + proc.stderr
        assert "No space left on device" in said or "disk is full" in said, said
        assert "Traceback" not in said
        kept = [r for r in Store(store_dir).runs(name_of(sweep)) if r.state == "finished"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        resumed = localsweep(["run", str(sweep), "--store", str(store_dir)], wandb_env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        runs = Store(store_dir).runs(name_of(sweep))
        assert {r.id for r in kept} <= {r.id for r in runs if r.state == "finished"}
        assert Store(store_dir).counts(name_of(sweep))["finished"] == 12


@pytest.mark.slow
@pytest.mark.parametrize("moment", [random.Random(i).uniform(2.0, 14.0) for i in range(5)])
def test_a_kill_at_a_random_moment_then_resume_finishes_every_point_once(
    wandb_env, tmp_path, moment
) -> None:
    """SIGKILL to the runner's whole group at a random moment (start-up, a claim, training,
    a run's end), then resume: every point finished exactly once, in the store and in wandb."""
    import time

    sweep = write_sweep(tmp_path / "six.yaml", {"seed": list(range(6)), "epochs": 2})
    store_dir = tmp_path / "store"
    args = ["run", str(sweep), "--store", str(store_dir), "--agents", "2"]
    runner = subprocess.Popen(
        [sys.executable, "-m", "localsweep", *args], cwd=ROOT, env=wandb_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    time.sleep(moment)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    wait_for(lambda: not _processes_with(str(store_dir), "cmdline"), 30, "the agents to die")
    resume_then_each_point_finished_once(args, wandb_env, sweep, store_dir, points=6)
