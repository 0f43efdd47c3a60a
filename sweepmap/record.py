"""A run's own record of its results, one JSON line per event, flushed as it goes.

wandb 0.31 offline runs write no readable summary, so every run keeps this record: the local
sweep agent reads it back into its store, and a crash loses at most the epoch in flight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RECORD_ENV = "SWEEPMAP_RECORD"
# A file that exists while the run's claim on its grid point holds (see agents/contract.py).
CLAIM_ENV = "SWEEPMAP_CLAIM"
# A file that its agent writes, with the reason, when the sweep's early_terminate rule stops
# the run: train.py checks for it after each epoch (the in-process agent raises StopEarly).
STOP_ENV = "SWEEPMAP_STOP"


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
