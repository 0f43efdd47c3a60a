"""The wandb agent contract (wandb 0.31, `wandb_agent.py`), in one place.

What a run is told: its identity (run id, group, tags, wandb dir, param file, record), which
renders both as the variables `wandb agent` sets for a child process and as the arguments an
in-process agent passes to `wandb.init` (wandb reads WANDB_* variables only at its setup).
How a run is started: the sweep's command template with wandb's own macros. What its exit
code says: the table below, shared by train.py, the agents and localsweep.

Two deliberate differences from `wandb agent`: `${interpreter}` is the agent's own Python
rather than `python` from PATH (so the project's venv is used even when it is not activated),
and local runs never get WANDB_SWEEP_ID (an id the server does not know makes `wandb sync`
fail with "sweep not found"): they carry the sweep's name as group and tag instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import wandb_private
from sweepmap.record import CLAIM_ENV, RECORD_ENV, STOP_ENV, VERDICT_ENV
from sweepmap.sweepfile import encode

# Exit codes of train.py, of every agent and of `localsweep run`.
EXIT_OK = 0  # every run (every grid point) finished
EXIT_FAILED = 1  # a run failed on its own merits (NaN loss, an error in training), or points
#                  of the grid did not finish
EXIT_USAGE = 2  # bad input (file, key, value): refused before anything was written
EXIT_ENVIRONMENT = 3  # could not run for a reason of the environment (data unavailable,
#                       command unparseable, import error): the point runs again on resume
# 128 + N: stopped by signal N (130: Ctrl-C, 143: SIGTERM); the run runs again on resume.

DEFAULT_STORE = Path(".sweepmap")
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
# The macros `wandb agent` 0.31 fills in; any other `${...}` it silently drops.
MACROS = (
    "env", "interpreter", "program", "args", "args_no_equals", "args_no_hyphens",
    "args_no_boolean_flags", "args_json", "args_json_file", "args_append_hydra",
    "args_override_hydra",
)  # fmt: skip
_MACRO = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is and where it writes: one object, two renderings."""

    run_id: str
    group: str
    wandb_dir: Path
    param_path: Path
    record_path: Path
    # Exists while the run's claim holds; the local store's reaper removes it, and a run that
    # finds it gone at its end was superseded (its point handed to another agent).
    claim_path: Path
    # Written by the agent when a scan's early_terminate rule stops the run (process mode).
    stop_path: Path | None = None
    # Written by the agent after it has judged each epoch (process mode, early_terminate).
    verdict_path: Path | None = None

    @property
    def tags(self) -> list[str]:
        return [self.group, "localsweep"]

    def env(self) -> dict[str, str]:
        """The variables a child process sees, on top of the agent's own environment."""
        return (
            {
                "WANDB_SWEEP_PARAM_PATH": str(self.param_path),
                "WANDB_RUN_ID": self.run_id,
                "WANDB_RUN_GROUP": self.group,
                "WANDB_TAGS": ",".join(self.tags),
                "WANDB_DIR": str(self.wandb_dir),
                RECORD_ENV: str(self.record_path),
                CLAIM_ENV: str(self.claim_path),
            }
            | ({STOP_ENV: str(self.stop_path)} if self.stop_path else {})
            | ({VERDICT_ENV: str(self.verdict_path)} if self.verdict_path else {})
        )

    def init_kwargs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The same, as `wandb.init` arguments, for a run in an agent whose wandb is set up."""
        import wandb

        return {
            "id": self.run_id,
            "group": self.group,
            "tags": self.tags,
            "dir": str(self.wandb_dir),
            "settings": wandb.Settings(sweep_param_path=str(self.param_path), **settings),
        }


def local_identity(store: Path, sweep: str, run_id: str) -> RunIdentity:
    """A local sweep's run: its files under the store, its wandb runs in the store too."""
    return RunIdentity(
        run_id=run_id,
        group=sweep,
        wandb_dir=store,
        param_path=store / "params" / sweep / f"config-{run_id}.yaml",
        record_path=store / "logs" / sweep / f"{run_id}.jsonl",
        claim_path=store / "claims" / sweep / run_id,
        stop_path=store / "stops" / sweep / run_id,
    )


def write_params(path: Path, point: Mapping[str, Any]) -> None:
    """The param file, as `wandb agent` writes it (keys sorted, `{value: v}` each)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wandb_private.save_param_file(str(path), encode(dict(sorted(point.items()))))


def unknown_macros(command: list[Any]) -> list[str]:
    """The `${...}` of a command template that `wandb agent` would not fill in."""
    found = (m for chunk in command for m in _MACRO.findall(str(chunk)))
    return [m for m in found if m not in MACROS and not m.startswith("envvar:")]


def render_command(
    sweep_config: Mapping[str, Any], point: Mapping[str, Any], json_file: Path
) -> list[str]:
    """The argv `wandb agent` would run, e.g. `/usr/bin/env python train.py --lr=0.01 ...`;
    `${args_json_file}` is written to `json_file` when the command names it."""
    template = [str(c) for c in sweep_config.get("command") or DEFAULT_COMMAND]
    macros = wandb_private.command_macros(encode(dict(sorted(point.items()))))
    if "${args_json_file}" in template:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(macros["args_json"][0])
    macros |= {
        "interpreter": [sys.executable],
        "program": [str(sweep_config.get("program", "train.py"))],
        "env": ["/usr/bin/env"],
        "args_json_file": [str(json_file)],
    }
    argv: list[str] = []
    for chunk in wandb_private.expand_envvars(template):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += [str(c) for c in macros.get(chunk[2:-1]) or []]
        else:
            argv.append(chunk)
    return argv
