"""The machine a benchmark ran on, and what it costs an agent to start on it."""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What an in-process agent imports before its first run (localsweep.agent.warm_up), timed in
# a fresh interpreter: the part of its start-up that no change to this project can remove.
_WARM_UP = (
    "import time; t = time.perf_counter(); from localsweep.agent import warm_up; "
    "warm_up('inprocess'); print(time.perf_counter() - t)"
)


def startup_floor_s(repeats: int = 3) -> float:
    """Median seconds of those imports (torch, torchmetrics, torch._dynamo, wandb), alone."""
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", _WARM_UP], cwd=ROOT, capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.split()[-1]))
    return statistics.median(times)


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
        "import torch; print('cuda' if torch.cuda.is_available() else "
        "'mps' if torch.backends.mps.is_available() else 'cpu')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"
