"""`.env`: one rule for where it is, read by every entry point (train.py, agents, localsweep)."""

from __future__ import annotations

from pathlib import Path

from dotenv import find_dotenv, load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def load_env_file() -> Path | None:
    """Load the first `.env` from the current folder upward, else the project's own; the
    environment wins over the file (override=False). Returns the file read, or None."""
    found = find_dotenv(usecwd=True) or str(PROJECT_ROOT / ".env")
    path = Path(found)
    if not path.is_file():
        return None
    load_dotenv(path, override=False)
    return path
