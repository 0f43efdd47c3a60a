"""Process plumbing shared by the local agents, the local runner and the GPU launcher."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a child whose parent is SIGKILLed dies with it instead of training on
    # as an orphan, so its grid point can be handed out again without two copies running.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen (Linux only; None elsewhere)."""
    return _die_with_parent if sys.platform == "linux" else None


def start_logged(
    argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """One run's process, its output appended to its log, dying with this process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
        )
