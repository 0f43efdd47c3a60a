"""`localsweep repair`: rebuild a store that cannot be read from what every run keeps itself.

The database is a cache of files written beside it: each sweep's YAML (`sweeps/NAME.yaml`),
each run's param file (`params/NAME/config-ID.yaml`) and its record, one JSON line per epoch
and its end (`logs/NAME/ID.jsonl`). The damaged database is moved aside, never deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

from localsweep.rows import DB_NAME, STATES
from localsweep.store import Store
from sweepmap.args import read_param_file
from sweepmap.record import read_record


def repair(root: Path) -> str:
    """Rebuild `root/store.db`; returns a one-line account of what was recovered."""
    from localsweep.grid import all_points, check_sweep
    from sweepmap.sweepfile import read_sweep

    copies = sorted((root / "sweeps").glob("*.yaml"))
    if not copies:
        raise KeyError(f"{root}: no sweep files under {root / 'sweeps'}: nothing to rebuild from")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = []
    for suffix in ("", "-wal", "-shm"):
        old = root / f"{DB_NAME}{suffix}"
        if old.exists():
            old.rename(root / f"{DB_NAME}{suffix}.damaged-{stamp}")
            aside.append(old.name)
    store = Store(root)
    runs = finished = 0
    for copy in copies:
        name = copy.stem
        text, config = read_sweep(copy)
        check_sweep(config, str(copy))
        store.create_sweep(name, text, config, all_points(config))
        for params in sorted((root / "params" / name).glob("config-*.yaml")):
            run_id = params.stem.removeprefix("config-")
            state = _restore(store, name, run_id, params, root / "logs" / name)
            runs += 1
            finished += state == "finished"
    store.close()
    kept = f"; the damaged files are kept as {', '.join(aside)}.damaged-{stamp}" if aside else ""
    counts = f"{len(copies)} sweep(s), {runs} run(s), {finished} finished"
    return f"rebuilt {root / DB_NAME}: {counts}{kept}"


def _restore(store: Store, sweep: str, run_id: str, params: Path, logs: Path) -> str:
    history, state, summary = read_record(logs / f"{run_id}.jsonl")
    if state not in STATES or state in ("pending", "running"):
        state, summary = "crashed", {**summary, "failure": "no end in its record (repair)"}
    log = logs / f"{run_id}.log"
    config = read_param_file(str(params))
    store.restore_run(run_id, sweep, config, state, summary, log if log.exists() else None,
                      params.stat().st_mtime, history)  # fmt: skip
    return state
