"""Start one grid point exactly as `wandb agent` (wandb 0.31, `wandb_agent.py`) would.

Same command template and macros (via wandb's own helpers), same param file, same variables.
Two differences, both deliberate: `${interpreter}` is this agent's own Python rather than
`python` from PATH (so the project's venv is used even when it is not activated), and
WANDB_SWEEP_ID is never set (a local id makes `wandb sync` fail with "sweep not found"):
the runs carry the sweep's name as their group and tag instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from wandb.sdk.lib.config_util import save_config_file_from_dict

from agents.proc import die_with_parent
from sweepmap.record import RECORD_ENV

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]


def sweep_env(
    sweep: str, run_id: str, param_path: Path, record: Path, wandb_dir: Path
) -> dict[str, str]:
    """The variables a run sees, on top of the agent's own environment."""
    return {
        "WANDB_SWEEP_PARAM_PATH": str(param_path),
        "WANDB_RUN_ID": run_id,
        "WANDB_RUN_GROUP": sweep,
        "WANDB_TAGS": f"{sweep},localsweep",
        "WANDB_DIR": str(wandb_dir),
        RECORD_ENV: str(record),
    }


def write_params(path: Path, point: dict[str, Any]) -> None:
    save_config_file_from_dict(str(path), {k: {"value": v} for k, v in sorted(point.items())})


def build_command(sweep_config: dict[str, Any], point: dict[str, Any]) -> list[str]:
    """The argv wandb agent would run, e.g. `/usr/bin/env python train.py --lr=0.01 ...`."""
    # wandb's launch package builds pydantic models at import (~0.2 s); in-process agents,
    # which only write param files, never load it.
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    template = list(sweep_config.get("command") or DEFAULT_COMMAND)
    args = {k: {"value": v} for k, v in sorted(point.items())}
    macros: dict[str, Any] = create_sweep_command_args({"args": args})
    macros["interpreter"] = [sys.executable]
    macros["program"] = [sweep_config.get("program", "train.py")]
    macros["env"] = ["/usr/bin/env"]
    argv: list[str] = []
    for chunk in create_sweep_command(template):
        chunk = str(chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += [str(c) for c in macros.get(chunk[2:-1]) or []]
        else:
            argv.append(chunk)
    return argv


def start(
    argv: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
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
