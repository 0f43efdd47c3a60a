"""A local agent: claim a grid point, run it, store its outcome, repeat until the grid is done.

Before its first claim it checks what every run needs (localsweep/preflight.py): a sweep whose
data cannot be had stops here with one line and exit code 2, having created nothing.
"""

from __future__ import annotations

import gc
import os
import secrets
import signal
import string
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agents.contract import local_identity
from localsweep import notes, preflight
from localsweep.execute import Execute, InProcess, Process, run_log
from localsweep.rows import STATES, Run, StoreError
from localsweep.store import Store
from sweepmap.faults import crash_point
from sweepmap.outcome import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_USAGE, Outcome, interrupt_on
from sweepmap.sweepfile import SweepError, is_scan

MODES = ("inprocess", "process")
HEARTBEAT_S = float(os.environ.get("SWEEPMAP_HEARTBEAT_S") or 5.0)  # shorter in tests
IDLE_POLL_S = 0.2  # an idle agent ends this long after the last run at most
# As wandb's agent: a config that fails at once must not burn through the whole grid.
MAX_FAILURES_IN_ROW = 5
# A stack's runs may differ in these (sweepmap/stack.py MAY_DIFFER, less save_model); at
# most this many in one stack.
STACK_KEYS = ("seed", "lr", "weight_decay")
MAX_STACK = 48
# Measured on the digits CNN, 2 cores: 6 runs a stack was the fastest per run (bench/results.md).
STACK_DEFAULT = 6
OTHERS = "another agent's"
# A run that could not run (its state "error") is stored as such and runs again on resume.
STORE_STATE = {"invalid": "error"}


def new_run_id() -> str:
    """8 characters from [a-z0-9], the shape of wandb's own run ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class _Heartbeat(threading.Thread):
    """Marks the current run alive, so that a resume can tell it from a dead agent's."""

    def __init__(self, store_root: Path) -> None:
        super().__init__(daemon=True)
        self.store_root = store_root
        self.run_ids: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        store = Store(self.store_root)  # sqlite connections stay in their own thread
        while not self.stopped.wait(HEARTBEAT_S):
            for run_id in self.run_ids:
                store.heartbeat(run_id)
        store.close()


def point_text(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


def make_executor(store: Store, sweep: str, mode: str) -> Execute:
    """The runner of this sweep's points, after its data check; SweepError if it cannot run."""
    config = store.sweep(sweep).config
    cwd = Path.cwd()
    mode, why = preflight.effective_mode(config, mode, cwd)
    if why:
        print(f"agent: {why}", flush=True)
    if not preflight.runs_train_py(config, cwd):
        preflight.check_program(config, cwd)
        return Process(store, sweep, config, cwd)
    points = _points_to_check(store, sweep, config)
    if mode == "inprocess":
        execute = InProcess(store, sweep)  # its warm-up imports wandb before torch: first
        preflight.check_data(points)
        return execute
    preflight.check_data(points)
    program = str(preflight.program_of(config, cwd))  # train.py from any working folder
    return Process(store, sweep, {**config, "program": program}, cwd)


def _points_to_check(store: Store, sweep: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """A grid's points; for a scan, points that stand for its space (its data and devices)."""
    if not is_scan(config):
        return store.points(sweep)
    from localsweep.scan import sample_points

    return sample_points(config)


def run_agent(
    store_root: Path,
    sweep: str,
    mode: str = "inprocess",
    count: int | None = None,
    retry_failed: bool = False,
    stack: int = 0,
) -> int:
    """Run grid points until none are left (or `count` are done); returns an exit code.
    `stack` > 1: claim up to that many free points of a cell together and train them as one
    stacked model."""
    store = Store(store_root)
    try:
        execute = make_executor(store, sweep, mode)
    except SweepError as err:
        print(f"localsweep: {err}", file=sys.stderr, flush=True)
        return EXIT_ENVIRONMENT if isinstance(err, preflight.Unavailable) else EXIT_USAGE
    interrupt_on()  # SIGTERM ends the run in flight as Ctrl-C does
    stack = stack if stack > 1 and _can_claim_cells(store, sweep, execute) else 0
    began = time.time()
    beat = _Heartbeat(store.root)
    beat.start()
    done = failures = 0
    try:
        while count is None or done < count:
            k = min(stack, count - done if count else stack) if stack else 1
            runs = _claim(store, sweep, k, retry_failed, began)
            if not runs:
                if not _wait_for_others(store, sweep):
                    break
                continue
            claims = [local_identity(store.root, sweep, run.id).claim_path for run in runs]
            for run, claim in zip(runs, claims, strict=True):
                claim.parent.mkdir(parents=True, exist_ok=True)
                claim.touch()
                store.start(run.id, str(run_log(store.root, sweep, run.id)))
            beat.run_ids = [run.id for run in runs]
            try:
                if len(runs) > 1 and isinstance(execute, InProcess):  # see _can_claim_cells
                    outcomes = execute.stacked(runs)
                else:
                    outcomes = [execute(run) for run in runs]
            except KeyboardInterrupt as err:
                stopped = Outcome.interrupted(err)
                for run in runs:
                    store.finish(run.id, "crashed", stopped.summary, None, stopped.exit_code)
                ids = ", ".join(run.id for run in runs)
                print(f"agent: {stopped.reason}; run(s) {ids} will run again on resume")
                return stopped.exit_code
            finally:
                beat.run_ids = []
            crash_point("before-store")
            for run, outcome, claim in zip(runs, outcomes, claims, strict=True):
                if not _store(store, run.id, outcome):
                    print(f"agent: run {run.id} was reaped while this agent was stopped; its "
                          f"result is dropped (superseded), the point is {OTHERS}")  # fmt: skip
                claim.unlink(missing_ok=True)
                print(f"agent: {run.id} {outcome.state} {point_text(run.config)}", flush=True)
                done += 1
                failures = 0 if outcome.state in ("finished", "stopped") else failures + 1
            if failures >= MAX_FAILURES_IN_ROW:
                log = run_log(store.root, sweep, runs[-1].id)
                print(f"agent: {failures} runs in a row did not finish; stopping (see {log})")
                return EXIT_FAILED
    finally:
        beat.stopped.set()
        store.close()
        # The agent exits next. Python's last collections would walk every object that torch,
        # its _dynamo and wandb made (~1.2 s of CPU here); frozen, they are left to the OS.
        gc.freeze()
    return 0


def _claim(store: Store, sweep: str, k: int, retry: bool, since: float) -> list[Run]:
    """The next point, or (k > 1) the free points of the next cell, up to k: a stack."""
    if k == 1:
        run = store.claim(sweep, new_run_id(), retry, since=since)
        return [] if run is None else [run]
    ids = [new_run_id() for _ in range(k)]
    return store.claim_cell(sweep, ids, STACK_KEYS, retry, since=since)


def _can_claim_cells(store: Store, sweep: str, execute: Execute) -> bool:
    """--stack needs the in-process agent and a grid; else one run at a time, said once."""
    why = ""
    if is_scan(store.sweep(sweep).config):
        why = "a scan proposes one point at a time, from the results so far"
    elif not isinstance(execute, InProcess):
        why = "stacking needs the in-process agent (train.py, --mode inprocess)"
    if why:
        notes.say(store.root, sweep, f"agent: --stack: one run at a time: {why}")
    return not why


def _wait_for_others(store: Store, sweep: str) -> bool:
    """Nothing to claim but others still run: stay, so that a point whose agent dies or
    stalls past the heartbeat timeout is reaped and taken over. Reads every IDLE_POLL_S (the
    sweep's end is seen at once), claims again (which reaps) every heartbeat; False when
    no run is active any more."""
    until = time.monotonic() + HEARTBEAT_S
    while time.monotonic() < until:
        c = store.counts(sweep)
        if not c["running"] + c["pending"]:
            return False
        time.sleep(IDLE_POLL_S)
    return True


def _store(store: Store, run_id: str, outcome: Outcome) -> bool:
    """False when the run's claim was reaped meanwhile: the write is fenced off."""
    from sweepmap import keys

    started = store.run(run_id).started or time.time()
    runtime = outcome.summary.get(keys.RUNTIME) or time.time() - started
    state = STORE_STATE.get(outcome.state, outcome.state)
    if state not in STATES:  # superseded: not a state of the point's run
        return False
    return store.finish(run_id, state, outcome.summary, runtime, outcome.exit_code)


def main_agent(
    store_root: Path, sweep: str, mode: str, count: int | None, retry: bool, stack: int = 0
) -> int:
    try:
        if sweep == "-":
            warm_up(mode)
            got = await_sweep()
            if got is None:
                return 0
            sweep = got
        return run_agent(store_root, sweep, mode, count, retry, stack)
    except KeyboardInterrupt as err:
        return Outcome.interrupted(err).exit_code
    except KeyError as err:
        print(f"localsweep: {err.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, OSError) as err:  # a full disk, a read-only store: one line, no trace
        why = err if isinstance(err, StoreError) else f"{err.filename}: {err.strerror}"
        print(f"localsweep: cannot write: {why}", file=sys.stderr)
        return EXIT_ENVIRONMENT


def warm_up(mode: str) -> None:
    """What every run needs, imported before the sweep is known (see runner.spawn_agents)."""
    interrupt_on((signal.SIGTERM,))
    if mode == "inprocess":
        from agents.warm import warm_up_training

        warm_up_training()


def await_sweep() -> str | None:
    """Read `sweep<TAB>log path` from stdin and send this process's output to that log;
    None on end of input (the runner found nothing for this agent to do)."""
    line = sys.stdin.readline()
    if not line.strip():
        return None
    sweep, log = line.rstrip("\n").split("\t")
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return sweep
