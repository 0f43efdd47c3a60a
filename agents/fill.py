"""`python -m agents fill ENTITY/PROJECT/SWEEP_ID [agent options]`: run the grid's holes.

wandb's grid search counts every run of a sweep as "seen", whatever its state, so a failed,
crashed or never-started point is never handed out again (wandb/wandb#6594, #1787, #5197).

How the holes get run: a new sweep of the same config, with the old sweep's finished runs as
its prior runs (`wandb.sweep(config, prior_runs=[...])`, what `wandb sweep --prior_run` sends).
The server's own grid engine then skips exactly the finished points and hands out the rest,
to ordinary agents on any number of machines. The local controller (`controller: {type:
local}`) was the other way wandb offers; it was not taken because it needs a sweep created
local from the start (the sweep to fill is not), a controller process kept alive beside the
agents, and it schedules one point at a time, picked by the same engine that skips failed runs.

The new sweep holds every finished run plus the filled ones: analyse it, not the old one.
Points whose run is still running count as taken (not re-run); their runs join the new sweep.
The agent options are the launcher's (`python -m agents --help`); with none, one agent here.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweepmap.envfile import load_env_file
from sweepmap.outcome import EXIT_USAGE
from sweepmap.sweepfile import grid_size
from sweepmap.wandb_exit import wandb_error

with warnings.catch_warnings():
    # sweeps 0.2.0 uses pydantic v1 config names; pydantic v2 warns once at import.
    warnings.simplefilter("ignore")
    import sweeps

TAKEN = ("finished", "running")  # a point with a run in one of these states is no hole


@dataclass(frozen=True)
class RunInfo:
    """What fill needs of one run of the sweep: its id, state, config (plain values), group."""

    name: str
    state: str
    config: dict[str, Any]
    group: str | None = None


@dataclass(frozen=True)
class FillPlan:
    config: dict[str, Any]  # the sweep's config, as the server holds it
    taken: list[RunInfo]  # the new sweep's prior runs
    holes: list[dict[str, Any]]  # grid points with no finished or running run, plain values

    @property
    def group(self) -> str | None:
        """The taken runs' group when they share one (synced local runs do), else None."""
        groups = {r.group for r in self.taken}
        return groups.pop() if len(groups) == 1 else None


def plan_fill(config: dict[str, Any], runs: Sequence[RunInfo]) -> FillPlan:
    """The holes, found by wandb's own grid engine given only the taken runs: the very points
    the new sweep's engine will hand out, in its order."""
    if config.get("method") != "grid":
        raise ValueError(f"method {config.get('method')!r}: fill is for grid sweeps")
    taken = [r for r in runs if r.state in TAKEN]
    seen = [
        sweeps.SweepRun(
            name=r.name, state=r.state, config={k: {"value": v} for k, v in r.config.items()}
        )
        for r in taken
    ]
    nxt = sweeps.next_runs(config, seen, n=grid_size(config) + 1)
    holes = [{k: v["value"] for k, v in run.config.items()} for run in nxt if run is not None]
    return FillPlan(config, taken, holes)


def read_sweep_runs(path: str) -> tuple[dict[str, Any], list[RunInfo]]:
    """(config, runs) of the cloud sweep ENTITY/PROJECT/SWEEP_ID, through the public API."""
    import wandb

    entity, project, sweep_id = _split(path)
    api = wandb.Api()  # its timeout: WANDB_HTTP_TIMEOUT (19 s by default)
    config = dict(api.sweep(f"{entity}/{project}/{sweep_id}").config)
    # api.sweep(...).runs pages 10 at a time: one filtered listing instead.
    listing = api.runs(f"{entity}/{project}", filters={"sweep": sweep_id}, per_page=200, lazy=False)
    runs = [RunInfo(r.id, r.state, dict(r.config), r.group) for r in listing]
    return config, runs


def create_fill_sweep(path: str, plan: FillPlan) -> str:
    """The new sweep (same config, the taken runs as prior runs); ENTITY/PROJECT/NEW_ID."""
    import wandb

    entity, project, sweep_id = _split(path)
    config = dict(plan.config)
    # A name the UI shows beside the first sweep's: which sweep this one fills.
    config["name"] = f"{config.get('name') or sweep_id} (fill of {sweep_id})"
    new_id = wandb.sweep(
        config, entity=entity, project=project, prior_runs=[r.name for r in plan.taken]
    )
    return f"{entity}/{project}/{new_id}"


def _split(path: str) -> tuple[str, str, str]:
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) == 4 and parts[2] == "sweeps":  # as in the web URL
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) != 3:
        raise ValueError(f"{path!r}: expected ENTITY/PROJECT/SWEEP_ID")
    return parts[0], parts[1], parts[2]


def main(argv: Sequence[str]) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser("python -m agents fill", None, __doc__, formatter_class=raw)
    p.add_argument("sweep", help="ENTITY/PROJECT/SWEEP_ID of the grid to fill")
    p.add_argument("--dry-run", action="store_true", help="list the holes; create nothing")
    p.add_argument("--no-agents", action="store_true", help="create the sweep; start no agent")
    args, agent_args = p.parse_known_args(argv)
    load_env_file()
    try:
        _split(args.sweep)
    except ValueError as err:
        print(f"agents fill: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config, runs = read_sweep_runs(args.sweep)
        plan = plan_fill(config, runs)
    except ValueError as err:
        print(f"agents fill: {args.sweep}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # no key, no network, unknown sweep: one line, not a traceback
        print(f"agents fill: {args.sweep}: {wandb_error(err)}", file=sys.stderr)
        return EXIT_USAGE  # python -m agents then stops wandb's service in time (close_wandb)
    counts = {s: sum(r.state == s for r in runs) for s in sorted({r.state for r in runs})}
    print(f"agents fill: {args.sweep}: {grid_size(config)} points, runs by state {counts}; "
          f"{len(plan.holes)} without a finished or running run", flush=True)  # fmt: skip
    for point in plan.holes:
        print("  hole: " + ", ".join(f"{k}={v}" for k, v in sorted(point.items())), flush=True)
    if not plan.holes or args.dry_run:
        return 0
    try:
        new = create_fill_sweep(args.sweep, plan)
    except Exception as err:
        print(f"agents fill: {args.sweep}: creating the fill sweep: {wandb_error(err)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    print(f"agents fill: the holes are sweep {new} (with the {len(plan.taken)} taken runs); "
          f"more agents on other machines: python -m agents {new}", flush=True)  # fmt: skip
    if args.no_agents:
        return 0
    if plan.group:  # the filled runs join the group of the runs they complete
        os.environ.setdefault("WANDB_RUN_GROUP", plan.group)
    from agents.launcher import main as launch_main

    return launch_main([new, *agent_args])
