"""What an agent says once about the whole sweep (that its --stack trains one run at a time,
and why), for `localsweep run` to print where the user looks.

An agent's output goes to its log (and a stack's to its first run's log); the runner prints
progress and failures only. So such a line is also appended to `STORE/notes/SWEEP.txt`, which
the runner empties as it hands the sweep to its agents and relays line by line, each once.
"""

from __future__ import annotations

from pathlib import Path


def notes_path(root: Path, sweep: str) -> Path:
    return root / "notes" / f"{sweep}.txt"


def say(root: Path, sweep: str, line: str) -> None:
    """Print `line` (into the agent's log) and leave it for the runner."""
    print(line, flush=True)
    path = notes_path(root, sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:  # one short write: whole lines, any agent
        f.write(line.replace("\n", " ") + "\n")


def clear(root: Path, sweep: str) -> None:
    notes_path(root, sweep).unlink(missing_ok=True)


def read(root: Path, sweep: str) -> list[str]:
    """The notes so far, each once, in the order first said."""
    try:
        text = notes_path(root, sweep).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(line for line in text.splitlines() if line.strip()))
