"""Named crash points, for the fault-injection tests: SWEEPMAP_FAULT=NAME kills the process
with SIGKILL when it gets there, exactly inside the window a test wants to prove safe."""

from __future__ import annotations

import os
import signal

FAULT_ENV = "SWEEPMAP_FAULT"


def crash_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
