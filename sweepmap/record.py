"""A run's own record of its results, one JSON line per event, flushed as it goes.

wandb 0.31 offline runs write no readable summary, so every run keeps this record: the local
sweep agent reads it back into its store, and a crash loses at most the epoch in flight.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RECORD_ENV = "SWEEPMAP_RECORD"
# A file that exists while the run's claim on its grid point holds (see agents/contract.py).
CLAIM_ENV = "SWEEPMAP_CLAIM"
# A file that its agent writes, with the reason, when the sweep's early_terminate rule stops
# the run: train.py checks for it after each epoch (the in-process agent raises StopEarly).
STOP_ENV = "SWEEPMAP_STOP"
# In a scan with early_terminate, run in its own process: a file in which its agent writes the
# last epoch it has judged. train.py waits for it after each epoch before it checks the stop
# file, so a stop takes effect at the epoch the rule named, as in-process, not one later.
VERDICT_ENV = "SWEEPMAP_VERDICT"


class Record:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def _write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def epoch(self, metrics: dict[str, Any]) -> None:
        self._write({"history": metrics})

    def ending(self, state: str, summary: dict[str, Any]) -> None:
        """The outcome, written just before the wandb run is finished: a run killed while
        wandb finishes it is then known by its result (see `read_ending`)."""
        self._write({"ending": {"state": state, "summary": summary}})

    def end(self, state: str, summary: dict[str, Any]) -> None:
        self._write({"state": state, "summary": summary})
        self._file.close()


def record_from_env() -> Record | None:
    path = os.environ.get(RECORD_ENV)
    return Record(path) if path else None


def read_record(path: Path | str) -> tuple[list[dict[str, Any]], str | None, dict[str, Any]]:
    """(history, final state or None if the run never ended, summary)."""
    history: list[dict[str, Any]] = []
    state: str | None = None
    summary: dict[str, Any] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return history, state, summary
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if "history" in entry:
            history.append(entry["history"])
        elif "state" in entry:
            state, summary = entry["state"], entry["summary"]
    return history, state, summary


def read_ending(path: Path | str) -> tuple[str, dict[str, Any]] | None:
    """The outcome a run wrote just before finishing its wandb run, if it got that far."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "ending" in entry:
            return entry["ending"]["state"], entry["ending"]["summary"]
    return None


# How long a run waits for its agent's verdict on an epoch before it goes on without it: the
# agent judges within milliseconds; this only bounds a stuck one (a dead one takes its runs).
VERDICT_WAIT_S = 60.0


def write_verdict(path: Path, epoch: int) -> None:
    """The agent has judged the run's epochs up to `epoch` (its stop file, if any, is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(epoch), encoding="utf-8")
    tmp.replace(path)  # whole or not at all: the run reads it as it is replaced


def await_verdict(path: Path, epoch: int, wait_s: float = VERDICT_WAIT_S) -> bool:
    """Wait until the agent has judged `epoch`; False, said on stderr, if it has not within
    `wait_s` (the run then goes on with this epoch, as it would without a verdict file)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if int(path.read_text(encoding="utf-8") or 0) >= epoch:
                return True
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.005)
    print(f"sweepmap: no verdict from the agent on epoch {epoch} in {wait_s:.0f} s; going on",
          file=sys.stderr, flush=True)  # fmt: skip
    return False
