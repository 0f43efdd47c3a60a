"""What an in-process agent can pay once, or overlap, rather than pay at every run.

Measured on the 2-core CPU (medians; `make bench` times the warm-up step by step):
- Imports: about 3 s before the first run; torch._dynamo among them, which torch.optim would
  otherwise import at the first optimizer step, inside the first run.
- The first `wandb.init` took 0.55 s, the next ones 0.06 s. Two parts of that can go
  (3.95 -> 3.65 s from start to the end of the first init):
  - it imports wandb's launch package (to look for launch inputs), whose pydantic models read
    their docstrings through `inspect.getmodule`, a scan of `sys.modules` per class: 0.3 s
    once torch's thousands of modules are loaded, 0.1 s before them. So import it first;
  - it starts wandb-core, a separate process: started from a thread at the beginning, its
    boot runs on the other core while this one imports torch.
- Every `wandb.init` lists the installed packages and runs git five times: `once_per_agent`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from agents import wandb_private

# After wandb: (step, module). torchmetrics on its own, since most of its import is scipy.signal
# and matplotlib, which it loads whenever they are installed (Lightning-AI/torchmetrics#3457).
STEPS = (
    ("torch", "torch"),
    ("torchmetrics", "torchmetrics"),
    ("train.py and the models", "train"),
    ("torch._dynamo", "torch._dynamo"),
)
# `localsweep agent -` warms up before it knows its sweep, and its in-process runner warms up
# again when it starts: the second call must cost nothing (no second service thread).
_warmed = False


def preload_wandb() -> None:
    """Import wandb and what its first `wandb.init` imports. Call before importing torch."""
    importlib.import_module("wandb")
    wandb_private.preload_first_init()


def start_wandb_service() -> threading.Thread:
    """Start wandb's service in a thread; join the thread before the first `wandb.init`."""
    import wandb

    thread = threading.Thread(target=wandb.setup, name="wandb-setup", daemon=True)
    thread.start()
    return thread


def warm_up_training(service: bool = True, lap: Callable[[str], None] | None = None) -> None:
    """Everything an in-process agent needs before its first run, in the cheap order:
    wandb and its first-init imports, wandb's service (in the background, unless `service`
    is False), then torch, torchmetrics and the models, and torch._dynamo, which torch.optim
    would otherwise import at the first optimizer step (about 0.9 s).

    `wandb.agent(function=...)` tears the service down before every run, so its agents gain
    nothing from starting one early: they pass service=False. `lap(step)` is called as each
    step ends, for the benchmark's breakdown of this start-up (bench/facts.py). Once it has
    run in a process, later calls return at once.
    """
    global _warmed
    if _warmed:
        return
    done = lap or (lambda step: None)
    preload_wandb()
    done("wandb")
    started = start_wandb_service() if service else None
    for step, module in STEPS:
        importlib.import_module(module)
        done(step)
    if started is not None:
        started.join()
        done("wandb service (the rest of its start)")
    _warmed = True


def once_per_agent() -> dict[str, Any]:
    """What wandb works out afresh at every `wandb.init`, worked out once for an agent's life.

    - The installed packages, for the run's requirements.txt: listed once, not at every init
      (~60 ms an init here); an agent's environment does not change under it.
    - The git state: 5 `git` processes an init (~6 ms here). The agent imported its code once,
      at start, so the commit at start is the one every run trains with, even if the
      repository moves on while the sweep runs.

    Returns keyword arguments for each run's `wandb.Settings`.
    """
    wandb_private.cache_package_list()
    return wandb_private.git_settings() or {}
