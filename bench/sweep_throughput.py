"""Sweep throughput: the local runner against one process per run, as `wandb agent` runs it.

    python -m bench.sweep_throughput --sweep sweeps/lr_optimizer.yaml --out bench/results.md
    ... --baseline-runs 12   # the process-per-run rows on the first 12 grid points only
    ... --scaling            # also wall time against grid size, 1 and 2 in-process agents
    ... --repeats 5          # the in-process rows 5 times each (default 3), the median kept

Every configuration runs the real command (`python -m localsweep run SWEEP --agents N --mode M`)
in a fresh temporary store with wandb offline under that folder, so nothing lands in the repo.
Wall time is the clock around that command (Python start-up, imports, data, wandb service and
the store included); training time is each run's `train_time` in the store (the loop alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.facts import children_cpu_s, machine_busy_s, machine_facts, startup_floor
from bench.report import (
    SCALING_AGENTS,
    old_scaling,
    publish,
    report,
    scaling_section,
    table,
)
from localsweep.grid import load_sweep
from localsweep.store import Store
from sweepmap import keys
from sweepmap.sweepfile import grid_size, sweep_name

ROOT = Path(__file__).resolve().parents[1]
# (mode, agents): the local runner with 1 and 2 agents; one process per run with 1 agent (what
# one `wandb agent` does) and with 2 (like for like with two local agents).
CONFIGS = (("inprocess", 1), ("inprocess", 2), ("process", 1), ("process", 2))
SCALING_SIZES = 3  # the full grid, then halved twice


@dataclass(frozen=True)
class Measurement:
    mode: str
    agents: int
    grid: int  # points in the sweep's grid
    runs: int  # runs that finished
    wall_s: float
    train_s: float  # sum of the runs' train_time
    other_cores: float  # CPU of processes outside this benchmark, per second of wall: noise
    accuracy: dict[str, float] = field(default_factory=dict)  # point -> final val/accuracy
    stacked: int = 0  # finished runs that trained in a stack of 2 or more (their summary says)

    @property
    def runs_per_min(self) -> float:
        return 60.0 * self.runs / self.wall_s

    @property
    def overhead(self) -> float:
        return overhead_share(self.wall_s, self.train_s, self.agents)

    @property
    def overhead_per_run_s(self) -> float:
        """Agent-seconds outside training loops, per run."""
        return (self.agents * self.wall_s - self.train_s) / self.runs


def overhead_share(wall_s: float, train_s: float, agents: int) -> float:
    """Share of the agent-seconds (agents x wall) not spent in training loops."""
    agent_s = agents * wall_s
    return (agent_s - train_s) / agent_s


def bench_env(tmp: Path) -> dict[str, str]:
    """This environment with wandb offline and every wandb folder under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(tmp),
        WANDB_CONFIG_DIR=str(tmp / "wandb-config"),
        WANDB_CACHE_DIR=str(tmp / "wandb-cache"),
        WANDB_DATA_DIR=str(tmp / "wandb-data"),
    )
    return env


def measure(
    sweep: Path, mode: str, agents: int, runs: int | None = None, stack: int = 0
) -> Measurement:
    """Run `sweep` in a fresh store; `runs` limits it to that many first grid points, `stack`
    has each agent train up to that many runs at a time as one stacked model."""
    _, config = load_sweep(sweep)
    name = sweep_name(sweep, config)
    tmp = Path(tempfile.mkdtemp(prefix="sweepmap-bench-"))
    try:
        env, store = bench_env(tmp), str(tmp / "store")
        cli = [sys.executable, "-m", "localsweep"]
        stacking = ["--stack", str(stack)] if stack else []
        busy0, ours0 = machine_busy_s(), children_cpu_s()
        start = time.perf_counter()
        if runs is None:
            _run_all([[*cli, "run", str(sweep), "--agents", str(agents), "--mode", mode,
                       "--store", store, *stacking]], env, tmp)  # fmt: skip
        else:
            # `run` takes no run limit: create the sweep, then agents that stop after a share.
            _run_all([[*cli, "create", str(sweep), "--store", store]], env, tmp)
            shares = [runs // agents + (i < runs % agents) for i in range(agents)]
            agent = [*cli, "agent", name, "--store", store, "--mode", mode, *stacking, "--count"]
            _run_all([[*agent, str(n)] for n in shares if n], env, tmp)
        wall = time.perf_counter() - start
        other = (machine_busy_s() - busy0) - (children_cpu_s() - ours0)
        db = Store(store)
        finished = [r for r in db.runs(name) if r.state == "finished"]
        db.close()
        return Measurement(
            mode=mode,
            agents=agents,
            grid=grid_size(config),
            runs=len(finished),
            wall_s=wall,
            train_s=sum(float(r.summary[keys.TRAIN_TIME]) for r in finished),
            other_cores=max(other, 0.0) / wall,
            accuracy={_point(r.config): float(r.summary[keys.VAL_ACCURACY]) for r in finished},
            stacked=sum(1 for r in finished if int(r.summary.get(keys.STACKED) or 0) >= 2),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_all(commands: list[list[str]], env: dict[str, str], tmp: Path) -> None:
    """Start the commands side by side and wait for all; a failure raises with its log's tail."""
    logs = [tmp / f"cmd-{time.monotonic_ns()}-{i}.log" for i in range(len(commands))]
    procs = []
    for argv, log in zip(commands, logs, strict=True):
        with log.open("wb") as out:
            procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out))
    codes = [proc.wait() for proc in procs]
    for argv, log, code in zip(commands, logs, codes, strict=True):
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{tail}")


def median_run(measurements: Sequence[Measurement]) -> Measurement:
    """The measurement with the median overhead share (the upper one of an even count).

    By share, not wall time: a ratio of the same run's times, it shrugs off the drift in the
    machine's speed between rounds, which moved the training time of one row by 6% here.
    """
    return sorted(measurements, key=lambda m: m.overhead)[len(measurements) // 2]


def _point(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def smaller_grids(config: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """`config`, then copies with one `values` list cut to its first half, each from the one
    before; an even-length list first, so that the grid halves exactly when it can."""
    grids = [config]
    for _ in range(count - 1):
        smaller = json.loads(json.dumps(grids[-1]))
        lists = [
            s["values"] for s in smaller["parameters"].values() if len(s.get("values", [])) > 1
        ]
        if not lists:
            break
        cut = max(lists, key=lambda v: (len(v) % 2 == 0, len(v)))
        del cut[(len(cut) + 1) // 2 :]
        grids.append(smaller)
    return grids


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sweep_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sweep", type=Path, default=Path("sweeps/lr_optimizer.yaml"))
    p.add_argument("--out", type=Path, default=None, help="markdown file to (re)write")
    p.add_argument("--baseline-runs", type=int, default=None, metavar="K",
                   help="process-per-run rows on the first K grid points only")  # fmt: skip
    p.add_argument("--scaling", action="store_true",
                   help="also wall time on smaller grids, 1 and 2 in-process agents")  # fmt: skip
    p.add_argument("--configs", default=",".join(f"{m}:{a}" for m, a in CONFIGS),
                   help="MODE:AGENTS pairs to measure (default: %(default)s)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3,
                   help="in-process rows: measure each this often, keep the median")  # fmt: skip
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    command = " ".join(
        ["python -m bench.sweep_throughput", *(sys.argv[1:] if argv is None else argv)]
    )
    configs = [(m, int(a)) for m, a in (c.split(":") for c in args.configs.split(","))]
    if ("process", 1) not in configs or not any(m == "inprocess" for m, _ in configs):
        p.error("--configs needs process:1 (the baseline) and at least one inprocess row")
    facts = machine_facts()
    # The in-process rows are short and take seconds of fixed cost, so one slow start moves
    # their share by a point: measure them in rounds (drift hits every row alike) and keep
    # the median. The process rows run minutes each; once is enough.
    repeated: dict[tuple[str, int], list[Measurement]] = {}
    for round_ in range(args.repeats):
        for mode, agents in configs:
            if mode == "process" and round_ > 0:
                continue
            runs = args.baseline_runs if mode == "process" else None
            m = measure(args.sweep, mode, agents, runs)
            repeated.setdefault((mode, agents), []).append(m)
            print(*table([(f"{mode}:{agents}", m)])[2:], flush=True)
    results = {key: median_run(ms) for key, ms in repeated.items()}
    with tempfile.TemporaryDirectory(prefix="sweepmap-floor-") as tmp:
        floor = startup_floor(bench_env(Path(tmp)))
    lines = report(args.sweep, command, facts, results, args.baseline_runs, floor, repeated)
    if args.scaling:
        _, config = load_sweep(args.sweep)
        grids: dict[tuple[int, int], Measurement] = {}
        with tempfile.TemporaryDirectory(prefix="sweepmap-grids-") as tmp:
            for grid in smaller_grids(config, SCALING_SIZES):
                path = Path(tmp) / args.sweep.name
                path.write_text(yaml.safe_dump(grid, sort_keys=False))
                for agents in SCALING_AGENTS:
                    done = results.get(("inprocess", agents)) if grid is config else None
                    m = grids[grid_size(grid), agents] = done or measure(path, "inprocess", agents)
                    print(*table([(f"scaling {m.grid}:{agents}", m)])[2:], flush=True)
        scaling = scaling_section(args.sweep, command, grids)
    else:
        scaling = old_scaling(args.out) if args.out else []
    publish([*lines, *(["", *scaling] if scaling else [])], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
