"""A command that used wandb ends even when wandb's service never acknowledges the teardown.

CI saw `localsweep sync` against a stopped server print its one line, then hang 300 s in wandb's
atexit hook, which waits for wandb-core to exit without a limit (sweepmap/wandb_exit.py). Here a
real wandb-core is started by `wandb.setup()` and then stopped (SIGSTOP), so it can answer
nothing: without `close_wandb` the process does not end; with it, it ends within the limit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = """\
import os, signal, sys, time
import wandb
from sweepmap.wandb_exit import close_wandb

wandb.setup()  # starts wandb-core, our child
me = str(os.getpid())
core = [int(p) for p in os.listdir("/proc") if p.isdigit()
        and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == me
        and b"wandb-core" in open(f"/proc/{p}/cmdline", "rb").read()]
print(core[0], flush=True)
os.kill(core[0], signal.SIGSTOP)
if sys.argv[1] == "close":
    start = time.monotonic()
    ended = close_wandb(1.0)
    print(ended, round(time.monotonic() - start, 1), flush=True)
"""


def _exit_within(tmp_path: Path, how: str, seconds: float) -> tuple[bool, list[str]]:
    """Run SCRIPT; (it ended within `seconds`, its stdout lines); its wandb-core is killed."""
    tmp_path.mkdir()
    # No WANDB_SERVICE from this pytest process's own wandb: the script must start its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, how], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    core = int(proc.stdout.readline())
    try:
        proc.wait(timeout=seconds)
        ended = True
    except subprocess.TimeoutExpired:
        ended = False
        proc.kill()
        proc.wait()
    finally:
        os.kill(core, signal.SIGKILL)
    return ended, proc.stdout.read().split()


def test_a_teardown_that_never_ends_holds_up_the_exit_only_with_close_wandb(
    tmp_path: Path,
) -> None:
    start = time.monotonic()
    ended, out = _exit_within(tmp_path / "closed", "close", 20)
    assert ended, "the process with close_wandb did not end"
    assert out[0] == "False" and float(out[1]) < 5, out  # the teardown was left after ~1 s
    assert time.monotonic() - start < 20
    # Without it, wandb's own atexit hook waits on the stopped wandb-core: the hang CI saw.
    ended, _ = _exit_within(tmp_path / "plain", "plain", 4)
    assert not ended, "wandb's atexit teardown no longer waits: close_wandb may be unneeded"
