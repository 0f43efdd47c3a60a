"""Runs/min of a grid cell's runs one at a time (`fit`) against stacked (`fit_stacked`), side
by side in one process, one torch thread, interleaved rounds (which goes first alternates).

    python -m bench.stacking [--rounds 3] [--ks 3 6 12] [--gru-ks 2 3 6 12] [--out FILE]

Digits: the runs of sweeps/lr_optimizer.yaml for one optimizer, k = 3 (one lr, its 3 seeds),
6 (two lrs) and 12 (all four), 8 epochs each as the study has them. Gestures: the default GRU
(hidden 64, 2 layers, Adam 1e-3), k seeds, `--gru-epochs` epochs; the data from
SWEEPMAP_GESTURES_ZIP or the cache (skipped when neither has them). A measurement is the wall
clock around building the k models and training them, validation included. Every stacked run's
final metrics are compared with the same run alone, and with the run alone in channels-last
memory: how far a benign change of kernels moves the run by itself.
"""

from __future__ import annotations

import argparse
import importlib
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.facts import ROOT, machine_busy_s, machine_facts
from bench.peers_report import git_commit
from bench.report import append
from data import Dataset, DataUnavailable, load_dataset
from models import build_model
from sweepmap import keys
from sweepmap.config import Config
from sweepmap.loop import FitResult, fit
from sweepmap.runtime import seed_everything
from sweepmap.stack import fit_stacked

CPU = torch.device("cpu")
FINAL = (keys.VAL_ACCURACY, keys.VAL_LOSS)


def study_cells(sweep: Path, optimizer: str, k: int) -> list[Config]:
    """The first k runs of the study for `optimizer`: lr by lr, each with all its seeds."""
    params = yaml.safe_load(sweep.read_text())["parameters"]
    fixed = {name: p["value"] for name, p in params.items() if "value" in p}
    seeds, lrs = params["seed"]["values"], params["lr"]["values"]
    runs = [{"lr": lr, "seed": s} for lr in lrs for s in seeds][:k]
    return [Config.from_mapping({**fixed, **run, "optimizer": optimizer}) for run in runs]


def one_at_a_time(
    cfgs: list[Config], data: Dataset, channels_last: bool = False
) -> list[FitResult]:
    results = []
    for cfg in cfgs:
        generator = seed_everything(cfg.seed)  # as train.py
        model = build_model(cfg, data.info)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        results.append(fit(model, data, cfg, CPU, generator, lambda m: None))
    return results


def stacked(cfgs: list[Config], data: Dataset) -> list[FitResult]:
    return fit_stacked(cfgs, data, CPU, [lambda m: None] * len(cfgs))


Trainer = Callable[[list[Config], Dataset], list[FitResult]]


def timed(fn: Trainer, cfgs: list[Config], data: Dataset) -> tuple[float, float, list[FitResult]]:
    """(wall s, other processes' CPU-seconds per wall second, results) of `fn(cfgs, data)`."""
    own, busy, start = _own_cpu(), machine_busy_s(), time.perf_counter()
    results = fn(cfgs, data)
    wall = time.perf_counter() - start
    other = (machine_busy_s() - busy - (_own_cpu() - own)) / wall
    return wall, max(0.0, other), results


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gap(a: list[FitResult], b: list[FitResult]) -> dict[str, float]:
    """Largest |difference| per final metric between the same runs in `a` and `b`."""
    return {
        key: max(abs(x.summary[key] - y.summary[key]) for x, y in zip(a, b, strict=True))
        for key in FINAL
    }


def spread(values: list[float], digits: int = 1) -> str:
    mid, low, high = statistics.median(values), min(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def compare(
    label: str, cfgs_of: Callable[[int], list[Config]], ks: list[int], data: Dataset, rounds: int
) -> dict[int, dict[str, Any]]:
    """Per k: runs/min one at a time and stacked, per round, and the results' gaps."""
    out: dict[int, dict[str, Any]] = {
        k: {"alone": [], "stacked": [], "ratio": [], "other": []} for k in ks
    }
    for r in range(rounds):
        for k in ks:
            cfgs, row = cfgs_of(k), out[k]
            fns: dict[str, Trainer] = {"alone": one_at_a_time, "stacked": stacked}
            order = ["alone", "stacked"] if r % 2 == 0 else ["stacked", "alone"]
            results = {}
            for name in order:
                wall, other, results[name] = timed(fns[name], cfgs, data)
                row[name].append(60 * k / wall)
                row["other"].append(other)
            row["ratio"].append(row["stacked"][-1] / row["alone"][-1])
            if r == 0:
                row["gap"] = gap(results["stacked"], results["alone"])
                row["results"] = results["alone"]
            alone_, stack_ = row["alone"][-1], row["stacked"][-1]
            print(f"{label} round {r} k={k}: one at a time {alone_:.1f} runs/min, "
                  f"stacked {stack_:.1f}, ratio {stack_ / alone_:.2f}", flush=True)  # fmt: skip
    return out


def table(out: dict[int, dict[str, Any]], floor: list[FitResult] | None = None) -> list[str]:
    """The rows; `floor`: the largest k's runs alone in channels-last memory, to compare the
    stack's gaps with the gaps a change of kernels opens in the same runs alone."""
    extra = " | Δ alone, NCHW vs channels-last" if floor else ""
    lines = [
        "| k | one at a time, runs/min | stacked, runs/min | stacked ÷ one at a time "
        f"| Δ stacked vs alone: val/accuracy, val/loss{extra} | other work (cores) |",
        "|--:|--:|--:|--:|--:|" + ("--:|" if floor else "") + "--:|",
    ]
    for k, row in out.items():
        g = row["gap"]
        cells = f"{g[keys.VAL_ACCURACY]:.4f}, {g[keys.VAL_LOSS]:.4f}"
        if floor:
            f = gap(floor[:k], row["results"])
            cells += f" | {f[keys.VAL_ACCURACY]:.4f}, {f[keys.VAL_LOSS]:.4f}"
        lines.append(
            f"| {k} | {spread(row['alone'])} | {spread(row['stacked'])} "
            f"| {spread(row['ratio'], 2)}x | {cells} | {spread(row['other'], 2)} |"
        )
    return lines


def gestures_or_none() -> Dataset | None:
    try:
        return load_dataset("gestures")
    except DataUnavailable as err:
        print(f"gestures skipped: {err}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=ROOT / "sweeps" / "lr_optimizer.yaml")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="*", default=[3, 6, 12])
    parser.add_argument("--gru-ks", type=int, nargs="*", default=[2, 3, 6, 12])
    parser.add_argument("--gru-epochs", type=int, default=1)
    parser.add_argument("--gru-rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, help="append the section to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")  # torch.optim's one-off import, before any clock
    facts = machine_facts()
    commit = git_commit(ROOT)
    digits = load_dataset("digits")
    cells = lambda k: study_cells(args.sweep, args.optimizer, k)  # noqa: E731
    stacked(cells(2), digits)  # warm both paths once: first-call costs out of round 0
    one_at_a_time(cells(1), digits)
    results = compare("digits", cells, args.ks, digits, args.rounds)
    floor = one_at_a_time(cells(max(args.ks)), digits, channels_last=True)
    lines = [
        "",
        "## Stacked replicates: one at a time against stacked (`sweepmap/stack.py`)",
        "",
        f"`python -m bench.stacking --rounds {args.rounds} --ks {' '.join(map(str, args.ks))} "
        f"--gru-ks {' '.join(map(str, args.gru_ks))} --gru-epochs {args.gru_epochs}` at commit "
        f"{commit}, {facts['date']}; {facts['cpu']}, one torch thread, {facts['versions']}. "
        "Medians (ranges) over the rounds; the ratio is paired within a round.",
        "",
        f"Digits, `{args.sweep.name}` with optimizer={args.optimizer}: k runs = k // 3 lrs x "
        "3 seeds, 8 epochs each, the CNN grouped (`sweepmap/stack_cnn.py`).",
        "",
        *table(results, floor),
        "",
        "- Δ: the largest |difference| in final val/accuracy and val/loss over the k runs.",
        "- other work: CPU-seconds of other processes on the machine per second of wall.",
    ]
    gestures = gestures_or_none()
    if gestures is not None and args.gru_ks:
        base = Config(dataset="gestures", model="gru", epochs=args.gru_epochs)
        seeds = lambda k: [base.replace(seed=s) for s in range(k)]  # noqa: E731
        stacked(seeds(2), gestures)
        gru = compare("gru", seeds, args.gru_ks, gestures, args.gru_rounds)
        lines += [
            "",
            f"Gestures, default GRU, k seeds, {args.gru_epochs} epoch(s) each, through vmap "
            "with the RNN as a loop (`sweepmap/stack_rnn.py`):",
            "",
            *table(gru),
        ]
    append(lines, args.out)


if __name__ == "__main__":
    main()
