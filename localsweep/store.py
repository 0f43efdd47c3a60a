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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localsweep.db import Database, faults
from localsweep.reap import reap_dead
from localsweep.rows import RERUN, STATES, Run, Sweep, point_key, run_from_row
from sweepmap.sweepfile import is_scan, run_cap


class Store(Database):
    """All reads and writes of the local store; one instance per process (or thread)."""

    # sweeps
    @faults
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
        # The sweep's own file beside the database: what `localsweep repair` rebuilds from.
        copy = self.root / "sweeps" / f"{name}.yaml"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(yaml_text, encoding="utf-8")
        return made

    @faults
    def sweep(self, name: str) -> Sweep:
        row = self.db.execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(s.name for s in self.sweeps()) or "none"
            raise KeyError(f"no sweep {name!r} in {self.path}; sweeps there: {known}")
        return Sweep(row["name"], row["yaml"], json.loads(row["config"]), row["created"])

    @faults
    def sweeps(self) -> list[Sweep]:
        rows = self.db.execute("SELECT name FROM sweeps ORDER BY created").fetchall()
        return [self.sweep(r["name"]) for r in rows]

    # runs
    @faults
    def runs(self, sweep: str) -> list[Run]:
        rows = self.db.execute(
            "SELECT * FROM runs WHERE sweep = ? ORDER BY created, id", (sweep,)
        ).fetchall()
        return [run_from_row(r) for r in rows]

    @faults
    def run(self, run_id: str) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        return run_from_row(row)

    @faults
    def history(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT metrics FROM history WHERE run_id = ? ORDER BY step", (run_id,)
        ).fetchall()
        return [json.loads(r["metrics"]) for r in rows]

    @faults
    def counts(self, sweep: str) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        rows = self.db.execute(
            "SELECT state, COUNT(*) AS n FROM runs WHERE sweep = ? GROUP BY state", (sweep,)
        )
        out.update({r["state"]: r["n"] for r in rows})
        return out

    @faults
    def claimed_by(self, sweep: str, pid: int) -> bool:
        """Whether the process `pid` (on this host) has claimed a run of the sweep."""
        row = self.db.execute("SELECT 1 FROM runs WHERE sweep = ? AND pid = ? AND host = ?",
                              (sweep, pid, socket.gethostname())).fetchone()  # fmt: skip
        return row is not None

    @faults
    def points(self, sweep: str) -> list[dict[str, Any]]:
        """The sweep's grid, in the order the engine hands it out."""
        rows = self.db.execute(
            "SELECT config FROM points WHERE sweep = ? ORDER BY idx", (sweep,)
        ).fetchall()
        return [json.loads(r["config"]) for r in rows]

    @faults
    def stored(self, sweep: str) -> int:
        """Points stored: a grid's all, a scan's proposed so far."""
        row = self.db.execute("SELECT COUNT(*) FROM points WHERE sweep = ?", (sweep,)).fetchone()
        return int(row[0])

    def total(self, sweep: str) -> int:
        """The sweep's size: a grid's points, a scan's run_cap (proposed or not)."""
        config = self.sweep(sweep).config
        return run_cap(config) if is_scan(config) else self.stored(sweep)

    def _unproposed(self, sweep: str) -> int:
        return self.total(sweep) - self.stored(sweep)

    def unstarted(self, sweep: str) -> int:
        """Points that no run of any state has taken yet (a scan's unproposed ones too)."""
        taken = {point_key(r.config) for r in self.runs(sweep)}
        stored = sum(point_key(p) not in taken for p in self.points(sweep))
        return stored + self._unproposed(sweep)

    def remaining(self, sweep: str, retry_failed: bool = False) -> int:
        """Points without a finished (or failed, unless retried) or active run."""
        return len(self._free(sweep, retry_failed, None)) + self._unproposed(sweep)

    def _free(self, sweep: str, retry_failed: bool, since: float | None) -> list[dict[str, Any]]:
        """Points free to claim. A crashed run frees its point at once (a reaped agent's point
        goes to another); an errored one only for agents started after it ended, so that a
        broken environment costs each point one try per `run`, not a loop of tries."""
        rerun = (*RERUN, "failed") if retry_failed else RERUN
        taken = {
            point_key(r.config)
            for r in self.runs(sweep)
            if r.state not in rerun
            or (r.state == "error" and since is not None and (r.ended or 0) >= since)
        }
        return [p for p in self.points(sweep) if point_key(p) not in taken]

    @faults
    def claim(
        self, sweep: str, run_id: str, retry_failed: bool = False, since: float | None = None
    ) -> Run | None:
        """Take the next grid point for this process, or None when the grid is exhausted."""
        with self._write() as db:
            self._reap(db, sweep)
            free = self._free(sweep, retry_failed, since) or self._propose(db, sweep)
            if not free:
                if not self.total(sweep):
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

    @faults
    def claim_cell(
        self, sweep: str, run_ids: Sequence[str], differ: Sequence[str], retry_failed: bool = False,
        since: float | None = None,
    ) -> list[Run]:  # fmt: skip
        """Take the next free grid point and up to len(run_ids) - 1 more free points equal to
        it but in `differ` (a cell's seeds: a stack), in one transaction; [] when none is
        free. A grid's only: a scan's next point depends on the results so far."""
        cell = lambda p: point_key({k: v for k, v in p.items() if k not in differ})  # noqa: E731
        with self._write() as db:
            self._reap(db, sweep)
            free = self._free(sweep, retry_failed, since)
            if not free:
                return []
            chosen = [p for p in free if cell(p) == cell(free[0])][: len(run_ids)]
            now, host, pid = time.time(), socket.gethostname(), os.getpid()
            db.executemany(
                "INSERT INTO runs (id, sweep, config, state, host, pid, heartbeat, created)"
                " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
                [
                    (i, sweep, json.dumps(p), host, pid, now, now)
                    for i, p in zip(run_ids[: len(chosen)], chosen, strict=True)
                ],
            )
        return [self.run(i) for i in run_ids[: len(chosen)]]

    def _propose(self, db: sqlite3.Connection, sweep: str) -> list[dict[str, Any]]:
        """A scan's next point from the engine, stored before it is claimed (in the claim's
        transaction: two agents never get one proposal, and a crashed run's point is stored
        to run again); [] for a grid, or a scan at its run_cap."""
        config = self.sweep(sweep).config
        index = self.stored(sweep)
        if not is_scan(config) or index >= run_cap(config):
            return []
        from localsweep.scan import propose  # the engine: only in a scan's agents

        point = propose(config, sweep, index, self.runs(sweep), self.history)
        db.execute("INSERT INTO points VALUES (?, ?, ?)", (sweep, index, json.dumps(point)))
        return [point]

    def stop_reason(self, sweep: str, run_id: str) -> str | None:
        """Why the scan's early_terminate rule (hyperband) stops this running run now."""
        config = self.sweep(sweep).config
        if "early_terminate" not in config:
            return None
        from localsweep.scan import stop_reason

        return stop_reason(config, run_id, self.runs(sweep), self.history)

    # Every write to a claimed run is fenced: it holds only while the run is still pending or
    # running. An agent that was stopped past the heartbeat timeout and reaped cannot write
    # over what the point's new holder does (`finish` says whether the write held).
    @faults
    def start(self, run_id: str, log_path: str) -> None:
        now = time.time()
        self.db.execute(
            "UPDATE runs SET state = 'running', started = ?, heartbeat = ?, log_path = ?"
            " WHERE id = ? AND state IN ('pending', 'running')",
            (now, now, log_path, run_id),
        )

    @faults
    def heartbeat(self, run_id: str) -> None:
        self.db.execute(
            "UPDATE runs SET heartbeat = ? WHERE id = ? AND state IN ('pending', 'running')",
            (time.time(), run_id),
        )

    @faults
    def log_epoch(self, run_id: str, step: int, metrics: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO history SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs"
            " WHERE id = ? AND state IN ('pending', 'running'))",
            (run_id, step, json.dumps(metrics), run_id),
        )

    @faults
    def finish(
        self,
        run_id: str,
        state: str,
        summary: dict[str, Any],
        runtime: float | None,
        exit_code: int | None,
    ) -> bool:
        """Store how the run ended; False when its claim was reaped (the write is dropped)."""
        if state not in STATES:
            raise ValueError(f"state {state!r}: allowed {STATES}")
        cur = self.db.execute(
            "UPDATE runs SET state = ?, summary = ?, runtime = ?, exit_code = ?, ended = ?"
            " WHERE id = ? AND state IN ('pending', 'running')",
            (state, json.dumps(summary), runtime, exit_code, time.time(), run_id),
        )
        return cur.rowcount == 1

    @faults
    def restore_run(
        self, run_id: str, sweep: str, config: dict[str, Any], state: str,
        summary: dict[str, Any], log: Path | None, created: float,
        history: Sequence[dict[str, Any]],
    ) -> None:  # fmt: skip
        """A run as its own files tell it (`localsweep repair`)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs (id, sweep, config, state, summary, log_path,"
                " created, ended) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, sweep, json.dumps(config), state, json.dumps(summary),
                 str(log) if log else None, created, time.time()),
            )  # fmt: skip
            db.executemany(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?)",
                [(run_id, int(m["epoch"]), json.dumps(m)) for m in history],
            )

    @faults
    def reap(self, sweep: str) -> list[str]:
        """Settle runs whose agent died; returns their ids."""
        with self._write() as db:
            return self._reap(db, sweep)

    def _reap(self, db: sqlite3.Connection, sweep: str) -> list[str]:
        return reap_dead(db, self.root, sweep)
