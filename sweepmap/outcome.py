"""How a run ended: its state, its summary and its exit code, one table for every path.

- finished, exit 0: trained to the end. Kept.
- stopped, exit 0: a scan's run stopped early by its sweep's `early_terminate` (hyperband),
  with the epochs it completed. Kept; never in a heatmap (one heatmap = one budget).
- failed, exit 1: failed on its own merits (a NaN or infinite loss, an error raised by
  training). Kept; `--retry-failed` runs it again.
- invalid, exit 2: bad input (a key, a value, the param file). Nothing was created.
- error, exit 3: could not run for a reason of the environment (data unavailable, a command
  train.py cannot parse, an import error, a full disk). Runs again on the next plain run.
- superseded, exit 1: its claim was reaped while it ran (its agent was stopped past the
  heartbeat timeout) and the point went to another agent. Not stored: the point is theirs.
- crashed, exit 128 + N: stopped by signal N (130: Ctrl-C, 143: SIGTERM), or its agent died.
  Runs again on the next run.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sweepmap import keys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
# Errors that say the run could not run here, not that its configuration trains badly.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (ImportError, OSError)


@dataclass(frozen=True)
class Outcome:
    state: str
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int = EXIT_OK

    @property
    def reason(self) -> str:
        return str(self.summary.get(keys.FAILURE, ""))

    @classmethod
    def failure(cls, state: str, reason: str, exit_code: int) -> Outcome:
        return cls(state, {keys.FAILURE: reason}, exit_code)

    @classmethod
    def interrupted(cls, err: KeyboardInterrupt) -> Outcome:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        return cls.failure("crashed", f"interrupted ({name})", 128 + signum)


class StopEarly(Exception):
    """Raised from a run's epoch callback when its sweep's early_terminate rule stops it; the
    training loop ends the run there, as `stopped`, with the epochs it completed."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a scheduler, an IDE's stop button, a closed terminal) ends a run as Ctrl-C
    does: the run is finished with a non-zero code, never left "running"."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_on(signals: Iterable[int] = (signal.SIGTERM,)) -> None:
    """Raise Interrupted in the main thread on each of `signals`."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    for s in signals:
        signal.signal(s, handler)


def one_line(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
