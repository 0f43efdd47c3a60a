"""How a local agent runs one claimed grid point: in this process, or one process per run.

Both give the same `Outcome` (sweepmap/outcome.py) and the same files:
- `inprocess` (the fast one, for train.py): like `wandb.agent(function=...)`, this process has
  imported torch and loaded the data once, keeps wandb's service alive, and calls
  `train.run_point` with the run's identity as `wandb.init` arguments;
- `process`: the sweep's command, rendered as `wandb agent` renders it, the identity as
  variables; the outcome is read back from the run's record (or, for a program that keeps
  none, from its exit code).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agents.contract import RunIdentity, local_identity, render_command, write_params
from localsweep import notes
from localsweep.rows import Run
from localsweep.store import Store
from sweepmap import keys
from sweepmap.outcome import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Interrupted,
    Outcome,
    StopEarly,
)
from sweepmap.record import read_record, write_verdict

# A child asked to stop (it got the same signal) has this long to end its wandb run.
STOP_GRACE_S = 20.0
# How often a scan's run in its own process is looked at (its record's size): the run waits
# for each epoch's verdict, so this is the most an epoch waits.
POLL_S = 0.01
Execute = Callable[[Run], Outcome]


def run_log(store: Path, sweep: str, run_id: str) -> Path:
    return store / "logs" / sweep / f"{run_id}.log"


class InProcess:
    def __init__(self, store: Store, sweep: str) -> None:
        from agents.warm import once_per_agent, warm_up_training

        warm_up_training()  # torch and the model code, imported once per agent
        import train

        self.settings = once_per_agent()
        self.store, self.sweep, self.train = store, sweep, train

    def __call__(self, run: Run) -> Outcome:
        from sweepmap.record import Record

        me = local_identity(self.store.root, self.sweep, run.id)
        write_params(me.param_path, run.config)

        stops = "early_terminate" in self.store.sweep(self.sweep).config

        def on_epoch(metrics: dict[str, Any]) -> None:
            self.store.log_epoch(run.id, int(metrics[keys.EPOCH]), metrics)
            why = self.store.stop_reason(self.sweep, run.id) if stops else None
            if why:
                raise StopEarly(why)

        log = run_log(self.store.root, self.sweep, run.id)
        log.parent.mkdir(parents=True, exist_ok=True)
        with (
            log.open("a") as out,
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(out),
        ):
            init = me.init_kwargs(self.settings)
            record = Record(me.record_path)
            return self.train.run_point(
                run.config, init=init, on_epoch=on_epoch, record=record, claim=me.claim_path
            )

    def stacked(self, runs: list[Run]) -> list[Outcome]:
        """A cell's runs as one stacked model (agents/stacked.py), each with its own files."""
        from agents.stacked import Point, run_stack
        from sweepmap.record import Record

        points = []
        for run in runs:
            me = local_identity(self.store.root, self.sweep, run.id)
            write_params(me.param_path, run.config)
            log_epoch = functools.partial(self._log_epoch, run.id)
            points.append(Point(run.config, me.init_kwargs(self.settings), log_epoch,
                                Record(me.record_path), me.claim_path))  # fmt: skip
        # The cell's output goes to its first run's log (trained stacked, or one at a time when
        # run_stack falls back, which it says there); the others' logs say where it is.
        log = run_log(self.store.root, self.sweep, runs[0].id)
        log.parent.mkdir(parents=True, exist_ok=True)
        for run in runs[1:]:
            run_log(self.store.root, self.sweep, run.id).write_text(
                f"claimed as one stack with {', '.join(r.id for r in runs)}: the output of all "
                f"{len(runs)} is in {log}\n"
            )
        say = functools.partial(notes.say, self.store.root, self.sweep)
        with log.open("a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return run_stack(points, say)

    def _log_epoch(self, run_id: str, metrics: dict[str, Any]) -> None:
        self.store.log_epoch(run_id, int(metrics[keys.EPOCH]), metrics)


class Process:
    def __init__(self, store: Store, sweep: str, config: Mapping[str, Any], cwd: Path) -> None:
        self.store, self.sweep, self.config, self.cwd = store, sweep, config, cwd

    def __call__(self, run: Run) -> Outcome:
        from agents.proc import start_logged

        me = local_identity(self.store.root, self.sweep, run.id)
        if "early_terminate" in self.config and me.stop_path is not None:
            # The run waits for each epoch's verdict: its stop lands where the rule said.
            verdict = me.stop_path.with_suffix(".verdict")
            verdict.unlink(missing_ok=True)
            me = dataclasses.replace(me, verdict_path=verdict)
        write_params(me.param_path, run.config)
        env = me.env()
        env.setdefault("SWEEPMAP_THREADS", os.environ.get("SWEEPMAP_THREADS", "1"))
        argv = render_command(self.config, run.config, me.param_path.with_suffix(".json"))
        log = run_log(self.store.root, self.sweep, run.id)
        proc = start_logged(argv, env, log, self.cwd)
        try:
            code = self._wait(proc, me)
        except KeyboardInterrupt as err:
            _stop(proc, err)
            raise
        for done_with in (me.stop_path, me.verdict_path):
            if done_with is not None:
                done_with.unlink(missing_ok=True)
        return self._outcome(me, code, log)

    def _wait(self, proc: subprocess.Popen[bytes], me: RunIdentity) -> int:
        """The child's exit code. In a scan with early_terminate, the epochs of its record go
        to the store as they come, and the sweep's rule is asked after each: a run to stop is
        told through its stop file, which train.py reads after each epoch once the verdict
        file says that epoch was judged (so it stops where the rule said, as in-process)."""
        if me.stop_path is None or me.verdict_path is None:
            return proc.wait()
        seen, size = 0, -1
        while (code := proc.poll()) is None:
            time.sleep(POLL_S)
            now = me.record_path.stat().st_size if me.record_path.exists() else 0
            if now == size:  # nothing new: the record is parsed only when it grew
                continue
            size = now
            history, _, _ = read_record(me.record_path)
            for metrics in history[seen:]:
                self.store.log_epoch(me.run_id, int(metrics[keys.EPOCH]), metrics)
            if len(history) > seen:
                if not me.stop_path.exists():
                    why = self.store.stop_reason(self.sweep, me.run_id)
                    if why:
                        me.stop_path.parent.mkdir(parents=True, exist_ok=True)
                        me.stop_path.write_text(why, encoding="utf-8")
                # After the stop file: a run that reads this verdict finds its stop there.
                write_verdict(me.verdict_path, int(history[-1][keys.EPOCH]))
            seen = len(history)
        return code

    def _outcome(self, me: RunIdentity, code: int, log: Path) -> Outcome:
        history, state, summary = read_record(me.record_path)
        for metrics in history:
            self.store.log_epoch(me.run_id, int(metrics[keys.EPOCH]), metrics)
        if state is not None:
            # train.py's record; a config error there means the command, not the grid point
            # (every point was validated at create): an error of the environment.
            return Outcome("error" if state == "invalid" else state, summary, code)
        return from_exit_code(code, last_line(log))


def from_exit_code(code: int, last_line: str) -> Outcome:
    """The outcome of a program that kept no record (not train.py, or killed before it could)."""
    if code == EXIT_OK:
        return Outcome("finished", {}, code)
    if code < 0 or code > 128:
        signum = -code if code < 0 else code - 128
        name = signal.Signals(signum).name if signum in set(signal.Signals) else str(signum)
        return Outcome.failure("crashed", f"killed by {name}", 128 + signum)
    env = code in (EXIT_USAGE, EXIT_ENVIRONMENT) or last_line.startswith(
        ("ModuleNotFoundError", "ImportError", "FileNotFoundError")
    )
    reason = f"exit code {code}: {last_line or 'no output'}"
    return Outcome.failure("error" if env else "failed", reason, code if code else EXIT_FAILED)


def _stop(proc: subprocess.Popen[bytes], err: KeyboardInterrupt) -> None:
    """Pass the signal on (a child in our process group may have had it already), wait."""
    signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def last_line(log: Path) -> str:
    """The last non-blank line of a log ("" when there is none): what a process said last."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
