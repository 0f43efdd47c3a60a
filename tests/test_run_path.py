"""One path from a grid point to a run: sweeps that fail loudly and never substitute.

Everything here runs `python -m localsweep` as a real process, as a user would. The tests
that only look at what a sweep left get it from the `ran` fixture (conftest.TwoAtATime), which
runs those sweeps two at a time; the tests that time something (a signal, the missing data, a
killed runner) run on their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from localsweep.store import Store
from sweepmap.sweepfile import read_sweep, sweep_name

from .conftest import ROOT, TWO, Ran, offline_env, run_py, write_sweep
from .test_localsweep import _processes_with, start, wait_for


def localsweep(args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 300):
    return run_py(["-m", "localsweep", *args], env, cwd=cwd, timeout=timeout)


def edit(path: Path, parameters: dict) -> None:
    """Set parameter specs as they are (write_sweep wraps scalars and lists)."""
    config = yaml.safe_load(path.read_text())
    config["parameters"].update(parameters)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def name_of(path: Path) -> str:
    return sweep_name(path, read_sweep(path)[1])


def two_running(sweep: Path, store_dir: Path, env: dict[str, str]):
    """`localsweep run SWEEP --agents 2`, once both agents train: (runner, store, name)."""
    runner = start(["run", str(sweep), "--store", str(store_dir), "--agents", "2"], env)
    store = Store(store_dir)
    name = name_of(sweep)
    wait_for(lambda: store_dir.exists() and store.counts(name)["running"] == 2, what="2 runs")
    return runner, store, name


def pid_of(store: Store, run_id: str) -> int:
    """The agent that holds a run."""
    return int(store.db.execute("SELECT pid FROM runs WHERE id = ?", (run_id,)).fetchone()[0])


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_a_signal_to_the_runner_alone_stops_its_agents(wandb_env, tmp_path, signum) -> None:
    sweep = write_sweep(tmp_path / "long.yaml", {"seed": [0, 1, 2, 3], "epochs": 40})
    store_dir = tmp_path / "store"
    runner, store, name = two_running(sweep, store_dir, wandb_env)
    os.kill(runner.pid, signum)  # the runner alone, not its group: a scheduler's stop
    out, _ = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signum, out
    # As long as the 5 s this waited before; it ends as soon as the agents are gone.
    wait_for(lambda: not _processes_with(str(store_dir), "cmdline"), 5, "agents left training")
    counts = store.counts(name)
    assert counts["crashed"] == 2 and counts["running"] == counts["pending"] == 0, counts
    assert f"resume with: python -m localsweep run {sweep}" in out


def test_a_sweep_whose_data_is_missing_stops_at_once(wandb_env, tmp_path) -> None:
    sweep = write_sweep(
        tmp_path / "g.yaml", {"seed": [0, 1], "dataset": "gestures", "model": "gru", "epochs": 1}
    )
    store_dir = tmp_path / "store"
    env = {**wandb_env, "SWEEPMAP_DATA_DIR": str(tmp_path / "nothing")}
    began = time.monotonic()
    proc = localsweep(["run", str(sweep), "--store", str(store_dir), "--agents", "2"], env)
    # The environment's exit code (3, as train.py's), not bad input's 2: the file is right,
    # and the same sweep runs once the data is there (the line says how; stdout how to resume).
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"resume with: python -m localsweep run {sweep}" in proc.stdout
    # At once: no wait for a download, a retry or a timeout (7 s on a quiet 2-core machine,
    # over 10 s while other test runs share it; a hang would be minutes).
    assert time.monotonic() - began < 30
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SWEEPMAP_GESTURES_ZIP" in lines[0], proc.stderr
    assert Store(store_dir).runs(name_of(sweep)) == []  # no run, no point marked failed
    assert not (store_dir / "wandb").exists() and not (tmp_path / "nothing").exists()


@TWO.of("test_another_program_really_runs", 6)
def another_program(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = offline_env(tmp_path)
    (tmp_path / "mine.py").write_text(
        "import os, sys\n"
        "open(os.environ['WANDB_RUN_ID'] + '.ran', 'w').write(' '.join(sys.argv[1:]))\n"
    )
    sweep = write_sweep(tmp_path / "m.yaml", {"lr": [1.0e-3, 1.0e-2]}, program="mine.py")
    return localsweep(["run", str(sweep), "--store", "store"], env, cwd=tmp_path)


def test_another_program_really_runs(ran: Ran) -> None:
    tmp_path, proc = ran.folder, ran.result()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mode process (the sweep's program is mine.py" in proc.stdout
    argv = sorted(p.read_text() for p in tmp_path.glob("*.ran"))
    assert argv == ["--lr=0.001", "--lr=0.01"]


@TWO.of("test_a_missing_program_is_refused", 3)
def missing_program(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = offline_env(tmp_path)
    sweep = write_sweep(tmp_path / "m.yaml", {"lr": [1.0e-3, 1.0e-2]}, program="my_train.py")
    return localsweep(["run", str(sweep), "--store", "store"], env, cwd=tmp_path)


def test_a_missing_program_is_refused(ran: Ran) -> None:
    tmp_path, proc = ran.folder, ran.result()
    assert proc.returncode == 2 and "program: my_train.py: no such file" in proc.stderr
    assert not (tmp_path / "store").exists()


@TWO.of("test_failures_show_as_they_happen_and_the_exit_code_says_so", 9)
def failures(tmp_path: Path) -> tuple[Any, ...]:
    """The first run, its runs as it left them, and the run again."""
    env = offline_env(tmp_path)
    sweep = write_sweep(
        tmp_path / "nan.yaml",
        {"lr": 1.0e10, "optimizer": "sgd", "batchnorm": False, "seed": [0, 1], "epochs": 2},
    )
    store_dir = tmp_path / "store"
    proc = localsweep(["run", str(sweep), "--store", str(store_dir)], env)
    runs = Store(store_dir).runs(name_of(sweep)) if store_dir.exists() else []
    again = localsweep(["run", str(sweep), "--store", str(store_dir)], env)
    return proc, runs, again


def test_failures_show_as_they_happen_and_the_exit_code_says_so(ran: Ran) -> None:
    proc, runs, again = ran.result()
    assert proc.returncode == 1, proc.stdout
    assert [r.state for r in runs] == ["failed", "failed"]
    for run in runs:  # one line each: state, run id, grid point, reason, log
        line = next(ln for ln in proc.stdout.splitlines() if run.id in ln and "failed:" in ln)
        assert "seed=" in line and "loss is" in line and str(run.log_path) in line
    assert again.returncode == 1 and "--retry-failed" in again.stdout


@TWO.of("test_an_environment_failure_runs_again_and_an_own_failure_does_not", 12)
def env_and_own_failure(tmp_path: Path) -> tuple[Any, ...]:
    """The first run, the states it left, the second run once the module is there, the
    points finished then."""
    env = offline_env(tmp_path)
    (tmp_path / "prog.py").write_text(
        "import sys\n"
        "if '--kind=env' in sys.argv:\n    import helper_not_yet_there\n"
        "else:\n    raise ValueError('diverged')\n"
    )
    sweep = write_sweep(tmp_path / "p.yaml", {"kind": ["env", "own"]}, program="prog.py")
    store_dir = tmp_path / "store"
    first = localsweep(["run", str(sweep), "--store", str(store_dir)], env, cwd=tmp_path)
    store = Store(store_dir)
    states = {r.config["kind"]: r.state for r in store.runs(name_of(sweep))}
    (tmp_path / "helper_not_yet_there.py").write_text("")
    second = localsweep(["run", str(sweep), "--store", str(store_dir)], env, cwd=tmp_path)
    finished = [r.config["kind"] for r in store.runs(name_of(sweep)) if r.state == "finished"]
    return first, states, second, finished


def test_an_environment_failure_runs_again_and_an_own_failure_does_not(ran: Ran):
    """A program that cannot import a module is the environment's fault: the next plain run
    tries again. One that raises on its own stays failed until --retry-failed."""
    first, states, second, finished = ran.result()
    assert first.returncode == 1
    assert states == {"env": "error", "own": "failed"}, first.stdout
    assert second.returncode == 1  # "own" still failed
    assert finished == ["env"]


def test_status_of_a_folder_with_no_store_creates_nothing(wandb_env, tmp_path) -> None:
    proc = localsweep(["status", "--store", str(tmp_path / "none")], wandb_env)
    assert proc.returncode == 2 and "no store in" in proc.stderr
    assert not (tmp_path / "none").exists()


def test_a_store_that_is_a_file_is_one_line_exit_2(wandb_env, tmp_path) -> None:
    (afile := tmp_path / "afile").write_text("mine")
    proc = localsweep(["run", str(ROOT / "sweeps" / "lr_optimizer.yaml"), "--store", str(afile)],
                      wandb_env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"localsweep: --store {afile}: a file; the store is a folder " \
        "(made if missing)"  # fmt: skip
    assert afile.read_text() == "mine" and sorted(tmp_path.iterdir()) == [afile]


KEY_CASES: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"command": ["${env}", "${interpreter}", "${program}", "${argz}"]}, {}, "${argz}"),
    ({"metric": {"name": "val/acuracy", "goal": "maximize"}}, {}, "did you mean val/accuracy"),
    ({"early_terminate": {"type": "hyperband", "min_iter": 1}}, {}, "one budget"),
    ({"method": "random"}, {}, "run_cap: missing; a random scan proposes"),
    ({}, {"opt": "nested"}, "use flat keys"),
    ({}, {"seed": [0, 0, 1]}, "0 is listed twice"),
    ({}, {f"p{i}": list(range(10)) for i in range(6)}, "2,000,000 grid points; at most 10,000"),
]


@TWO.of("test_sweep_keys_are_honoured_or_refused_in_one_line", 8)
def sweep_keys(tmp_path: Path) -> dict[str, tuple[Path, Any]]:
    """`localsweep create` of each case, each in a folder of its own: {needle: (folder, proc)}."""
    env = offline_env(tmp_path)
    out = {}
    for i, (extra, params, needle) in enumerate(KEY_CASES):
        (folder := tmp_path / str(i)).mkdir()
        sweep = write_sweep(folder / "x.yaml", {"seed": [0, 1], **params}, **extra)
        if "opt" in params:
            edit(sweep, {"opt": {"parameters": {"lr": {"value": 0.1}}}})
        out[needle] = folder, localsweep(["create", str(sweep), "--store", str(folder / "s")], env)
    return out


@pytest.mark.parametrize(("extra", "params", "needle"), KEY_CASES)
def test_sweep_keys_are_honoured_or_refused_in_one_line(ran, extra, params, needle) -> None:
    tmp_path, proc = ran.result()[needle]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert needle in line and "\n" not in line and "Traceback" not in line, line
    assert not (tmp_path / "s").exists()


@TWO.of("test_create_shows_the_axes_the_cap_the_name_and_earlier_versions", 4)
def create_twice(tmp_path: Path) -> tuple[Any, Any]:
    """`localsweep create` of a file, then of the file edited."""
    env = offline_env(tmp_path)
    sweep = write_sweep(tmp_path / "q.yaml", {"seed": [0, 1]}, name="dropout study", run_cap=5)
    edit(sweep, {"dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.3, "q": 0.1}})
    text = sweep.read_text()
    store = str(tmp_path / "s")
    proc = localsweep(["create", str(sweep), "--store", store], env)
    sweep.write_text(text.replace("run_cap: 5", "run_cap: 6"))
    edited = localsweep(["create", str(sweep), "--store", store], env)
    return proc, edited


def test_create_shows_the_axes_the_cap_the_name_and_earlier_versions(ran: Ran):
    proc, edited = ran.result()
    assert proc.returncode == 0, proc.stderr
    assert "dropout (q_uniform): 0.0, 0.1, 0.2" in proc.stdout  # 0.3 is the engine's dropped max
    assert "created sweep dropout_study-" in proc.stdout and "5 runs (run_cap 5)" in proc.stdout
    assert "an earlier version of this file is sweep dropout_study-" in edited.stdout
    assert "(0/5 finished)" in edited.stdout


def test_the_runner_leaves_no_agent_when_it_is_killed(wandb_env, tmp_path) -> None:
    sweep = write_sweep(tmp_path / "long.yaml", {"seed": [0, 1], "epochs": 40})
    store_dir = tmp_path / "store"
    runner = subprocess.Popen(
        [sys.executable, "-m", "localsweep", "run", str(sweep), "--store", str(store_dir)],
        cwd=ROOT, env=wandb_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    store = Store(store_dir)
    wait_for(lambda: store_dir.exists() and store.counts(name_of(sweep))["running"] == 1)
    runner.kill()  # SIGKILL: no handler runs
    runner.wait()
    wait_for(lambda: not _processes_with(str(store_dir), "cmdline"), 10, "the agent to die")


@TWO.of("test_what_the_machine_cannot_do_is_refused_for_the_sweep", 6)
def bf16_sweep(tmp_path: Path) -> tuple[Any, Any] | None:
    """The run and the runs it left; None on a machine with a GPU."""
    env = offline_env(tmp_path)
    import torch

    if torch.cuda.is_available():
        return None
    sweep = write_sweep(tmp_path / "bf.yaml", {"seed": [0, 1], "bf16": [False, True], "epochs": 1})
    store_dir = tmp_path / "store"
    proc = localsweep(["run", str(sweep), "--store", str(store_dir)], env)
    return proc, Store(store_dir).runs(name_of(sweep))


def test_what_the_machine_cannot_do_is_refused_for_the_sweep(ran: Ran) -> None:
    got = ran.result()
    if got is None:
        pytest.skip("this machine has a GPU: bf16 is allowed here")
    proc, runs = got
    assert proc.returncode == 2 and "bf16=True: needs a CUDA GPU" in proc.stderr, proc.stderr
    assert runs == []
