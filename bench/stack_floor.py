"""How far a stacked training step is from the CPU's arithmetic floor, on the default digits CNN.

    python -m bench.stack_floor [--k 6] [--rounds 5]

One training step (forward, loss, backward; no optimizer) of three things, one torch thread,
interleaved rounds, medians:
- one model at the study's batch (B = 32): what a run one at a time does per step;
- the stack of k models at B (`StackedModel`, as `fit_stacked` runs it);
- one model at batch k * B, channels-last as the stack: the same arithmetic, ungrouped.

The stack at or near the third says the stacked loop is compute-bound: no rewrite of the
stack gets it faster than that ratio on this machine, and k models cost k times one's
arithmetic. Why the whole study stacked stays under 2x the runs one at a time on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.facts import machine_facts
from bench.stacking import spread
from data import load_dataset
from localsweep.agent import MAX_STACK
from models import build_model
from sweepmap.config import Config
from sweepmap.runtime import seed_everything
from sweepmap.stack_model import StackedModel, row_losses

BATCH = 32
Step = Callable[[], None]


def steps(k: int) -> dict[str, Step]:
    """The three steps, each on real digits images, labels and the study's CNN."""
    data = load_dataset("digits", 0)
    cfg = Config.from_mapping({"dataset": "digits", "model": "cnn"})
    x, y = data.train.x, data.train.y
    models = []
    for seed in range(k):
        seed_everything(seed)
        models.append(build_model(cfg.replace(seed=seed), data.info))
    one, stack = models[0], StackedModel(models, torch.device("cpu"))
    stack.base.train()
    one.train()

    # In the stack's memory order: its kernels' best on the same arithmetic (torch's stubs
    # omit memory_format from Module.to).
    dense = build_model(cfg, data.info).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    dense.train()

    def alone(model: torch.nn.Module, n: int) -> Step:
        xb, yb = x[:n], y[:n]
        if model is dense:
            xb = xb.contiguous(memory_format=torch.channels_last)

        def step() -> None:
            F.cross_entropy(model(xb, None), yb).backward()

        return step

    xs, ys = x[:BATCH].expand(k, *x[:BATCH].shape), y[:BATCH].expand(k, BATCH)

    def stacked() -> None:
        row_losses(stack.forward(xs, None, shared=False), ys, None).sum().backward()

    return {
        f"one model, batch {BATCH}": alone(one, BATCH),
        f"stack of {k}, batch {BATCH} each": stacked,
        f"one model, batch {k * BATCH}, channels-last (the stack's arithmetic)": alone(
            dense, k * BATCH
        ),
    }


def per_step_ms(step: Step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.stack_floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--k", type=int, default=6, help="models in the stack (default 6)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=100, help="steps a measurement (default 100)")
    args = p.parse_args()
    if not 2 <= args.k <= MAX_STACK:
        p.error(f"--k {args.k}: a stack has 2 to {MAX_STACK} runs")
    if args.rounds < 1 or args.steps < 1:
        p.error("--rounds and --steps: each must be >= 1")
    torch.set_num_threads(1)
    named = steps(args.k)
    for step in named.values():  # warm-up: first calls allocate and pick kernels
        per_step_ms(step, 10)
    times: dict[str, list[float]] = {name: [] for name in named}
    for r in range(args.rounds):
        order = list(named) if r % 2 == 0 else list(reversed(named))
        for name in order:
            times[name].append(per_step_ms(named[name], args.steps))
    facts = machine_facts()
    print(f"python -m bench.stack_floor --k {args.k} --rounds {args.rounds} --steps {args.steps}; "
          f"{facts.get('cpu', '')}; one thread")  # fmt: skip
    med = {name: statistics.median(ts) for name, ts in times.items()}
    one, stack, dense = (med[name] for name in named)
    for name, ts in times.items():
        print(f"- {name}: {spread(ts, 2)} ms a step")
    print(f"- the stack against {args.k} steps one at a time: {args.k * one / stack:.2f}x")
    print(f"- the stack against its arithmetic's floor: {stack / dense:.2f} of the dense time")


if __name__ == "__main__":
    main()
