"""Sweep throughput: the local runner against one process per run, as `wandb agent` runs it.

    python -m bench.sweep_throughput --sweep sweeps/lr_optimizer.yaml --out bench/results.md
    ... --baseline-runs 12   # the process-per-run rows on the first 12 grid points only
    ... --scaling            # also wall time against grid size, 1 and 2 in-process agents

Every configuration runs the real command (`python -m localsweep run SWEEP --agents N --mode M`)
in a fresh temporary store with wandb offline under that folder, so nothing lands in the repo.
Wall time is the clock around that command (Python start-up, imports, data, wandb service and
the store included); training time is each run's `train_time` in the store (the loop alone).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from localsweep.grid import grid_size, load_sweep, sweep_name
from localsweep.store import Store
from sweepmap import keys

ROOT = Path(__file__).resolve().parents[1]
# (mode, agents): the local runner with 1 and 2 agents; one process per run with 1 agent (what
# one `wandb agent` does) and with 2 (like for like with two local agents).
CONFIGS = (("inprocess", 1), ("inprocess", 2), ("process", 1), ("process", 2))
SCALING_AGENTS = (1, 2)
SCALING_SIZES = 3  # the full grid, then halved twice
SCALING_BEGIN, SCALING_END = "<!-- scaling:begin -->", "<!-- scaling:end -->"


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


def measure(sweep: Path, mode: str, agents: int, runs: int | None = None) -> Measurement:
    """Run `sweep` in a fresh store; `runs` limits it to that many first grid points."""
    _, config = load_sweep(sweep)
    name = sweep_name(sweep, config)
    tmp = Path(tempfile.mkdtemp(prefix="sweepmap-bench-"))
    try:
        env, store = bench_env(tmp), str(tmp / "store")
        cli = [sys.executable, "-m", "localsweep"]
        busy0, ours0 = _machine_busy_s(), _children_cpu_s()
        start = time.perf_counter()
        if runs is None:
            _run_all([[*cli, "run", str(sweep), "--agents", str(agents), "--mode", mode,
                       "--store", store]], env, tmp)  # fmt: skip
        else:
            # `run` takes no run limit: create the sweep, then agents that stop after a share.
            _run_all([[*cli, "create", str(sweep), "--store", store]], env, tmp)
            shares = [runs // agents + (i < runs % agents) for i in range(agents)]
            agent = [*cli, "agent", name, "--store", store, "--mode", mode, "--count"]
            _run_all([[*agent, str(n)] for n in shares if n], env, tmp)
        wall = time.perf_counter() - start
        other = (_machine_busy_s() - busy0) - (_children_cpu_s() - ours0)
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


def _machine_busy_s() -> float:
    """CPU-seconds all cores spent busy since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """CPU-seconds of this process's finished children (and theirs, when they waited for them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _point(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def max_difference(measurements: Sequence[Measurement]) -> tuple[float, int]:
    """Largest |difference| in final val/accuracy of one grid point across measurements."""
    worst, compared = 0.0, 0
    points = {p for m in measurements for p in m.accuracy}
    for p in points:
        values = [m.accuracy[p] for m in measurements if p in m.accuracy]
        if len(values) > 1:
            compared += 1
            worst = max(worst, max(values) - min(values))
    return worst, compared


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


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    threads = os.environ.get("SWEEPMAP_THREADS", "1")
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu}, {cores} logical cores ({usable} usable)",
        "memory": _memory(),
        "device": _device(),
        "torch threads": f"{threads} per agent (SWEEPMAP_THREADS, default 1)",
        "versions": f"Python {platform.python_version()}, torch {version('torch')}, "
        f"wandb {version('wandb')}",
        "os": platform.platform(),
    }


def _memory() -> str:
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return "unknown"
    return f"{kib / 2**20:.0f} GiB"


def _device() -> str:
    # Ask a child: importing torch here would add seconds to this process for one line.
    code = (
        "import torch; print('cuda' if torch.cuda.is_available() else "
        "'mps' if torch.backends.mps.is_available() else 'cpu')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def table(rows: Sequence[tuple[str, Measurement]]) -> list[str]:
    lines = [
        "| runner | mode | agents | runs | wall (s) | runs/min | Σ train_time (s) "
        "| overhead share | overhead per run (s) | other work (cores) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, m in rows:
        runs = f"{m.runs}" if m.runs == m.grid else f"{m.runs} of {m.grid}"
        lines.append(
            f"| {label} | {m.mode} | {m.agents} | {runs} | {m.wall_s:.1f} | "
            f"{m.runs_per_min:.1f} | {m.train_s:.1f} | {m.overhead:.1%} | "
            f"{m.overhead_per_run_s:.2f} | {m.other_cores:.2f} |"
        )
    return lines


def report(
    sweep: Path,
    command: str,
    facts: dict[str, str],
    results: dict[tuple[str, int], Measurement],
    baseline_runs: int | None,
) -> list[str]:
    local = max(
        (m for (mode, _), m in results.items() if mode == "inprocess"),
        key=lambda m: m.runs_per_min,
    )
    base = results[("process", 1)]
    rows = [
        (("**local runner**" if m is local else "local runner"), m)
        for (mode, _), m in results.items()
        if mode == "inprocess"
    ] + [("one process per run", m) for (mode, _), m in results.items() if mode == "process"]
    diff, compared = max_difference(list(results.values()))
    lines = [
        "# Sweep throughput",
        "",
        f"Sweep `{sweep.as_posix()}` ({local.grid} grid points, its own epochs), measured "
        f"with `{command}`.",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        *table(rows),
        "",
        f"- Speed-up of the local runner (inprocess, {local.agents} agent(s)) over one process "
        f"per run with 1 agent, as one `wandb agent` runs a sweep: "
        f"**{local.runs_per_min / base.runs_per_min:.1f}x** runs/min.",
    ]
    if ("process", local.agents) in results and local.agents != 1:
        like = results[("process", local.agents)]
        lines.append(
            f"- Like for like, {local.agents} agents each: "
            f"{local.runs_per_min / like.runs_per_min:.1f}x."
        )
    shares = [m for (mode, _), m in results.items() if mode == "inprocess"]
    lines.append(
        "- Overhead share at most 15%: "
        + "; ".join(
            f"{m.agents} agent(s) {m.overhead:.1%}, {'met' if m.overhead <= 0.15 else 'not met'}"
            for m in shares
        )
        + " (each agent's start-up is a fixed cost: see the scaling section)."
    )
    lines += [
        "- wall: the clock around the whole command, from Python start-up to the last agent's "
        "exit (imports, data loading, wandb service, store and grid included).",
        "- overhead share: (agents × wall − Σ train_time) / (agents × wall), i.e. in "
        "agent-seconds, where train_time is each run's training loop (`sweepmap.loop.fit`) "
        "as stored in its summary; torch's one-off import of `torch._dynamo` (which "
        "torch.optim makes at a process's first optimizer, ~1.2 s) happens before that "
        "clock starts, so it counts as overhead: once per agent in-process, in every run with "
        "one process per run.",
        f"- Same results both ways: largest difference in final val/accuracy for one grid "
        f"point across all rows: {diff:.1e} ({compared} points compared).",
        "- other work: CPU-seconds the machine spent on processes outside the benchmark "
        "(from /proc/stat) per second of wall; above 0.05 or so, that row shared the cores.",
    ]
    if baseline_runs is not None:
        lines.append(
            f"- The process-per-run rows ran only the first {baseline_runs} grid points "
            "(`--baseline-runs`); their runs/min is over those runs."
        )
    lines += ["", "GPU (bf16 autocast, agents per GPU): not measured: no GPU in this environment."]
    return lines


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y against x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


def scaling_section(
    sweep: Path, command: str, results: dict[tuple[int, int], Measurement]
) -> list[str]:
    sizes = sorted({size for size, _ in results})
    lines = [
        SCALING_BEGIN,
        "## Scaling with the grid's size",
        "",
        f"In-process agents on grids cut from `{sweep.as_posix()}` (one `values` list halved "
        f"at a time), measured with `{command}`. Each cell: wall time (overhead share).",
        "",
        "| grid points | " + " | ".join(f"{a} agent(s)" for a in SCALING_AGENTS) + " |",
        "|--:|" + "--:|" * len(SCALING_AGENTS),
    ]
    for size in sizes:
        cells = [f"{results[size, a].wall_s:.1f} s ({results[size, a].overhead:.0%})"
                 for a in SCALING_AGENTS]  # fmt: skip
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines.append("")
    for a in SCALING_AGENTS:
        rows = [results[size, a] for size in sizes]
        fixed, per_run = fit_line([(m.runs, m.wall_s) for m in rows])
        # Overhead in agent-seconds against runs: a fixed part (start-up, the end) and a part
        # per run; with t s of training a run, the share is 15% from n = .85F / (.15t - .85c).
        f, c = fit_line([(m.runs, a * m.wall_s - m.train_s) for m in rows])
        t = sum(m.train_s for m in rows) / sum(m.runs for m in rows)
        at_15 = 0.85 * f / (0.15 * t - 0.85 * c) if 0.15 * t > 0.85 * c else float("inf")
        lines.append(
            f"- {a} agent(s): wall ≈ {fixed:.1f} s + {per_run:.2f} s per run; overhead ≈ "
            f"{f:.1f} agent-s fixed (start-up and exit) + {c:.3f} agent-s per run, against "
            f"{t:.2f} s of training a run (least squares): the share is 15% from about "
            f"{at_15:.0f} runs and tends to {c / (c + t):.0%} on large grids."
        )
    return [*lines, SCALING_END]


def old_scaling(out: Path) -> list[str]:
    """The scaling section of an earlier results file, kept when this run skips it."""
    if not out.exists():
        return []
    text = out.read_text()
    if SCALING_BEGIN not in text or SCALING_END not in text:
        return []
    body = text.split(SCALING_BEGIN, 1)[1].split(SCALING_END, 1)[0]
    return [SCALING_BEGIN, *body.strip("\n").splitlines(), SCALING_END]


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
    args = p.parse_args(argv)
    command = " ".join(
        ["python -m bench.sweep_throughput", *(sys.argv[1:] if argv is None else argv)]
    )
    configs = [(m, int(a)) for m, a in (c.split(":") for c in args.configs.split(","))]
    if ("process", 1) not in configs or not any(m == "inprocess" for m, _ in configs):
        p.error("--configs needs process:1 (the baseline) and at least one inprocess row")
    facts = machine_facts()
    results: dict[tuple[str, int], Measurement] = {}
    for mode, agents in configs:
        runs = args.baseline_runs if mode == "process" else None
        m = results[mode, agents] = measure(args.sweep, mode, agents, runs)
        print(*table([(f"{mode}:{agents}", m)])[2:], flush=True)
    lines = report(args.sweep, command, facts, results, args.baseline_runs)
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
    text = "\n".join([*lines, *(["", *scaling] if scaling else [])]) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
