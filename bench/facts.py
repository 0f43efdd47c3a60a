"""The machine a benchmark ran on, and what it costs an agent to start on it."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What an in-process agent does before its first run (agents.warm.warm_up_training), timed
# step by step in a fresh interpreter: the part of its start-up that this project cannot remove.
_WARM_UP = """
import json, time
laps, last = {}, time.perf_counter()
def lap(step):
    global last
    now = time.perf_counter()
    laps[step], last = now - last, now
from agents.warm import warm_up_training
warm_up_training(lap=lap)
print(json.dumps(laps))
"""


def startup_floor(env: dict[str, str], repeats: int = 3) -> dict[str, float]:
    """Seconds of each step of an in-process agent's warm-up (wandb, torch, torchmetrics, the
    models, torch._dynamo, the rest of wandb's service start), alone, each the median of
    `repeats` fresh interpreters; `env` keeps wandb offline and contained."""
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", _WARM_UP],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.splitlines()[-1]))
    return {step: statistics.median(run.get(step, 0.0) for run in runs) for step in runs[0]}


def machine_busy_s() -> float:
    """CPU-seconds all cores spent busy since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU-seconds of this process's finished children (and theirs, when they waited for them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
        "import torch; print(f'cuda ({torch.cuda.get_device_name(0)})' if "
        "torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"
