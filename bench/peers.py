"""sweepmap against Optuna on one grid, side by side: runs/min, the ratio, and the same results.

    python -m bench.peers --sweep sweeps/lr_optimizer.yaml --agents 2 --rounds 3 \
        --out bench/results.md
    python -m bench.peers --quick --out /tmp/peers.md   # 4 points of 1 epoch, 1 round

Rounds are interleaved (sweepmap, Optuna, sweepmap, ...) after a warm-up of each, so that the
machine's drift hits both arms alike; each arm's wall time is the clock around its processes,
from their start to the last one's exit, in a fresh temporary folder:
- sweepmap: `python -m localsweep run SWEEP --agents N --store TMP`, wandb offline, as its
  users run it;
- Optuna: N processes of `python -m bench.optuna_trial` (GridSampler over the same points,
  one JournalStorage file), each trial train.py's training function with no wandb, as
  Optuna's users run it.
Both train on one torch thread a process (SWEEPMAP_THREADS=1). The final val/accuracy and
val/loss of every grid point must be the same in both arms and every round, or it exits 1.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.facts import children_cpu_s, machine_busy_s, machine_facts
from bench.peers_report import TARGET_RATIO, Arm, Timing, disagreements, git_commit, markdown
from bench.sweep_throughput import bench_env
from localsweep.grid import all_points, load_sweep
from sweepmap import keys

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("sweepmap", "optuna")
STACKED = "sweepmap --stack"
LOSS_TOLERANCE = 1e-9  # relative; same seed, same thread count, same data: equal in practice


def _run(argv: list[str], env: dict[str, str], logs: list[Path]) -> Timing:
    """Start `argv` once per log, side by side, and wait for all; a failure raises with its
    log's tail."""
    busy0, ours0 = machine_busy_s(), children_cpu_s()
    t0, c0 = time.time(), time.perf_counter()
    procs = []
    for log in logs:
        with log.open("wb") as out:
            procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out))
    codes = [proc.wait() for proc in procs]
    wall, end = time.perf_counter() - c0, time.time()
    ours = children_cpu_s() - ours0
    for code, log in zip(codes, logs, strict=True):
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{tail}")
    other = max(machine_busy_s() - busy0 - ours, 0.0) / wall
    return Timing(wall, t0, end, ours, other)


def run_sweepmap(sweep: Path, agents: int, tmp: Path, stack: int = 0) -> Arm:
    from localsweep.store import Store

    env = {**bench_env(tmp), "SWEEPMAP_THREADS": "1"}
    store = tmp / "store"
    argv = [sys.executable, "-m", "localsweep", "run", str(sweep), "--agents", str(agents),
            "--store", str(store)] + (["--stack", str(stack)] if stack else [])  # fmt: skip
    timing = _run(argv, env, [tmp / "sweepmap.log"])
    db = Store(store)
    try:
        runs = [r for s in db.sweeps() for r in db.runs(s.name)]
    finally:
        db.close()
    return Arm(
        STACKED if stack else "sweepmap",
        agents,
        timing,
        results={_key(r.config): _outcome(r.summary) for r in runs},
        trials=len(runs),
        spans=[(r.started or timing.t0, r.ended or timing.end) for r in runs],
        train_s=sum(float(r.summary.get(keys.TRAIN_TIME, 0.0)) for r in runs),
    )


def run_optuna(sweep: Path, agents: int, tmp: Path) -> Arm:
    import optuna

    from bench.optuna_trial import POINT, storage

    # bench_env keeps wandb contained even though this arm never imports it.
    env = {**bench_env(tmp), "SWEEPMAP_THREADS": "1"}
    journal, study = tmp / "optuna.journal", "bench-peers"
    argv = [sys.executable, "-m", "bench.optuna_trial", "--sweep", str(sweep),
            "--journal", str(journal), "--study", study]  # fmt: skip
    logs = [tmp / f"optuna-{i}.log" for i in range(agents)]
    timing = _run(argv, env, logs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=study, storage=storage(journal)).trials
    results: dict[str, dict[str, Any]] = {}
    for t in trials:
        # A point trained twice (workers racing for the grid's last entries) keeps its first.
        results.setdefault(str(t.user_attrs.get(POINT)), _outcome(t.user_attrs))
    return Arm(
        "optuna",
        agents,
        timing,
        results=results,
        trials=len(trials),
        spans=[
            (t.datetime_start.timestamp(), t.datetime_complete.timestamp())
            for t in trials
            if t.datetime_start and t.datetime_complete
        ],
        train_s=sum(float(t.user_attrs.get(keys.TRAIN_TIME, 0.0)) for t in trials),
    )


def _key(config: dict[str, Any]) -> str:
    from bench.optuna_trial import point_key

    return point_key(config)


def _outcome(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary.get(k) for k in (keys.VAL_ACCURACY, keys.VAL_LOSS, keys.FAILURE)}


def measure(arm: str, sweep: Path, agents: int, stack: int = 0) -> Arm:
    tmp = Path(tempfile.mkdtemp(prefix=f"sweepmap-peers-{arm}-"))
    try:
        if arm == "optuna":
            return run_optuna(sweep, agents, tmp)
        return run_sweepmap(sweep, agents, tmp, stack if arm == STACKED else 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stacked_lines(rounds: list[dict[str, Arm]], stack: int) -> list[str]:
    """The third arm, `localsweep run --stack K`: its runs/min against Optuna's, paired by
    round, and how far its results are from the same points trained one at a time (a stack
    sums in another order: float32 rounding, which batchnorm with Adam amplifies)."""
    ratios = [r[STACKED].runs_per_min / r["optuna"].runs_per_min for r in rounds]
    walls = [r[STACKED].wall_s for r in rounds]
    d_acc = d_loss = 0.0
    for r in rounds:
        for point, alone in r["sweepmap"].results.items():
            got = r[STACKED].results.get(point)
            if got is None or got.get(keys.FAILURE) != alone.get(keys.FAILURE):
                d_acc = d_loss = float("inf")
                continue
            if alone.get(keys.FAILURE) is None:
                d_acc = max(d_acc, abs(got[keys.VAL_ACCURACY] - alone[keys.VAL_ACCURACY]))
                d_loss = max(d_loss, abs(got[keys.VAL_LOSS] / alone[keys.VAL_LOSS] - 1))
    median = statistics.median
    return [
        "",
        f"Third arm, `localsweep run SWEEP --agents N --stack {stack}` (stacked replicates), "
        "in the same rounds:",
        "",
        f"- runs/min {median([r[STACKED].runs_per_min for r in rounds]):.1f}, wall "
        f"{median(walls):.1f} s ({min(walls):.1f}–{max(walls):.1f})",
        f"- stacked ÷ Optuna runs/min, paired by round: **{median(ratios):.2f}x** "
        f"({min(ratios):.2f} to {max(ratios):.2f}); target at least {TARGET_RATIO}x: "
        + ("met." if median(ratios) >= TARGET_RATIO else "not met."),
        f"- stacked against the same points one at a time: largest |Δ final val/accuracy| "
        f"{d_acc:.4f}, relative |Δ final val/loss| {d_loss:.4f}.",
    ]


def quick_sweep(config: dict[str, Any]) -> dict[str, Any]:
    """A copy with 4 points of 1 epoch: 2 levels of the first two `values` lists, 1 of the rest."""
    small: dict[str, Any] = yaml.safe_load(yaml.safe_dump(config))
    kept = 0
    for name, spec in small["parameters"].items():
        if name == "epochs":
            small["parameters"][name] = {"value": 1}
        elif len(spec.get("values", [])) > 1:
            spec["values"] = spec["values"][: 2 if kept < 2 else 1]
            kept += 1
    return small


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sweep", type=Path, default=Path("sweeps/lr_optimizer.yaml"))
    p.add_argument("--agents", type=int, default=2, help="sweepmap agents = Optuna workers")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds, each arm once")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    p.add_argument("--out", type=Path, default=None, help="markdown file to append to")
    p.add_argument("--stack", type=int, default=0, metavar="K",
                   help="a third arm: localsweep run --stack K (stacked replicates)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="4 points of 1 epoch, 1 round, no warm-up (the test)")  # fmt: skip
    args = p.parse_args(argv)
    if args.agents < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("--agents and --rounds must be >= 1, --warmup >= 0")
    command = " ".join(["python -m bench.peers", *(sys.argv[1:] if argv is None else argv)])
    _, config = load_sweep(args.sweep)
    with tempfile.TemporaryDirectory(prefix="sweepmap-peers-") as tmp:
        sweep = args.sweep
        if args.quick:
            config, args.rounds, args.warmup = quick_sweep(config), 1, 0
            sweep = Path(tmp) / args.sweep.name
            sweep.write_text(yaml.safe_dump(config, sort_keys=False))
        grid = len(all_points(config))
        facts, commit = machine_facts(), git_commit(ROOT)
        rounds: list[dict[str, Arm]] = []
        for r in range(args.warmup + args.rounds):
            arms = (*ARMS, STACKED) if args.stack else ARMS
            done = {arm: measure(arm, sweep, args.agents, args.stack) for arm in arms}
            label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}"
            print(label, *(f"{a.name} {a.wall_s:.1f} s ({a.runs_per_min:.1f} runs/min)"
                           for a in done.values()), flush=True)  # fmt: skip
            if r >= args.warmup:
                rounds.append(done)
    # The two arms that must agree exactly; the stacked one is compared on its own lines.
    exact = [{k: a for k, a in done.items() if k != STACKED} for done in rounds]
    wrong = disagreements([a for done in exact for a in done.values()], grid, LOSS_TOLERANCE)
    lines = markdown(args.sweep, command, facts, commit, grid, exact, wrong)
    lines += stacked_lines(rounds, args.stack) if args.stack else []
    text = "\n".join(lines) + "\n"
    print(text)
    if wrong:
        print("bench-peers: the arms' results disagree (above); nothing appended", file=sys.stderr)
        return 1
    if args.out:
        with args.out.open("a") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
