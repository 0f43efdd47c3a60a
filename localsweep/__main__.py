"""python -m localsweep: wandb's sweep workflow on a machine with no wandb server.

python -m localsweep run sweeps/lr_optimizer.yaml --agents 2   # create or resume, then run
python -m localsweep create sweeps/lr_optimizer.yaml           # like `wandb sweep`
python -m localsweep agent lr_optimizer-3f4885                 # like `wandb agent`
python -m localsweep status lr_optimizer-3f4885
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

from localsweep.agent import MODES, main_agent
from localsweep.runner import counts_line, dismiss, release, spawn_agents, watch
from localsweep.store import Store
from sweepmap.sweepfile import SweepError

DEFAULT_STORE = Path(".sweepmap")


def create(path: Path, store_root: Path) -> tuple[Store, str, int]:
    """(store, sweep name, grid size); the grid is stored, so that agents need no engine."""
    # wandb's engine (~1 s with its scipy.stats) loads here, after `run` has started its agents.
    from localsweep.grid import all_points, load_sweep
    from sweepmap.sweepfile import sweep_name

    text, config = load_sweep(path)  # before the store exists: a bad file leaves nothing behind
    store = Store(store_root)
    name = sweep_name(path, config)
    made = store.create_sweep(name, text, config, all_points(config))
    total = store.total(name)
    verb = "created" if made else "resuming"
    print(f"{verb} sweep {name} ({total} runs) in {store.root}")
    return store, name, total


def cmd_run(args: argparse.Namespace) -> int:
    procs = spawn_agents(args.store, args.agents, args.mode, args.retry_failed)
    try:
        store, name, total = create(args.sweep_file, args.store)
        reaped = store.reap(name)
        if reaped:
            print(f"marked {len(reaped)} run(s) of dead agents as crashed; they run again now")
        left = store.remaining(name, args.retry_failed)
        agents = min(args.agents, left)
        dismiss(procs[agents:])
        procs = procs[:agents]
        if left == 0:
            c = store.counts(name)
            print(f"sweep {name} is complete: {c['finished']} finished, {c['failed']} failed;"
                  " nothing to run")  # fmt: skip
            return 0
        logs = store.root / "logs" / name
        print(f"{left} run(s) to go with {agents} agent(s), mode {args.mode}; logs in {logs}")
        release(procs, store.root, name)
    except BaseException:
        dismiss(procs)
        raise
    code = watch(procs, store, name, total)
    print(counts_line(store, name, total))
    return code


def cmd_create(args: argparse.Namespace) -> int:
    _, name, _ = create(args.sweep_file, args.store)
    print(f"run agents with: python -m localsweep agent {name} --store {args.store}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    return main_agent(args.store, args.sweep, args.mode, args.count, args.retry_failed)


def cmd_status(args: argparse.Namespace) -> int:
    store = Store(args.store)
    names = [args.sweep] if args.sweep else [s.name for s in store.sweeps()]
    for name in names:
        store.sweep(name)  # a clear KeyError for an unknown name
        print(counts_line(store, name, store.total(name)))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localsweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--store", type=Path, default=DEFAULT_STORE,
                        help=f"store folder (default {DEFAULT_STORE}, git-ignored)")  # fmt: skip

    def agent_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--mode", choices=MODES, default="inprocess",
                        help="inprocess: one process trains many runs (fast, default); "
                        "process: one train.py process per run, as `wandb agent`")  # fmt: skip
        sp.add_argument("--retry-failed", action="store_true",
                        help="run failed grid points again (crashed ones always are)")  # fmt: skip

    run = sub.add_parser("run", help="create or resume a sweep from YAML and run N agents")
    run.add_argument("sweep_file", type=Path)
    run.add_argument("--agents", type=int, default=1, help="agent processes (default 1)")
    common(run)
    agent_opts(run)
    run.set_defaults(func=cmd_run)

    create_p = sub.add_parser("create", help="create a sweep from YAML and print its name")
    create_p.add_argument("sweep_file", type=Path)
    common(create_p)
    create_p.set_defaults(func=cmd_create)

    agent = sub.add_parser("agent", help="run grid points of a sweep until none are left")
    agent.add_argument("sweep", help="its name; `-`: warm up, then read the name from stdin "
                       "(how `localsweep run` starts its agents)")  # fmt: skip
    agent.add_argument("--count", type=int, default=None, help="stop after this many runs")
    common(agent)
    agent_opts(agent)
    agent.set_defaults(func=cmd_agent)

    status = sub.add_parser("status", help="counts per state of one or every sweep")
    status.add_argument("sweep", nargs="?")
    common(status)
    status.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    load_dotenv(Path.cwd() / ".env", override=False)
    # No wandb server here: runs log offline unless the user chose otherwise (.env or shell).
    os.environ.setdefault("WANDB_MODE", "offline")
    args = parser().parse_args(argv)
    if getattr(args, "agents", 1) < 1:
        print("localsweep: --agents must be >= 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except SweepError as err:
        print(f"localsweep: {err}", file=sys.stderr)
        return 2
    except KeyError as err:
        print(f"localsweep: {err.args[0]}", file=sys.stderr)
        return 2
    finally:
        # The process ends next: its last garbage collection would walk every object that
        # wandb's engine and scipy made, ~0.3 s at the end of each `run`. Frozen, the OS frees them.
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
