"""The in-process wandb agent: `wandb.agent(function=...)`, every run in this process.

torch is imported and the data loaded once for all of the agent's runs. Each run goes through
`train.run_point`, as `python train.py` does: validated and its data loaded before
`wandb.init`, so a bad grid point is one line and no run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sweepmap.outcome import EXIT_FAILED, EXIT_USAGE, Interrupted, Outcome
from sweepmap.wandb_exit import wandb_error


def run_inprocess(sweep: str, count: int | None, heartbeat: int) -> int:
    """Run `count` points (all, if None) of the wandb sweep `sweep`; the worst exit code."""
    from agents.warm import warm_up_training

    warm_up_training(service=False)  # torch and the models: once for all runs
    import wandb

    import train
    from agents import wandb_private
    from sweepmap.args import read_param_file
    from sweepmap.config import ConfigError

    entity, project, sweep_id = split_sweep_path(sweep)
    codes: list[int] = []
    stopping = threading.Event()

    def one_run() -> None:
        # wandb.agent has set WANDB_RUN_ID, WANDB_SWEEP_ID and WANDB_SWEEP_PARAM_PATH for this
        # run and torn down the previous run's wandb state, so wandb.init reads them afresh.
        run_id = os.environ.get("WANDB_RUN_ID", "?")
        mine = len(codes)  # the interrupt handler may append its own code meanwhile
        codes.append(EXIT_FAILED)  # until it ends: an exception or a kill leaves this
        try:
            values = read_param_file(os.environ["WANDB_SWEEP_PARAM_PATH"])
            outcome = train.run_point(values)
        except ConfigError as err:  # a param file that is not one
            outcome = Outcome.failure("invalid", f"config error: {err}", EXIT_USAGE)
        except KeyboardInterrupt as err:
            codes[mine] = Outcome.interrupted(err).exit_code
            raise
        except Exception:
            # On Ctrl-C wandb stops this thread with a bare Exception, after run_point has
            # finished the run: that needs no traceback. Anything else does.
            if stopping.is_set():
                return
            raise
        codes[mine] = outcome.exit_code
        if outcome.state in ("invalid", "error"):
            # Returning (not raising) keeps wandb from printing a traceback and from counting
            # it toward its "3 failures in 60 s" stop: the agent goes on to the next point.
            print(f"agents: run {run_id} not created: {outcome.reason}", file=sys.stderr)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # KeyboardInterrupt is what wandb.agent stops on: it ends the run in flight with exit
        # code 1 (not left "running") and returns. SIGTERM gets the same treatment.
        codes.append(128 + signum)
        stopping.set()
        raise Interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, interrupt)
    wandb_private.set_agent_heartbeat(heartbeat)
    try:
        # The function replaces the sweep's program and command: only train.py's sweeps fit.
        program = Path(str(wandb.Api().sweep(sweep).config.get("program", ""))).name
        if program != "train.py":
            print(f"agents: {sweep}: --inprocess runs train.py, but the sweep's "
                  f"program is {program or 'not set'}", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        wandb.agent(sweep_id, function=one_run, entity=entity, project=project, count=count)
    except KeyboardInterrupt:  # before wandb.agent's loop could catch it; `interrupt` noted it
        pass
    except Exception as err:  # unknown sweep, no credentials: one line, not a traceback
        print(f"agents: {sweep}: {wandb_error(err)}", file=sys.stderr)
        return EXIT_FAILED
    return max(codes, default=0)


def split_sweep_path(path: str) -> tuple[str | None, str | None, str]:
    parts = path.strip("/").split("/")
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1], parts[2]
    if len(parts) == 1 and parts[0]:  # entity and project from WANDB_ENTITY / WANDB_PROJECT
        return None, None, parts[0]
    raise ValueError(f"{path!r}: expected ENTITY/PROJECT/SWEEP_ID")
