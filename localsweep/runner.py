"""`localsweep run`: N agent processes on one sweep, and a live progress line while they work."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

from localsweep.store import Store

POLL_S = 1.0
LOG_EVERY_S = 10.0
Agent = subprocess.Popen[bytes]


def spawn_agents(store_root: Path, agents: int, mode: str, retry: bool) -> list[Agent]:
    """Start agents before the sweep is known: each imports torch, wandb and the models
    (~3 s) and then waits on stdin for `release` or `dismiss`. `localsweep run` checks the
    sweep file meanwhile, so that second of grid enumeration costs no wall time."""
    argv = [sys.executable, "-m", "localsweep", "agent", "-", "--store", str(store_root)]
    argv += ["--mode", mode] + (["--retry-failed"] if retry else [])
    return [subprocess.Popen(argv, stdin=subprocess.PIPE) for _ in range(agents)]


def release(procs: list[Agent], store_root: Path, sweep: str) -> None:
    """Give each waiting agent its sweep and its log file; it works until the grid is done."""
    logs = store_root / "logs" / sweep
    logs.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(procs):
        assert p.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died warming up: watch reports its code
            p.stdin.write(f"{sweep}\t{logs / f'agent-{i}.log'}\n".encode())
            p.stdin.close()


def dismiss(procs: list[Agent]) -> None:
    """Stop agents that were never released; they have written nothing anywhere yet."""
    for p in procs:
        p.kill()
        p.wait()


def counts_line(store: Store, sweep: str, total: int) -> str:
    """Where a sweep stands: done of total, failed, crashed, running."""
    c = store.counts(sweep)
    return (
        f"{sweep}: {c['finished'] + c['failed']}/{total} done ({c['failed']} failed, "
        f"{c['crashed']} crashed), {c['running'] + c['pending']} running"
    )


def progress_line(store: Store, sweep: str, total: int, started: float, done_before: int) -> str:
    """counts_line plus elapsed time and an ETA from the runs finished since `started`."""
    c = store.counts(sweep)
    done = c["finished"] + c["failed"]
    elapsed = time.time() - started
    new = done - done_before
    left = max(total - done, 0)
    eta = f"{_clock(elapsed / new * left)}" if new and left else "-"
    return f"{counts_line(store, sweep, total)}, elapsed {_clock(elapsed)}, ETA {eta}"


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


def watch(procs: list[Agent], store: Store, sweep: str, total: int) -> int:
    """Print progress until every agent has exited; returns the worst agent exit code."""
    tty = sys.stdout.isatty()
    started = time.time()
    c = store.counts(sweep)
    done_before = c["finished"] + c["failed"]
    last, last_counts, last_print = "", "", 0.0
    interrupted = False
    while True:
        try:
            alive = any(p.poll() is None for p in procs)
            line = progress_line(store, sweep, total, started, done_before)
            counts = counts_line(store, sweep, total)
            # On a terminal the line redraws in place; in a log, a line when the counts have
            # changed, at most every LOG_EVERY_S (not one per run), and at least every minute.
            quiet = time.time() - last_print
            if tty:
                print("\r" + line.ljust(len(last)), end="", flush=True)
            elif (counts != last_counts and quiet >= LOG_EVERY_S) or quiet > 60:
                print(line, flush=True)
                last_print, last_counts = time.time(), counts
            last = line
            if not alive:
                break
            _nap(procs, POLL_S)
        except KeyboardInterrupt:
            # The agents got the same SIGINT; wait while they mark their runs crashed.
            interrupted = True
            print("\ninterrupted: waiting for the agents to stop...", flush=True)
            for p in procs:
                p.wait()
    if tty:
        print()
    codes = [p.returncode for p in procs]
    if interrupted:
        return 130
    return max(codes, key=abs) if any(codes) else 0
