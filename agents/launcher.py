"""wandb sweep agents: one in this process, or K per GPU on a machine with several.

    python -m agents ENTITY/PROJECT/SWEEP_ID [--count N] [--inprocess]
    python -m agents ENTITY/PROJECT/SWEEP_ID --gpus auto|none|0,1,3 [--per-gpu K] ...
    python -m agents fill ENTITY/PROJECT/SWEEP_ID [the options above]   (agents/fill.py)

Without --gpus/--per-gpu, one agent runs here: `wandb agent`, or with --inprocess
`wandb.agent(function=...)`, which imports torch and loads the data once for all its runs.

With --gpus or --per-gpu, K agents per GPU (auto: CUDA_VISIBLE_DEVICES's list, else every GPU
torch sees; none: K agents on the CPU; 0,1,3: CUDA_VISIBLE_DEVICES values), each seeing only
its GPU and a share of the cores (SWEEPMAP_THREADS), each with --count N. Their output comes
out here, each line prefixed with the agent's label (and in --log-dir/agent-<i>.log if given).
Ctrl-C or SIGTERM is passed on to every agent (again to escalate, as `wandb agent` reads it)
and all are waited for; the exit code is the worst agent's. The agents start --stagger seconds
apart: agents that ask at the same moment can get the same first grid point (wandb/wandb#597).
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from agents.inprocess import run_inprocess, split_sweep_path
from agents.proc import die_with_parent
from sweepmap.envfile import load_env_file
from sweepmap.outcome import EXIT_USAGE
from sweepmap.wandb_exit import close_wandb

# Seconds between two agents' starts: longer than the window from an agent's first heartbeat
# to its run's wandb.init (when the backend sees the point taken). Measured against the fake
# on a shared 2-core box: 5.9 s for `wandb agent` + train.py, 0.5-0.9 s in-process.
STAGGER_S = 10.0


@dataclass(frozen=True)
class AgentPlan:
    """One child agent: which GPU it sees (None: none, the CPU) and its CPU threads."""

    index: int
    gpu: str | None
    threads: int

    @property
    def label(self) -> str:
        return f"a{self.index}:" + (f"gpu{self.gpu}" if self.gpu is not None else "cpu")

    def env(self) -> dict[str, str]:
        # "" hides every GPU, so device=auto trains on the CPU.
        return {"CUDA_VISIBLE_DEVICES": self.gpu or "", "SWEEPMAP_THREADS": str(self.threads)}


def resolve_gpus(
    spec: str, environ: Mapping[str, str], device_count: Callable[[], int]
) -> list[str]:
    """The CUDA_VISIBLE_DEVICES value of each GPU to use; [] means the CPU."""
    spec = spec.strip()
    if spec == "none":
        return []
    if spec == "auto":
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return [str(i) for i in range(device_count())]
        # CUDA stops reading the list at the first invalid entry: "-1" hides every GPU.
        parts = (p.strip() for p in visible.split(","))
        return list(itertools.takewhile(lambda p: p != "" and not p.startswith("-"), parts))
    ids = [p.strip() for p in spec.split(",")]
    if not all(ids) or len(set(ids)) != len(ids):
        raise ValueError(f"--gpus {spec!r}: expected auto, none or distinct ids such as 0,1,3")
    return ids


def plan_agents(
    gpus: Sequence[str], per_gpu: int, cpus: int, threads: int | None = None
) -> list[AgentPlan]:
    """`per_gpu` agents on each GPU (on the CPU when there is none), sharing `cpus` cores.

    Each agent gets its share of the cores less one, left to its run's wandb-core and the
    agent: a full share oversubscribes. On a 2-core box, 10 epochs of the digits CNN took
    8-9 s with 1 torch thread, 15-38 s with 2. `threads` (the user's SWEEPMAP_THREADS) wins.
    """
    if per_gpu < 1:
        raise ValueError(f"--per-gpu {per_gpu}: must be >= 1")
    slots: list[str | None] = list(gpus) or [None]
    n = len(slots) * per_gpu
    threads = threads or max(1, cpus // n - 1)
    # Agents of one GPU next to each other: a0, a1 on the first.
    return [AgentPlan(i, slots[i // per_gpu], threads) for i in range(n)]


def child_argv(sweep: str, count: int | None, inprocess: bool, heartbeat: int) -> list[str]:
    """One agent, run by this interpreter (the venv's), never by whatever `python` is first."""
    counted = ["--count", str(count)] if count is not None else []
    if inprocess:
        beat = ["--heartbeat", str(heartbeat)]
        return [sys.executable, "-m", "agents", sweep, "--inprocess", *counted, *beat]
    return [sys.executable, "-m", "wandb", "agent", *counted, sweep]


def venv_env(base: Mapping[str, str]) -> dict[str, str]:
    """`wandb agent` starts `/usr/bin/env python train.py`: this venv's bin must come first."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    return {**base, "PATH": path, "PYTHONUNBUFFERED": "1"}


def _pump(stream: IO[bytes], label: str, log: IO[bytes] | None, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        if log is not None:
            log.write(raw)
            log.flush()
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        with lock:
            print(f"[{label}] {line}", flush=True)
    stream.close()


def launch(
    plans: Sequence[AgentPlan], argv: list[str], log_dir: Path | None, stagger: float = STAGGER_S
) -> int:
    """Start every agent, `stagger` s apart, relay their output and signals, wait for all;
    the worst exit code."""
    procs: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()  # a signal during the stagger: start no more agents

    def forward(signum: int, frame: FrameType | None) -> None:
        # stderr: the main thread may be inside a print to stdout, which is not reentrant.
        name = f"agents: {signal.Signals(signum).name}"
        print(f"{name}: passed on to the agents (again to escalate)", file=sys.stderr)
        stopping.set()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    # Installed before the first child starts, so no signal can orphan a started agent.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    lock, pumps, logs, command = threading.Lock(), [], [], " ".join(argv)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        print(f"agents: logs in {log_dir}/agent-<i>.log", flush=True)
    try:
        for plan in plans:
            if plan.index > 0 and stopping.wait(stagger):
                break
            log = None if log_dir is None else (log_dir / f"agent-{plan.index}.log").open("ab")
            logs += [log] if log else []
            later = f", {stagger:g} s after a{plan.index - 1}" if plan.index else ""
            print(f"agents: {plan.label}, {plan.threads} thread(s){later}: {command}", flush=True)
            proc = subprocess.Popen(
                argv,
                env=venv_env(os.environ) | plan.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # Own process group: a terminal's Ctrl-C reaches each agent once, from us,
                # not twice (which `wandb agent` would read as "terminate the runs").
                process_group=0,
                # A launcher killed outright takes its agents with it (no orphaned agents).
                preexec_fn=die_with_parent(),
            )
            procs.append(proc)
            assert proc.stdout is not None
            pump = threading.Thread(target=_pump, args=(proc.stdout, plan.label, log, lock))
            pump.start()
            pumps.append(pump)
        codes = [proc.wait() for proc in procs]
        for pump in pumps:
            pump.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for log in logs:
            log.close()
    # Killed by signal N reads as -N: report it the way a shell does, 128 + N.
    return max((c if c >= 0 else 128 - c for c in codes), default=0)


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))  # the cores we may use (taskset, cgroup cpusets)
    return os.cpu_count() or 1


def _torch_device_count() -> int:
    import torch

    return torch.cuda.device_count()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser("python -m agents", None, __doc__, formatter_class=raw)
    p.add_argument("sweep", help="ENTITY/PROJECT/SWEEP_ID, as `wandb agent` takes it")
    p.add_argument("--inprocess", action="store_true", help="train every run in the agent")
    p.add_argument("--count", type=int, help="runs per agent (default: until the sweep ends)")
    p.add_argument("--gpus", help="auto, none or ids such as 0,1,3: start one agent per GPU")
    p.add_argument("--per-gpu", type=int, help="agents per GPU (or on the CPU with none)")
    p.add_argument("--log-dir", type=Path, help="also write agent <i>'s output to agent-<i>.log")
    p.add_argument("--heartbeat", type=int, default=5, help="--inprocess: s between heartbeats")
    p.add_argument(
        "--stagger", type=float, default=STAGGER_S, metavar="S",
        help=f"seconds between two agents' starts (default {STAGGER_S:g})",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.stagger < 0:
        p.error(f"--stagger {args.stagger}: must be >= 0")
    for flag, value in (("--count", args.count), ("--heartbeat", args.heartbeat)):
        if value is not None and value < 1:
            p.error(f"{flag} {value}: must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        close_wandb()  # not wandb's atexit wait, which can last forever (sweepmap/wandb_exit.py)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["fill"]:
        from agents.fill import main as fill_main

        return fill_main(argv[1:])
    args = parse(argv)
    # Credentials and WANDB_* defaults, as train.py reads them; the environment wins.
    load_env_file()
    try:
        split_sweep_path(args.sweep)
        if args.gpus is None and args.per_gpu is None:
            if args.inprocess:
                return run_inprocess(args.sweep, args.count, args.heartbeat)
            cli = child_argv(args.sweep, args.count, False, args.heartbeat)
            os.execve(sys.executable, cli, venv_env(os.environ))  # `wandb agent`, here
        gpus = resolve_gpus(args.gpus or "auto", os.environ, _torch_device_count)
        user_threads = int(os.environ.get("SWEEPMAP_THREADS") or 0) or None
        plans = plan_agents(gpus, args.per_gpu or 1, _cpus(), user_threads)
    except ValueError as err:
        print(f"agents: {err}", file=sys.stderr)
        return EXIT_USAGE
    argv_child = child_argv(args.sweep, args.count, args.inprocess, args.heartbeat)
    return launch(plans, argv_child, args.log_dir, args.stagger)


if __name__ == "__main__":
    sys.exit(main())
