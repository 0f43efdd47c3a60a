"""The local sweep store: one SQLite file shared by every agent on a machine.

SQLite in WAL mode lets several agent processes read while one writes; a claim runs inside
`BEGIN IMMEDIATE`, so two agents can never take the same grid point. The grid comes from
wandb's engine once, when the sweep is created, and is stored in the engine's order; a claim
takes the first stored point without a run, as the engine's own `next_run` would (crashed runs
do not count, so their points are handed out again). Agents never load the engine itself:
its search modules import scipy.stats, ~0.5 s of every agent's start-up.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "store.db"
ACTIVE = ("pending", "running")
# error: could not run for a reason of the environment; crashed: interrupted or its agent died.
# Both run again on the next plain run; failed (on its own merits) only with --retry-failed.
STATES = ("pending", "running", "finished", "failed", "error", "crashed")
NOT_DONE = ("failed", "error", "crashed")
RERUN = ("error", "crashed")
# A run whose agent has not written a heartbeat for this long is taken for dead, even when
# its pid cannot be checked (another host, another pid namespace).
STALE_AFTER_S = 60.0

_SCHEMA = """
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


class Store:
    """All reads and writes of the local store; one instance per process (or thread)."""

    def __init__(self, root: Path | str, create: bool = True) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME
        if not create and not self.path.is_file():
            raise KeyError(
                f"no store in {self.root} (no {DB_NAME}); `localsweep run FILE` makes one"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in claims).
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: a commit survives a crashed process (not a power cut) without an fsync.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # sweeps
    def create_sweep(
        self,
        name: str,
        yaml_text: str,
        config: dict[str, Any],
        points: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """True when created, False when a sweep of that name was already there.

        `points` is the grid in the engine's order (`grid.all_points`); on a resume the stored
        grid is kept, since the name is a hash of the config that made it.
        """
        with self._write() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?)",
                (name, yaml_text, json.dumps(config), time.time()),
            )
            db.executemany(
                "INSERT OR IGNORE INTO points VALUES (?, ?, ?)",
                [(name, i, json.dumps(p)) for i, p in enumerate(points)],
            )
            made = cur.rowcount == 1
            if not made:  # the same config: a comment-only edit still changes the question
                db.execute("UPDATE sweeps SET yaml = ? WHERE name = ?", (yaml_text, name))
            return made

    def sweep(self, name: str) -> Sweep:
        row = self.db.execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(s.name for s in self.sweeps()) or "none"
            raise KeyError(f"no sweep {name!r} in {self.path}; sweeps there: {known}")
        return Sweep(row["name"], row["yaml"], json.loads(row["config"]), row["created"])

    def sweeps(self) -> list[Sweep]:
        rows = self.db.execute("SELECT name FROM sweeps ORDER BY created").fetchall()
        return [self.sweep(r["name"]) for r in rows]

    # runs
    def runs(self, sweep: str) -> list[Run]:
        rows = self.db.execute(
            "SELECT * FROM runs WHERE sweep = ? ORDER BY created, id", (sweep,)
        ).fetchall()
        return [_run(r) for r in rows]

    def run(self, run_id: str) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        return _run(row)

    def history(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT metrics FROM history WHERE run_id = ? ORDER BY step", (run_id,)
        ).fetchall()
        return [json.loads(r["metrics"]) for r in rows]

    def counts(self, sweep: str) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        rows = self.db.execute(
            "SELECT state, COUNT(*) AS n FROM runs WHERE sweep = ? GROUP BY state", (sweep,)
        )
        out.update({r["state"]: r["n"] for r in rows})
        return out

    def points(self, sweep: str) -> list[dict[str, Any]]:
        """The sweep's grid, in the order the engine hands it out."""
        rows = self.db.execute(
            "SELECT config FROM points WHERE sweep = ? ORDER BY idx", (sweep,)
        ).fetchall()
        return [json.loads(r["config"]) for r in rows]

    def total(self, sweep: str) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM points WHERE sweep = ?", (sweep,)).fetchone()
        return int(row[0])

    def unstarted(self, sweep: str) -> int:
        """Grid points that no run of any state has taken yet."""
        taken = {_key(r.config) for r in self.runs(sweep)}
        return sum(_key(p) not in taken for p in self.points(sweep))

    def remaining(self, sweep: str, retry_failed: bool = False) -> int:
        """Grid points without a finished (or failed, unless retried) or active run."""
        return len(self._free(sweep, retry_failed, None))

    def _free(self, sweep: str, retry_failed: bool, since: float | None) -> list[dict[str, Any]]:
        """Points free to claim. A run that errored or crashed frees its point again, unless it
        ended after `since` (the claiming agent's start): each point gets one try per run."""
        rerun = (*RERUN, "failed") if retry_failed else RERUN
        taken = {
            _key(r.config)
            for r in self.runs(sweep)
            if r.state not in rerun or (since is not None and (r.ended or 0) >= since)
        }
        return [p for p in self.points(sweep) if _key(p) not in taken]

    def claim(
        self, sweep: str, run_id: str, retry_failed: bool = False, since: float | None = None
    ) -> Run | None:
        """Take the next grid point for this process, or None when the grid is exhausted."""
        with self._write() as db:
            self._reap(db, sweep)
            free = self._free(sweep, retry_failed, since)
            if not free:
                if not self.total(sweep):
                    self.sweep(sweep)  # a clear KeyError for an unknown name
                    raise KeyError(f"sweep {sweep!r} has no grid stored: run `localsweep create`")
                return None
            point = free[0]
            now = time.time()
            db.execute(
                "INSERT INTO runs (id, sweep, config, state, host, pid, heartbeat, created)"
                " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
                (run_id, sweep, json.dumps(point), socket.gethostname(), os.getpid(), now, now),
            )
        return self.run(run_id)

    def start(self, run_id: str, log_path: str) -> None:
        now = time.time()
        self.db.execute(
            "UPDATE runs SET state = 'running', started = ?, heartbeat = ?, log_path = ?"
            " WHERE id = ?",
            (now, now, log_path, run_id),
        )

    def heartbeat(self, run_id: str) -> None:
        self.db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    def log_epoch(self, run_id: str, step: int, metrics: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO history VALUES (?, ?, ?)", (run_id, step, json.dumps(metrics))
        )

    def finish(
        self,
        run_id: str,
        state: str,
        summary: dict[str, Any],
        runtime: float | None,
        exit_code: int | None,
    ) -> None:
        if state not in STATES:
            raise ValueError(f"state {state!r}: allowed {STATES}")
        self.db.execute(
            "UPDATE runs SET state = ?, summary = ?, runtime = ?, exit_code = ?, ended = ?"
            " WHERE id = ?",
            (state, json.dumps(summary), runtime, exit_code, time.time(), run_id),
        )

    def reap(self, sweep: str) -> list[str]:
        """Mark runs whose agent died as crashed; returns their ids."""
        with self._write() as db:
            return self._reap(db, sweep)

    def _reap(self, db: sqlite3.Connection, sweep: str) -> list[str]:
        host, now = socket.gethostname(), time.time()
        rows = db.execute(
            "SELECT id, host, pid, heartbeat FROM runs WHERE sweep = ? AND state IN (?, ?)",
            (sweep, *ACTIVE),
        ).fetchall()
        dead = [
            r["id"]
            for r in rows
            if (r["host"] == host and not _alive(r["pid"]))
            or now - (r["heartbeat"] or 0.0) > STALE_AFTER_S
        ]
        for run_id in dead:
            db.execute(
                "UPDATE runs SET state = 'crashed', ended = ?, summary = json_set(summary,"
                " '$.failure', 'agent died (no heartbeat)') WHERE id = ?",
                (now, run_id),
            )
        return dead


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def _run(row: sqlite3.Row) -> Run:
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
