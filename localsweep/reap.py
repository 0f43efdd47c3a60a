"""The reaper: runs whose agent died (its pid gone on this host, or no heartbeat for
`stale_after_s`) are settled inside a claim's or `reap`'s write transaction."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path

from localsweep.rows import ACTIVE, pid_alive, stale_after_s


def reap_dead(db: sqlite3.Connection, root: Path, sweep: str) -> list[str]:
    """A dead agent's run whose own record shows that it ended (killed between its record
    and the store) is adopted with that result; any other is marked crashed, to run again.
    Either way its claim file goes, so a stalled holder that wakes ends as superseded."""
    from agents.contract import local_identity
    from sweepmap.record import read_ending, read_record

    host, now = socket.gethostname(), time.time()
    rows = db.execute(
        "SELECT id, host, pid, heartbeat FROM runs WHERE sweep = ? AND state IN (?, ?)",
        (sweep, *ACTIVE),
    ).fetchall()
    dead = [
        r["id"]
        for r in rows
        if (r["host"] == host and not pid_alive(r["pid"]))
        or now - (r["heartbeat"] or 0.0) > stale_after_s()
    ]
    for run_id in dead:
        me = local_identity(root, sweep, run_id)
        me.claim_path.unlink(missing_ok=True)
        history, state, summary = read_record(me.record_path)
        ending = read_ending(me.record_path) if state is None else None
        if ending is not None and _wandb_finished(root, run_id):
            state, summary = ending  # killed after wandb finished it, before its record
        if state in ("finished", "failed"):
            for metrics in history:
                db.execute("INSERT OR REPLACE INTO history VALUES (?, ?, ?)",
                           (run_id, int(metrics["epoch"]), json.dumps(metrics)))  # fmt: skip
            summary = {**summary, "adopted": "from its record, after its agent died"}
            db.execute(
                "UPDATE runs SET state = ?, summary = ?, ended = ? WHERE id = ?",
                (state, json.dumps(summary), now, run_id),
            )
            continue
        db.execute(
            "UPDATE runs SET state = 'crashed', ended = ?, summary = json_set(summary,"
            " '$.failure', 'agent died (no heartbeat)') WHERE id = ?",
            (now, run_id),
        )
    return dead


def _wandb_finished(root: Path, run_id: str) -> bool:
    """Whether wandb's own files of a local run hold its exit record."""
    from agents import wandb_private

    found = sorted((root / "wandb").glob(f"*run-*-{run_id}"))
    return bool(found) and wandb_private.offline_run_ended(found[-1]) is True
