"""python -m localsweep: wandb's sweep workflow on a machine with no wandb server.

python -m localsweep run sweeps/lr_optimizer.yaml --agents 2   # create or resume, then run
python -m localsweep create sweeps/lr_optimizer.yaml           # like `wandb sweep`
python -m localsweep agent lr_optimizer-3f4885                 # like `wandb agent`
python -m localsweep status [lr_optimizer-3f4885]
python -m localsweep repair                                    # rebuild a damaged store
python -m localsweep sync lr_optimizer-3f4885 [--project P]    # upload into its runs' project

Exit codes: 0 when every point finished (a scan's: or stopped early); 1 when some did not
(failed, error, crashed or never run); 2 for bad input (nothing is written); 3 when the store
cannot be read or written (a corrupt file, a full disk: one line names it) or the sweep's data
cannot be had (one line names the fix); 128 + N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
from pathlib import Path

from agents.contract import DEFAULT_STORE
from localsweep import notes
from localsweep.agent import MAX_STACK, MODES, STACK_DEFAULT, main_agent
from localsweep.rows import NOT_DONE, StoreError, done
from localsweep.runner import (
    Stop,
    counts_line,
    dismiss,
    exit_code,
    release,
    spawn_agents,
    watch,
)
from localsweep.store import Store
from sweepmap.envfile import load_env_file
from sweepmap.outcome import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sweepmap.sweepfile import SweepError, axes, base_name, is_scan
from sweepmap.wandb_exit import close_wandb


def create(path: Path, store_root: Path) -> tuple[Store, str, int]:
    """(store, sweep name, grid size); the grid is stored, so that agents need no engine."""
    # wandb's engine (~1 s with its scipy.stats) loads here, after `run` has started its agents.
    from localsweep.grid import all_points, load_sweep
    from sweepmap.sweepfile import sweep_name

    text, config = load_sweep(path)  # before the store exists: a bad file leaves nothing behind
    points = all_points(config)
    store = Store(store_root)
    name = sweep_name(path, config)
    made = store.create_sweep(name, text, config, points)
    total = store.total(name)
    if is_scan(config):
        stops = " with hyperband stopping" if "early_terminate" in config else ""
        what = f"a {config['method']} scan of {total} runs{stops}, proposed as it runs"
    else:
        for axis in axes(config):
            if len(axis.levels) > 1:
                print(f"  {axis.describe()}")
        what = f"{total} runs" + (f" (run_cap {config['run_cap']})" if "run_cap" in config else "")
    print(f"{'created' if made else 'resuming'} sweep {name}: {what} in {store.root}")
    for other in store.sweeps():
        if other.name != name and base_name(other.name) == base_name(name):
            done = f"{store.counts(other.name)['finished']}/{store.total(other.name)} finished"
            print(f"  note: an earlier version of this file is sweep {other.name} ({done});"
                  " this content is a new sweep")  # fmt: skip
    return store, name, total


def cmd_run(args: argparse.Namespace) -> int:
    procs = spawn_agents(args.store, args.agents, args.mode, args.retry_failed, args.stack)
    try:
        store, name, total = create(args.sweep_file, args.store)
        from localsweep.preflight import effective_mode

        mode, why = effective_mode(store.sweep(name).config, args.mode, Path.cwd())
        reaped = store.reap(name)
        if reaped:
            print(f"marked {len(reaped)} run(s) of dead agents as crashed; they run again now")
        left = store.remaining(name, args.retry_failed)
        agents = min(args.agents, left)
        dismiss(procs[agents:])
        procs = procs[:agents]
        if left == 0:
            return _complete(store, name, total)
        logs = store.root / "logs" / name
        print(f"{left} run(s) to go with {agents} agent(s), mode {mode}"
              + (f" ({why})" if why else "") + f"; logs in {logs}")  # fmt: skip
        stop = Stop(procs)  # before release: no signal can leave a released agent orphaned
        notes.clear(store.root, name)  # this session's agents' say-once lines, none before
        release(procs, store.root, name)
    except BaseException:
        dismiss(procs)
        raise
    try:
        seen = watch(procs, store, name, total, stop)
    finally:
        stop.restore()
    crashed = seen.reap()  # runs of agents that had to be killed
    for line in dict.fromkeys(why for _, why in seen.refusals):
        print(line, file=sys.stderr)
    print(counts_line(store, name, total))
    code = exit_code(store, name, total, stop, seen)
    if code > 128:
        print(f"stopped by {stop_name(stop.signum)}; {len(crashed)} more run(s) marked crashed")
    if code not in (EXIT_OK, EXIT_USAGE):
        print(f"resume with: {resume_command(args)}")
    return code


def _complete(store: Store, name: str, total: int) -> int:
    c = store.counts(name)
    if done(c) >= total:
        ended = f"done ({c['stopped']} stopped early)" if c["stopped"] else "finished"
        print(f"sweep {name} is complete: {done(c)}/{total} {ended}; nothing to run")
        return EXIT_OK
    print(f"sweep {name}: nothing left to run, but only {c['finished']}/{total} points finished "
          f"({c['failed']} failed); run them again with --retry-failed")  # fmt: skip
    return EXIT_FAILED


def stop_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def resume_command(args: argparse.Namespace) -> str:
    words = ["python", "-m", "localsweep", "run", str(args.sweep_file), "--store", str(args.store)]
    words += ["--agents", str(args.agents)] + (
        ["--mode", args.mode] if args.mode != "inprocess" else []
    )
    words += ["--retry-failed"] if args.retry_failed else []
    return shlex.join(words + (["--stack", str(args.stack)] if args.stack else []))


def cmd_create(args: argparse.Namespace) -> int:
    _, name, _ = create(args.sweep_file, args.store)
    print(f"run agents with: python -m localsweep agent {name} --store {args.store}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    return main_agent(args.store, args.sweep, args.mode, args.count, args.retry_failed,
                      args.stack)  # fmt: skip


def cmd_status(args: argparse.Namespace) -> int:
    store = Store(args.store, create=False)  # a folder with no store: said, nothing made
    names = [args.sweep] if args.sweep else [s.name for s in store.sweeps()]
    if not names:
        print(f"no sweeps in {store.path}")
    for name in names:
        store.sweep(name)  # a clear KeyError for an unknown name
        print(counts_line(store, name, store.total(name)))
        ended = [r for r in store.runs(name) if r.state in NOT_DONE]
        for run in sorted(ended, key=lambda r: r.ended or 0)[-5:]:
            why = run.summary.get("failure") or "no reason recorded"
            print(f"  {run.state}: {run.id}: {why} (log: {run.log_path})")
    return EXIT_OK


def cmd_repair(args: argparse.Namespace) -> int:
    from localsweep.repair import repair

    print(repair(args.store))
    return EXIT_OK


# An agent holds torch, wandb and its data: 0.49 GiB resident measured on digits.
AGENT_GIB = 0.6


def agents_refusal(agents: int) -> str:
    """Why `--agents N` cannot run here, or "": each agent trains on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    free_gib = _available_gib()
    fits = min(cores or 1, int(free_gib / AGENT_GIB) if free_gib else cores or 1)
    if agents < 1:
        return f"--agents {agents}: must be >= 1"
    if agents > fits:
        return (f"--agents {agents}: this machine has {cores} usable core(s) and "
                f"{free_gib:.1f} GiB available; at most {fits} (each agent trains on one core "
                f"and takes about {AGENT_GIB} GiB)")  # fmt: skip
    return ""


def _available_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


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
        sp.add_argument("--stack", type=int, nargs="?", const=STACK_DEFAULT, default=0,
                        metavar="K", help="train up to K runs of a cell (differing in seed, lr, "
                        f"weight_decay) as one stacked model, each still its own run (default "
                        f"K {STACK_DEFAULT}; README: Performance)")  # fmt: skip

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

    fix = sub.add_parser("repair", help="rebuild a damaged store from the runs' own files")
    common(fix)
    fix.set_defaults(func=cmd_repair)

    from localsweep import sync  # its arguments are its own; wandb loads only when it runs

    upload = sub.add_parser("sync", help="upload a local sweep's runs to a wandb project")
    sync.add_arguments(upload)
    common(upload)
    upload.set_defaults(func=sync.cmd_sync)
    return p


def main(argv: list[str] | None = None) -> int:
    load_env_file()
    # No wandb server here: runs log offline unless the user chose otherwise (.env or shell).
    os.environ.setdefault("WANDB_MODE", "offline")
    args = parser().parse_args(argv)
    # An offline run's artifact files (its tables) wait in wandb's staging folder until `sync`
    # uploads them: kept in the store, not in ~/.local/share/wandb, they go where the store goes.
    os.environ.setdefault("WANDB_DATA_DIR", str(Path(args.store).resolve() / "wandb-data"))
    refusal = agents_refusal(getattr(args, "agents", 1))
    if getattr(args, "stack", 0) and not 2 <= args.stack <= MAX_STACK:
        refusal = f"--stack {args.stack}: a stack has 2 to {MAX_STACK} runs"
    store = getattr(args, "store", None)
    if store is not None and Path(store).exists() and not Path(store).is_dir():
        refusal = f"--store {store}: a file; the store is a folder (made if missing)"
    if refusal:
        print(f"localsweep: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except SweepError as err:
        print(f"localsweep: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyError as err:
        print(f"localsweep: {err.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as err:  # corrupt at open, or a write that cannot happen (a full disk)
        print(f"localsweep: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        return 130
    finally:
        close_wandb()  # not wandb's atexit wait, which can last forever (sweepmap/wandb_exit.py)
        # The process ends next: its last garbage collection would walk every object that
        # wandb's engine and scipy made, ~0.3 s at the end of each `run`. Frozen, the OS frees them.
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
