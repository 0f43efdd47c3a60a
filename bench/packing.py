"""Agents per device against stacks: runs per minute of k in-process agents sharing one GPU
(or the CPU), and of one agent training k runs at a time as one stacked model.

    python -m bench.packing --sweep sweeps/gestures_hidden_dropout.yaml --agents 1,2,4,8 \\
        --runs 48 --cell hidden_size=64,dropout=0.0 --stack 3,12,48 --bf16 --out bench/packing.md

A small model leaves most of a GPU idle. Two ways to fill it: k agents on one card train k
runs at once, each a little slower (packing); or one agent trains k runs of a grid cell as one
stacked model (`localsweep agent --stack k`, sweepmap/stack.py). Every row runs the first
`--runs` points of the sweep in a fresh store, wandb offline, on the device `device=auto` picks
(cuda first), as `bench.sweep_throughput` measures the CPU. `--cell KEY=VALUE,...` fixes every
varied parameter but the seed, and gives the seed `--runs` values: the replicates of one
cell, the runs a stack takes together, so that every row trains the same runs. `--bf16`
repeats the packing rows with bf16 autocast, on a GPU only; stacks are checked in float32 only
(`can_stack`), so they have no bf16 rows. `--device cpu` forces the CPU, which is how the tests
run this on machines without a GPU. A stacking row says how many of its runs a stack took: a
model `can_stack` refuses trains one at a time, and the row shows it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.facts import machine_facts
from bench.report import max_difference, publish
from bench.sweep_throughput import Measurement, measure
from localsweep.agent import MAX_STACK
from localsweep.grid import load_sweep


def variant(config: dict[str, Any], folder: Path, name: str, **values: Any) -> Path:
    """The sweep with some parameters fixed to one value, as a YAML file in `folder`."""
    fixed = {**config, "parameters": dict(config["parameters"])}
    for key, value in values.items():
        fixed["parameters"][key] = {"value": value}
    path = folder / name
    path.write_text(yaml.safe_dump(fixed, sort_keys=False))
    return path


def cell_variant(
    config: dict[str, Any], folder: Path, name: str, cell: dict[str, Any], runs: int, **values: Any
) -> Path:
    """The sweep reduced to one cell's replicates: `cell` fixed, the seed 0..runs-1."""
    fixed = {
        **config,
        "parameters": {**config["parameters"], "seed": {"values": list(range(runs))}},
    }
    return variant(fixed, folder, name, **cell, **values)


def parse_cell(text: str, config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(KEY=VALUE,... as values, "") or ({}, why not): every varied parameter but the seed."""
    cell: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in config["parameters"]:
            known = ", ".join(config["parameters"])
            return {}, f"--cell {item!r}: expected KEY=VALUE with KEY one of {known}"
        cell[key] = yaml.safe_load(value)
    varied = [k for k, v in config["parameters"].items()
              if k != "seed" and "value" not in v and k not in cell]  # fmt: skip
    if varied:
        return {}, f"--cell {text!r}: still varied: {', '.join(varied)}; fix them too"
    return cell, ""


Row = tuple[int, int, bool, Measurement]  # (agents, runs a stack, bf16, measurement)


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| agents on the device | runs a stack | bf16 | runs | wall (s) | runs/min "
        "| speed-up over 1 agent | runs stacked | train_time per run (s) | overhead share |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    base = {bf16: m.runs_per_min for k, stack, bf16, m in rows if k == 1 and not stack}
    for k, stack, bf16, m in rows:
        speedup = f"{m.runs_per_min / base[bf16]:.2f}x" if bf16 in base else "-"
        # A stacked run's train_time is its stack's loop: shares of one wall, not a sum.
        share = f"{m.overhead:.1%}" if not stack else "-"
        lines.append(
            f"| {k} | {stack or '-'} | {'yes' if bf16 else 'no'} | {m.runs} | {m.wall_s:.1f} | "
            f"{m.runs_per_min:.1f} | {speedup} | {m.stacked} | "
            f"{m.train_s / max(m.runs, 1):.2f} | {share} |"
        )
    return lines


def report(sweep: Path, command: str, facts: dict[str, str], rows: Sequence[Row]) -> list[str]:
    fp32 = [m for _, _, bf16, m in rows if not bf16]
    diff, compared = max_difference(fp32)
    best = max(rows, key=lambda row: row[3].runs_per_min)
    how = f"{best[0]} agent(s)" + (f", stacks of {best[1]}" if best[1] else "")
    return [
        "# Agents per device, and stacks",
        "",
        f"Sweep `{sweep.as_posix()}`, measured with `{command}`.",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        *table(rows),
        "",
        f"- Most runs per minute: {how}, bf16 {'on' if best[2] else 'off'}, "
        f"{best[3].runs_per_min:.1f} runs/min.",
        "- runs stacked: the row's runs that trained in a stack of 2 or more (their summary's "
        "`stacked`); a stacking row with fewer than its runs had some trained one at a time.",
        "- train_time per run: each run's training loop, mean over the row; it grows with k as "
        "the agents share the device, while runs/min says whether sharing still pays.",
        "- overhead share: (agents × wall − Σ train_time) / (agents × wall), as in "
        "`bench/results.md`.",
        f"- Same results with any k (fp32 rows): largest difference in final val/accuracy of "
        f"one grid point {diff:.1e} ({compared} points compared). A stack sums in another "
        "float32 order than its runs alone (README, Performance), so stacking rows may differ.",
    ]


def counts_of(text: str, flag: str, low: int, high: int | None = None) -> tuple[list[int], str]:
    """(the counts in "1,2,4", "") or ([], why not)."""
    try:
        counts = [int(k) for k in filter(None, text.split(","))]
    except ValueError:
        return [], f"{flag} {text!r}: expected counts such as 1,2,4,8"
    bound = f"in {low}..{high}" if high else f">= {low}"
    if any(k < low or (high is not None and k > high) for k in counts):
        return [], f"{flag} {text!r}: each must be {bound}"
    return counts, ""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.packing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sweep", type=Path, default=Path("sweeps/gestures_hidden_dropout.yaml"))
    p.add_argument("--agents", default="1,2,4,8", help="agent counts (default: %(default)s)")
    p.add_argument("--stack", default="", help="runs a stack, one agent each (e.g. 3,12,48)")
    p.add_argument("--cell", default="", help="KEY=VALUE,...: one cell's replicates per row")
    p.add_argument("--runs", type=int, default=32, help="grid points per row (default: 32)")
    p.add_argument("--epochs", type=int, default=None, help="epochs a run (default: the sweep's)")
    p.add_argument("--bf16", action="store_true", help="also every count with bf16 autocast")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=None, help="markdown file to (re)write")
    args = p.parse_args(argv)
    counts, why = counts_of(args.agents, "--agents", 1)
    stacks, why_stack = counts_of(args.stack, "--stack", 2, MAX_STACK)
    if why or why_stack or args.runs < 1:
        p.error(why or why_stack or f"--runs {args.runs}: must be >= 1")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs}: must be >= 1")
    if not counts and not stacks:
        p.error("--agents and --stack: nothing to measure")
    _, config = load_sweep(args.sweep)
    cell, why = parse_cell(args.cell, config) if args.cell else ({}, "")
    if why:
        p.error(why)
    if stacks and not cell:
        p.error("--stack: needs --cell, so that every row trains the same cell's replicates")
    if stacks and max(stacks) > args.runs:
        p.error(f"--stack {max(stacks)}: more than --runs {args.runs}")
    facts = machine_facts()
    on_gpu = args.device != "cpu" and facts["device"].startswith("cuda")
    if args.device == "cuda" and not on_gpu:
        p.error(f"--device cuda: no GPU here; the device is {facts['device']}")
    if args.bf16 and not on_gpu:
        p.error(f"--bf16: bf16 autocast needs a GPU; the device here is {facts['device']}")
    command = " ".join(["python -m bench.packing", *(sys.argv[1:] if argv is None else argv)])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sweepmap-packing-") as tmp:
        for bf16 in (False, True) if args.bf16 else (False,):
            # The file keeps the sweep's name, so its store and logs read like the real one's.
            values = {"bf16": bf16, "device": args.device}
            values |= {"epochs": args.epochs} if args.epochs else {}
            path = (cell_variant(config, Path(tmp), args.sweep.name, cell, args.runs, **values)
                    if cell else variant(config, Path(tmp), args.sweep.name, **values))  # fmt: skip
            arms = [(k, 0) for k in counts] + ([(1, k) for k in stacks] if not bf16 else [])
            for agents, stack in arms:
                m = measure(path, "inprocess", agents, args.runs, stack)
                rows.append((agents, stack, bf16, m))
                print(*table(rows[-1:])[2:], flush=True)
    publish(report(args.sweep, command, facts, rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
