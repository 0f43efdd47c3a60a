"""k runs of one grid cell trained together as one stacked model, each its own wandb run.

`run_stack(points, ...)` is `train.run_point` for k points that differ in seed (and lr or
weight_decay): each point is validated and its data loaded, then k wandb runs are opened in this
process (`reinit="create_new"`), `sweepmap.stack.fit_stacked` trains them as one model, and
each run is logged, concluded and finished as `run_point` does it, with its own record, claim,
summary and outcome. Runs that cannot be stacked (`can_stack`'s reason, said once per agent)
run one at a time through `run_point`, with the same results.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import train
from sweepmap import keys
from sweepmap.config import Config, ConfigError
from sweepmap.outcome import EXIT_ENVIRONMENT, EXIT_USAGE, Outcome
from sweepmap.record import Record
from sweepmap.wandb_exit import wandb_error

_said: set[str] = set()  # fallback reasons already printed by this agent


@dataclass(frozen=True)
class Point:
    """One run of the stack: its values and what run_point would get for it."""

    values: Mapping[str, Any]
    init: Mapping[str, Any]
    on_epoch: train.EpochFn | None
    record: Record | None
    claim: Path | None


def run_stack(points: Sequence[Point], say: Callable[[str], None] = print) -> list[Outcome]:
    """The outcome of each point, in order; KeyboardInterrupt ends every open run and
    propagates, as in run_point. `say` gets the one line of a fallback to one run at a time
    (once per reason and process)."""
    from data import DataUnavailable
    from sweepmap.runtime import pick_device
    from sweepmap.stack import can_stack

    outcomes: dict[int, Outcome] = {}
    cfgs: dict[int, Config] = {}
    for i, point in enumerate(points):
        try:
            cfgs[i] = train.prepare(point.values)
        except ConfigError as err:
            bad = Outcome.failure("invalid", f"config error: {err}", EXIT_USAGE)
            outcomes[i] = train.end_run(None, point.record, bad)
        except DataUnavailable as err:
            missing = Outcome.failure("error", str(err), EXIT_ENVIRONMENT)
            outcomes[i] = train.end_run(None, point.record, missing)
    order = sorted(cfgs)
    why = can_stack([cfgs[i] for i in order], pick_device(cfgs[order[0]])) if order else ""
    if len(order) < 2 or why:
        if why and why not in _said:
            _said.add(why)
            say(f"stack: one run at a time: {why}")
        for i in order:
            p = points[i]
            outcomes[i] = train.run_point(p.values, init=p.init, on_epoch=p.on_epoch,
                                          record=p.record, claim=p.claim)  # fmt: skip
    else:
        outcomes.update(_train_together([points[i] for i in order], [cfgs[i] for i in order],
                                        order))  # fmt: skip
    return [outcomes[i] for i in range(len(points))]


def _train_together(
    points: Sequence[Point], cfgs: Sequence[Config], where: Sequence[int]
) -> dict[int, Outcome]:
    import wandb

    from models import build_model, count_parameters
    from sweepmap.runtime import pick_device, set_threads
    from sweepmap.stack import fit_stacked

    runs: list[Any] = []
    try:
        for point, cfg in zip(points, cfgs, strict=True):
            runs.append(wandb.init(config=cfg.to_dict(), job_type="train", reinit="create_new",
                                   **point.init))  # fmt: skip
    except Exception as err:  # no server, a full disk: none of them trains
        failed = Outcome.failure("error", f"wandb.init: {wandb_error(err)}", EXIT_ENVIRONMENT)
        opened = [*runs, *[None] * (len(points) - len(runs))]
        return {i: train.end_run(run, p.record, failed)
                for i, p, run in zip(where, points, opened, strict=True)}  # fmt: skip
    start = time.perf_counter()
    device = pick_device(cfgs[0])
    threads = set_threads(cfgs[0])
    data = train.load_data(cfgs[0].dataset, cfgs[0].split_seed, cfgs[0].as_sequence, str(device))
    n_params = count_parameters(build_model(cfgs[0], data.info))
    print(f"{cfgs[0].model} on {cfgs[0].dataset}: {len(cfgs)} runs stacked, {n_params:,} "
          f"parameters each, {device}, {threads} thread(s)", flush=True)  # fmt: skip
    logs = [
        train.epoch_logger(cfg, run, train.epoch_fn(p.record, p.on_epoch, None))
        for p, cfg, run in zip(points, cfgs, runs, strict=True)
    ]
    for cfg, run in zip(cfgs, runs, strict=True):
        locked = Config.from_mapping(dict(run.config))
        if locked != cfg:  # the value that trains must be the value that was validated
            failed = Outcome.failure("error", train.differences(cfg, locked), EXIT_ENVIRONMENT)
            return {i: train.end_run(r, p.record, failed)
                    for i, p, r in zip(where, points, runs, strict=True)}  # fmt: skip
    try:
        results = fit_stacked(cfgs, data, device, logs)
    except KeyboardInterrupt as err:
        for p, run in zip(points, runs, strict=True):
            with contextlib.suppress(Exception):
                train.end_run(run, p.record, Outcome.interrupted(err))
        raise
    except Exception as err:  # the whole stack: every run ends with the one reason
        traceback.print_exc()
        failed = train.outcome_of_exception(err)
        return {i: train.end_run(r, p.record, failed)
                for i, p, r in zip(where, points, runs, strict=True)}  # fmt: skip
    outcomes = {}
    for i, p, cfg, run, result in zip(where, points, cfgs, runs, results, strict=True):
        # Said in every run's summary: a stack sums in another order than the run alone, and
        # a chaotic run (lr 0.1 with rmsprop) ends elsewhere (README: Performance).
        result.summary[keys.STACKED] = len(cfgs)
        train.conclude(cfg, run, result, n_params, start)
        outcomes[i] = train.end_run(run, p.record, train.outcome_of(result, run, p.claim))
    return outcomes
