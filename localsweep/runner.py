"""`localsweep run`: N agent processes on one sweep, live progress, failures as they happen.

The agents run in process groups of their own and die with the runner however it dies
(PR_SET_PDEATHSIG). A terminal's Ctrl-C, or SIGINT or SIGTERM to the runner alone, is passed
on to each agent once; the runner waits for them to mark their runs crashed, and exits with
128 + the signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from agents.proc import die_with_parent
from localsweep import notes
from localsweep.agent import MAX_FAILURES_IN_ROW, point_text
from localsweep.execute import last_line
from localsweep.rows import NOT_DONE, StoreError, done
from localsweep.store import Store
from sweepmap.outcome import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE

POLL_S = 1.0
LOG_EVERY_S = 10.0
# Agents asked to stop have this long to end their runs before they are killed.
STOP_GRACE_S = 15.0
Agent = subprocess.Popen[bytes]


def spawn_agents(
    store_root: Path, agents: int, mode: str, retry: bool, stack: int = 0
) -> list[Agent]:
    """Start agents before the sweep is known: each imports torch, wandb and the models
    (~3 s) and then waits on stdin for `release` or `dismiss`. `localsweep run` checks the
    sweep file meanwhile, so that second of grid enumeration costs no wall time."""
    argv = [sys.executable, "-m", "localsweep", "agent", "-", "--store", str(store_root)]
    argv += (
        ["--mode", mode]
        + (["--retry-failed"] if retry else [])
        + (["--stack", str(stack)] if stack else [])
    )
    return [
        subprocess.Popen(argv, stdin=subprocess.PIPE, process_group=0, preexec_fn=die_with_parent())
        for _ in range(agents)
    ]


def agent_log(store_root: Path, sweep: str, index: int) -> Path:
    return store_root / "logs" / sweep / f"agent-{index}.log"


def release(procs: list[Agent], store_root: Path, sweep: str) -> None:
    """Give each waiting agent its sweep and its log file; it works until the grid is done."""
    agent_log(store_root, sweep, 0).parent.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(procs):
        assert p.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died warming up: watch reports its code
            p.stdin.write(f"{sweep}\t{agent_log(store_root, sweep, i)}\n".encode())
            p.stdin.close()


def dismiss(procs: list[Agent]) -> None:
    """Stop agents that were never released; they have written nothing anywhere yet."""
    for p in procs:
        p.kill()
        p.wait()


class Stop:
    """SIGINT and SIGTERM to the runner: noted, and passed on to every agent's group once."""

    def __init__(self, procs: list[Agent]) -> None:
        self.procs, self.signum, self.at = procs, 0, 0.0
        self.previous = {s: signal.signal(s, self._on) for s in (signal.SIGINT, signal.SIGTERM)}

    def _on(self, signum: int, frame: FrameType | None) -> None:
        self.request(signum)

    def request(self, signum: int) -> None:
        if self.signum:
            return  # once: a second signal would cut the agents' own clean-up short
        self.signum, self.at = signum, time.monotonic()
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signum)

    def overdue(self) -> bool:
        return bool(self.signum) and time.monotonic() - self.at > STOP_GRACE_S

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


@dataclass
class Watch:
    """What the runner has told the user so far, so that each event is said once."""

    store: Store
    sweep: str
    total: int
    procs: list[Agent]
    said: set[str] = field(default_factory=set)
    refusals: list[tuple[int, str]] = field(default_factory=list)  # (exit code, its reason)
    faults: int = 0  # agents stopped, or reaps failed, for a fault of the machine (a full disk)

    def new_events(self, stopping: bool) -> list[str]:
        lines = []
        for run in self.store.runs(self.sweep):
            if run.state in NOT_DONE and run.id not in self.said:
                self.said.add(run.id)
                why = run.summary.get("failure") or "no reason recorded"
                lines.append(f"{run.state}: run {run.id} {point_text(run.config)}: {why} "
                             f"(log: {run.log_path})")  # fmt: skip
        for note in notes.read(self.store.root, self.sweep):  # an agent's say-once lines
            if f"note:{note}" not in self.said:
                self.said.add(f"note:{note}")
                lines.append(note)
        for i, p in enumerate(self.procs):
            code, key = p.poll(), f"agent-{i}"
            if code in (None, EXIT_OK) or key in self.said or stopping:
                continue
            self.said.add(key)
            log = agent_log(self.store.root, self.sweep, i)
            unclaimed = code == EXIT_ENVIRONMENT and not self.store.claimed_by(self.sweep, p.pid)
            if code == EXIT_USAGE or unclaimed:
                # Refused the sweep before its first claim (bad input, or data this machine
                # has not got): its reason, once, and its exit code for the runner's.
                why = last_line(log) or f"an agent refused the sweep (see {log})"
                self.refusals.append((code, why))
                continue
            reaped = self.reap()
            held = f"; its run {', '.join(reaped)} is marked crashed" if reaped else ""
            left = sum(q.poll() is None for q in self.procs)
            how = "died" if code < 0 or code > 128 else "stopped"
            self.faults += code == EXIT_ENVIRONMENT
            said = "" if how == "died" else f": {last_line(log) or 'no output'}"
            lines.append(f"agent {i} (pid {p.pid}) {how}: {_exit_text(code)}{said} (log: {log})"
                         f"{held}; carrying on with {left} agent(s)")  # fmt: skip
        return lines

    def reap(self) -> list[str]:
        try:
            return self.store.reap(self.sweep)
        except StoreError as err:  # a full disk: said once, the runs are reaped on resume
            self.faults += 1
            if "store" not in self.said:
                self.said.add("store")
                print(f"localsweep: {err}", file=sys.stderr, flush=True)
            return []

    def seen_before(self) -> None:
        self.said |= {r.id for r in self.store.runs(self.sweep) if r.state in NOT_DONE}


def counts_line(store: Store, sweep: str, total: int) -> str:
    """Where a sweep stands: points finished of the total, and every other state."""
    c = store.counts(sweep)
    others = ", ".join(f"{c[s]} {s}" for s in ("stopped", "failed", "error", "crashed") if c[s])
    active = c["running"] + c["pending"]
    unstarted = store.unstarted(sweep)
    return (f"{sweep}: {c['finished']}/{total} finished" + (f", {others}" if others else "")
            + (f", {active} running" if active else "")
            + (f", {unstarted} not started" if unstarted else ""))  # fmt: skip


def watch(procs: list[Agent], store: Store, sweep: str, total: int, stop: Stop) -> Watch:
    """Print progress and each failure until every agent has exited."""
    tty = sys.stdout.isatty()
    started = time.time()
    finished_before = done(store.counts(sweep))
    seen = Watch(store, sweep, total, procs)
    seen.seen_before()
    last, last_counts, last_print = "", "", 0.0
    while True:
        alive = any(p.poll() is None for p in procs)
        for event in seen.new_events(bool(stop.signum)):
            print(("\r" + " " * len(last) + "\r" if tty else "") + event, flush=True)
            last = ""
        if seen.refusals and alive:
            stop.request(signal.SIGTERM)  # the others would refuse it too
        line = _progress(store, sweep, total, started, finished_before)
        counts = counts_line(store, sweep, total)
        quiet = time.time() - last_print
        if tty:
            print("\r" + line.ljust(len(last)), end="", flush=True)
        elif (counts != last_counts and quiet >= LOG_EVERY_S) or quiet > 60:
            print(line, flush=True)
            last_print, last_counts = time.time(), counts
        last = line
        if not alive:
            break
        if stop.overdue():
            for p in procs:
                p.kill()
        _nap(procs, POLL_S)
    if tty:
        print()
    return seen


def exit_code(store: Store, sweep: str, total: int, stop: Stop, seen: Watch) -> int:
    """0 only when every point has a finished run (a scan's: or stopped); else what stopped
    it (outcome.py)."""
    if seen.refusals:
        return max(code for code, _ in seen.refusals)
    if stop.signum:
        return 128 + stop.signum
    if seen.faults:
        return EXIT_ENVIRONMENT
    return EXIT_OK if done(store.counts(sweep)) >= total else EXIT_FAILED


def _progress(store: Store, sweep: str, total: int, started: float, before: int) -> str:
    """counts_line plus elapsed time and an ETA from the runs finished since `started`."""
    c = store.counts(sweep)
    elapsed = time.time() - started
    new = done(c) - before
    left = max(total - done(c), 0)
    eta = f"{_clock(elapsed / new * left)}" if new and left else "-"
    return f"{counts_line(store, sweep, total)}, elapsed {_clock(elapsed)}, ETA {eta}"


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    if code == EXIT_FAILED:
        return f"{MAX_FAILURES_IN_ROW} runs in a row did not finish"
    return f"exit code {code}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def _nap(procs: list[Agent], seconds: float) -> None:
    """Sleep up to `seconds`, waking as soon as every agent has exited: a sweep's last run
    ends the command at once rather than at the next poll (0.5 s later on average)."""
    deadline = time.monotonic() + seconds
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
