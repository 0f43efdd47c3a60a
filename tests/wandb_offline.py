"""Read what wandb logged for an offline run, through the pinned wandb's own reader.

wandb 0.31 has no public Python reader for offline `.wandb` files; `wandb leet inspect
--summary --json` prints a run's config, summary, state and tags. It is marked unstable,
so this helper is tied to wandb==0.31.0 (pyproject.toml).

It reads through `agents.wandb_private.leet_inspect`, which runs the wandb-core binary behind
that command (0.02 s instead of the CLI's 0.9 s); `leet_inspect_cli` runs the command as a
user types it, and tests/test_train.py checks that the two print the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agents.wandb_private import leet_inspect


def offline_run_dir(wandb_root: Path, run_id: str) -> Path:
    found = sorted(wandb_root.glob(f"**/offline-run-*-{run_id}"))
    assert found, f"no offline run {run_id} under {wandb_root}"
    return found[-1]


def leet_inspect_cli(run_dir: Path, *options: str) -> str:
    """`wandb leet inspect OPTIONS RUN_DIR`, the pinned wandb's command."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    argv = [str(wandb_cli), "leet", "inspect", *options, str(run_dir)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


def inspect_run(run_dir: Path) -> dict[str, Any]:
    """Config, summary, state and tags of an offline run."""
    return json.loads(leet_inspect(run_dir, "--summary", "--json"))


def run_record(run_dir: Path) -> dict[str, Any]:
    """The run's `run` record (config, git, host, ...): the first record of that type."""
    lines = leet_inspect(run_dir, "--json").splitlines()
    records = (json.loads(line) for line in lines if line.startswith("{"))
    return next(r["run"] for r in records if r.get("type") == "run")
