"""A command's last words with wandb: its failed request in one line, its service stopped in time.

wandb 0.31 stops its service process (wandb-core) in an atexit hook that sends it a teardown and
waits for it to exit, with no limit. After a request that timed out on the client side (a server
that does not answer, within WANDB_HTTP_TIMEOUT), wandb-core can lose that teardown: its
core-debug log says "processOutgoingData: flush error ... broken pipe" and it never exits. So
`localsweep sync` against a stopped server printed its one line and then hung until CI killed it
at 300 s. Here, 4 at a time against a closed port with a 2 s timeout, 3 of 40 such processes hung
in that hook; the same 40 that called `close_wandb` first all ended, their teardown done. The
limit is for the case that still hangs: wandb-core also leaves when its parent does ("server:
will exit if parent process dies"), so a wait with a limit loses nothing once no run is open.

wandb says such a timeout as "the service process is busy and did not respond in time", which
reads like a fault of this machine; `wandb_error` says what it is: the server did not answer.
"""

from __future__ import annotations

import os
import sys
import threading

from sweepmap.outcome import one_line

TEARDOWN_WAIT_S = 5.0


def close_wandb(seconds: float = TEARDOWN_WAIT_S) -> bool:
    """wandb.teardown(), waited on for at most `seconds`; False if it did not end by then.

    Nothing happens when wandb was never imported or a run is still open: wandb's own atexit
    hook finishes that run and waits for its upload, however long it takes. Teardown
    unregisters that hook first, so a teardown left waiting no longer holds up the exit.
    """
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is not None:
        return True
    # A daemon thread: the interpreter does not wait for it, and wandb-core follows us out.
    ending = threading.Thread(target=wandb.teardown, name="wandb-teardown", daemon=True)
    ending.start()
    ending.join(seconds)
    return not ending.is_alive()


def wandb_error(err: BaseException) -> str:
    """`Type: first line` of a failed wandb request, with what wandb's timeout means and how
    to run without an account."""
    line = one_line(err)
    if "did not respond in time" in line:
        limit = os.environ.get("WANDB_HTTP_TIMEOUT")
        within = f"WANDB_HTTP_TIMEOUT={limit} s" if limit else "WANDB_HTTP_TIMEOUT"
        line += f" (the server did not answer within {within}: is it up and reachable?)"
    elif "No API key configured" in line:  # wandb's default mode is online
        line += " Or set WANDB_MODE=offline (in .env or the environment) to run without an account."
    return line
