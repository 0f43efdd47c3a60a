"""A local agent: claim a grid point, run it, store the result, repeat until the grid is done.

Two modes with the same result in the store:
- `process`: one `train.py` process per run, started exactly as `wandb agent` starts it;
- `inprocess` (default, the fast one): like `wandb.agent(function=...)`, this process imports
  torch and loads the data once and trains run after run, keeping wandb's service alive.
"""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
import string
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localsweep.store import Run, Store
from sweepmap import keys
from sweepmap.record import read_record

MODES = ("inprocess", "process")
HEARTBEAT_S = 5.0
# As wandb's agent: a config that fails at once must not burn through the whole grid.
MAX_FAILURES_IN_ROW = 5


@dataclass(frozen=True)
class Paths:
    store: Path
    sweep: str

    @property
    def wandb_dir(self) -> Path:
        return self.store

    def log(self, run_id: str) -> Path:
        return self.store / "logs" / self.sweep / f"{run_id}.log"

    def record(self, run_id: str) -> Path:
        return self.store / "logs" / self.sweep / f"{run_id}.jsonl"

    def params(self, run_id: str) -> Path:
        return self.store / "params" / self.sweep / f"config-{run_id}.yaml"


def new_run_id() -> str:
    """8 characters from [a-z0-9], the shape of wandb's own run ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class _Heartbeat(threading.Thread):
    """Marks the current run alive, so that a resume can tell it from a dead agent's."""

    def __init__(self, store_root: Path) -> None:
        super().__init__(daemon=True)
        self.store_root = store_root
        self.run_id: str | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        store = Store(self.store_root)  # sqlite connections stay in their own thread
        while not self.stopped.wait(HEARTBEAT_S):
            if self.run_id is not None:
                store.heartbeat(self.run_id)
        store.close()


def run_agent(
    store_root: Path,
    sweep: str,
    mode: str = "inprocess",
    count: int | None = None,
    retry_failed: bool = False,
) -> int:
    """Run grid points until none are left (or `count` are done); returns an exit code."""
    store = Store(store_root)
    config = store.sweep(sweep).config
    if mode == "inprocess" and config.get("command"):
        print("agent: the sweep has its own `command:`; running one process per run")
        mode = "process"
    paths = Paths(store.root, sweep)
    runner = _InProcess(paths, store) if mode == "inprocess" else _Process(paths, config)
    beat = _Heartbeat(store.root)
    beat.start()
    done = failures = 0
    try:
        while count is None or done < count:
            run = store.claim(sweep, new_run_id(), retry_failed)
            if run is None:
                break
            store.start(run.id, str(paths.log(run.id)))
            beat.run_id = run.id
            try:
                state, summary, code = runner(run)
            except KeyboardInterrupt:
                store.finish(run.id, "crashed", {keys.FAILURE: "interrupted"}, None, 130)
                print(f"agent: interrupted; run {run.id} will run again on resume", flush=True)
                return 130
            finally:
                beat.run_id = None
            runtime = summary.get(keys.RUNTIME) or time.time() - (store.run(run.id).started or 0)
            store.finish(run.id, state, summary, runtime, code)
            print(f"agent: {run.id} {state} {_point(run.config)}", flush=True)
            done += 1
            failures = 0 if state == "finished" else failures + 1
            if failures >= MAX_FAILURES_IN_ROW:
                print(f"agent: {failures} failed runs in a row; stopping (see {paths.log(run.id)})")
                return 1
    finally:
        beat.stopped.set()
        store.close()
        # The agent exits next. Python's last collections would walk every object that torch,
        # its _dynamo and wandb made (~1.2 s of CPU here); frozen, they are left to the OS.
        gc.freeze()
    return 0


def _point(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


class _Process:
    def __init__(self, paths: Paths, config: dict[str, Any]) -> None:
        # launch imports wandb (~0.4 s): here rather than at the top, so that `localsweep run`
        # (which only spawns and watches agents) starts its agents that much sooner.
        from agents import contract as launch

        self.paths, self.config, self.launch = paths, config, launch

    def __call__(self, run: Run) -> tuple[str, dict[str, Any], int | None]:
        p, launch = self.paths, self.launch
        launch.write_params(p.params(run.id), run.config)
        env = launch.sweep_env(p.sweep, run.id, p.params(run.id), p.record(run.id), p.wandb_dir)
        env.setdefault("SWEEPMAP_THREADS", os.environ.get("SWEEPMAP_THREADS", "1"))
        argv = launch.build_command(self.config, run.config)
        proc = launch.start(argv, env, p.log(run.id), Path.cwd())
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # it got the same SIGINT; let it end its wandb run first
            raise
        history, state, summary = read_record(p.record(run.id))
        store = Store(p.store)
        for metrics in history:
            store.log_epoch(run.id, int(metrics[keys.EPOCH]), metrics)
        store.close()
        if state is None:  # no end record: killed, or failed before training started
            state = "crashed" if code < 0 else "failed"
            summary = {keys.FAILURE: f"exit code {code}; see {p.log(run.id)}"}
        return state, summary, code


class _InProcess:
    def __init__(self, paths: Paths, store: Store) -> None:
        from agents.warm import once_per_agent, warm_up_training

        warm_up_training()  # torch and the model code, imported once per agent
        import wandb

        import train
        from agents import contract as launch

        self.settings = once_per_agent()
        self.paths, self.store, self.train, self.wandb = paths, store, train, wandb
        self.launch = launch

    def __call__(self, run: Run) -> tuple[str, dict[str, Any], int | None]:
        from sweepmap.config import Config

        p = self.paths
        self.launch.write_params(p.params(run.id), run.config)
        init = {
            "id": run.id,
            "group": p.sweep,
            "tags": [p.sweep, "localsweep"],
            "dir": str(p.wandb_dir),
            "settings": self.wandb.Settings(
                sweep_param_path=str(p.params(run.id)), **self.settings
            ),
        }

        def on_epoch(metrics: dict[str, Any]) -> None:
            self.store.log_epoch(run.id, int(metrics[keys.EPOCH]), metrics)

        p.log(run.id).parent.mkdir(parents=True, exist_ok=True)
        with (
            p.log(run.id).open("a") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            try:
                cfg = Config.from_mapping(run.config)
                state, summary = self.train.run_once(cfg, on_epoch, **init)
            except KeyboardInterrupt:
                raise
            except Exception as err:
                traceback.print_exc()
                return "failed", {keys.FAILURE: f"{type(err).__name__}: {err}"}, 1
        return state, summary, 0 if state == "finished" else 1


def main_agent(store_root: Path, sweep: str, mode: str, count: int | None, retry: bool) -> int:
    try:
        if sweep == "-":
            warm_up(mode)
            got = await_sweep()
            if got is None:
                return 0
            sweep = got
        return run_agent(store_root, sweep, mode, count, retry)
    except KeyboardInterrupt:
        return 130
    except KeyError as err:
        print(f"localsweep: {err.args[0]}", file=sys.stderr)
        return 2


def warm_up(mode: str) -> None:
    """What every run needs, imported before the sweep is known (see runner.spawn_agents)."""
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
