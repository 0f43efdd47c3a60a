"""The store's rows and rules: states, schema, the two row types, and how a row is read."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "store.db"
ACTIVE = ("pending", "running")
# error: could not run for a reason of the environment; crashed: interrupted or its agent died.
# Both run again on the next plain run; failed (on its own merits) only with --retry-failed.
# stopped: a scan's run ended early by its sweep's early_terminate rule (done, like finished).
STATES = ("pending", "running", "finished", "failed", "error", "crashed", "stopped")
NOT_DONE = ("failed", "error", "crashed")
DONE = ("finished", "stopped")


def done(counts: dict[str, int]) -> int:
    """Points that need no more runs: finished, or stopped by a scan's early_terminate rule."""
    return sum(counts[s] for s in DONE)


RERUN = ("error", "crashed")
# A run whose agent has not written a heartbeat for this long is taken for dead, even when
# its pid cannot be checked (another host, another pid namespace).
STALE_AFTER_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY, yaml TEXT NOT NULL, config TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, sweep TEXT NOT NULL REFERENCES sweeps(name), config TEXT NOT NULL,
    state TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '{}', runtime REAL, exit_code INTEGER,
    log_path TEXT, host TEXT, pid INTEGER, heartbeat REAL,
    created REAL NOT NULL, started REAL, ended REAL
);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs(sweep, state);
CREATE TABLE IF NOT EXISTS points (
    sweep TEXT NOT NULL REFERENCES sweeps(name), idx INTEGER NOT NULL, config TEXT NOT NULL,
    PRIMARY KEY (sweep, idx)
);
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
"""


@dataclass(frozen=True)
class Sweep:
    name: str
    yaml: str
    config: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Run:
    id: str
    sweep: str
    config: dict[str, Any]
    state: str
    summary: dict[str, Any]
    runtime: float | None
    exit_code: int | None
    log_path: str | None
    created: float
    started: float | None
    ended: float | None


class StoreError(Exception):
    """The store cannot be opened or written: one line naming the path, the fault and the fix."""


def stale_after_s() -> float:
    """SWEEPMAP_STALE_AFTER_S shortens it for the stalled-agent tests."""
    return float(os.environ.get("SWEEPMAP_STALE_AFTER_S") or STALE_AFTER_S)


def corrupt_line(path: Path, why: str) -> str:
    # quick_check's first finding, on one line ("*** in database main ***" heads the list).
    found = [ln.strip() for ln in why.splitlines() if ln.strip() and not ln.startswith("***")]
    return (
        f"{path}: the store is corrupt ({found[0] if found else why.strip()}); the runs' own "
        f"records are intact: rebuild it with `python -m localsweep repair --store {path.parent}`"
    )


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed agent whose parent died too stays a zombie until init reaps it, which some
    container inits do late: os.kill still finds it, yet it runs nothing (Linux's /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or gone meanwhile
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]  # the state follows "(comm)"


def point_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def run_from_row(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        sweep=row["sweep"],
        config=json.loads(row["config"]),
        state=row["state"],
        summary=json.loads(row["summary"]),
        runtime=row["runtime"],
        exit_code=row["exit_code"],
        log_path=row["log_path"],
        created=row["created"],
        started=row["started"],
        ended=row["ended"],
    )
