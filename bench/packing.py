"""Agents per device: runs per minute of k in-process agents sharing one GPU (or the CPU).

    python -m bench.packing --sweep sweeps/gestures_hidden_dropout.yaml --agents 1,2,4,8 \\
        --runs 32 --bf16 --out bench/packing.md

A small model leaves most of a GPU idle; k agents on one card train k runs at once, each
a little slower. Every row runs the first `--runs` points of the sweep with k local agents
(`localsweep agent --count`) in a fresh store, wandb offline, on the device `device=auto`
picks (cuda first), as `bench.sweep_throughput` measures the CPU. `--bf16` repeats each k
with bf16 autocast, on a GPU only. `--device cpu` forces the CPU, which is how the tests run
this on machines without a GPU.
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
from localsweep.grid import load_sweep


def variant(config: dict[str, Any], folder: Path, name: str, **values: Any) -> Path:
    """The sweep with some parameters fixed to one value, as a YAML file in `folder`."""
    fixed = {**config, "parameters": dict(config["parameters"])}
    for key, value in values.items():
        fixed["parameters"][key] = {"value": value}
    path = folder / name
    path.write_text(yaml.safe_dump(fixed, sort_keys=False))
    return path


def table(rows: Sequence[tuple[int, bool, Measurement]]) -> list[str]:
    lines = [
        "| agents on the device | bf16 | runs | wall (s) | runs/min | speed-up over 1 agent "
        "| train_time per run (s) | overhead share |",
        "|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    base = {bf16: m.runs_per_min for k, bf16, m in rows if k == 1}
    for k, bf16, m in rows:
        speedup = f"{m.runs_per_min / base[bf16]:.2f}x" if bf16 in base else "-"
        lines.append(
            f"| {k} | {'yes' if bf16 else 'no'} | {m.runs} | {m.wall_s:.1f} | "
            f"{m.runs_per_min:.1f} | {speedup} | {m.train_s / max(m.runs, 1):.2f} | "
            f"{m.overhead:.1%} |"
        )
    return lines


def report(
    sweep: Path, command: str, facts: dict[str, str], rows: Sequence[tuple[int, bool, Measurement]]
) -> list[str]:
    fp32 = [m for _, bf16, m in rows if not bf16]
    diff, compared = max_difference(fp32)
    best = max(rows, key=lambda row: row[2].runs_per_min)
    return [
        "# Agents per device",
        "",
        f"Sweep `{sweep.as_posix()}` (its own epochs), measured with `{command}`.",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        *table(rows),
        "",
        f"- Most runs per minute: {best[0]} agent(s), bf16 {'on' if best[1] else 'off'}, "
        f"{best[2].runs_per_min:.1f} runs/min.",
        "- train_time per run: each run's training loop, mean over the row; it grows with k as "
        "the agents share the device, while runs/min says whether sharing still pays.",
        "- overhead share: (agents × wall − Σ train_time) / (agents × wall), as in "
        "`bench/results.md`.",
        f"- Same results with any k (fp32 rows): largest difference in final val/accuracy of "
        f"one grid point {diff:.1e} ({compared} points compared).",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.packing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sweep", type=Path, default=Path("sweeps/gestures_hidden_dropout.yaml"))
    p.add_argument("--agents", default="1,2,4,8", help="agent counts (default: %(default)s)")
    p.add_argument("--runs", type=int, default=32, help="grid points per row (default: 32)")
    p.add_argument("--bf16", action="store_true", help="also every count with bf16 autocast")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=None, help="markdown file to (re)write")
    args = p.parse_args(argv)
    try:
        counts = [int(k) for k in args.agents.split(",")]
    except ValueError:
        p.error(f"--agents {args.agents!r}: expected counts such as 1,2,4,8")
    if any(k < 1 for k in counts) or args.runs < 1:
        p.error("--agents and --runs: each must be >= 1")
    facts = machine_facts()
    on_gpu = args.device != "cpu" and facts["device"].startswith("cuda")
    if args.device == "cuda" and not on_gpu:
        p.error(f"--device cuda: no GPU here; the device is {facts['device']}")
    if args.bf16 and not on_gpu:
        p.error(f"--bf16: bf16 autocast needs a GPU; the device here is {facts['device']}")
    command = " ".join(["python -m bench.packing", *(sys.argv[1:] if argv is None else argv)])
    _, config = load_sweep(args.sweep)
    rows: list[tuple[int, bool, Measurement]] = []
    with tempfile.TemporaryDirectory(prefix="sweepmap-packing-") as tmp:
        for bf16 in (False, True) if args.bf16 else (False,):
            # The file keeps the sweep's name, so its store and logs read like the real one's.
            path = variant(config, Path(tmp), args.sweep.name, bf16=bf16, device=args.device)
            for k in counts:
                m = measure(path, "inprocess", k, args.runs)
                rows.append((k, bf16, m))
                print(*table([(k, bf16, m)])[2:], flush=True)
    publish(report(args.sweep, command, facts, rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
