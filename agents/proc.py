"""Process plumbing shared by the local agents and the GPU launcher."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a child whose parent is SIGKILLed dies with it instead of training on
    # as an orphan, so its grid point can be handed out again without two copies running.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen (Linux only; None elsewhere)."""
    return _die_with_parent if sys.platform == "linux" else None
