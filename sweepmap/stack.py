"""Train k runs as one stacked model: `fit_stacked(cfgs, data, device, logs)`.

The runs of a grid cell differ in `seed` (and may differ in lr and weight_decay). Each is built
as `train.py` builds it (`seed_everything(seed)`, then `build_model`), so it keeps its own
initial weights; the k models train as one (sweepmap/stack_model.py) with one optimizer
(sweepmap/stack_optim.py). Each run draws its own batches from its own generator, exactly as
`fit` draws them, so a step's input is (k, B, ...). Dropout masks differ from run to run but
come from the one global RNG (seeded by the last run's seed_everything), so a run's masks are
not those it would draw alone, and depend on its stack. Each run gets its own metrics per
epoch, FitResult and summary, computed as `fit` computes them; a run whose loss becomes NaN or
infinite fails alone and leaves the stack, the others go on; so does a run whose log raises
StopEarly (its sweep's early_terminate), stopped as `fit` stops it. Any other exception from a
log ends the whole stack, as it would end `fit`.

`can_stack(cfgs, device)` is "" or the one-line reason to train them one at a time instead.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from data import Dataset, Split
from models import build_model
from sweepmap import keys
from sweepmap.batches import eval_batches, train_batches
from sweepmap.config import RNN_MODELS, Config
from sweepmap.loop import FitResult, LogFn, errors_of, summarize
from sweepmap.outcome import StopEarly
from sweepmap.runtime import seed_everything
from sweepmap.stack_model import StackedModel, row_losses, stack_batches
from sweepmap.stack_optim import StackedOptimizer

# What the runs of one stack may differ in; everything else is one model, one optimizer.
MAY_DIFFER = ("seed", "lr", "weight_decay", "save_model")


def can_stack(cfgs: Sequence[Config], device: torch.device | None = None) -> str:
    """'' when these runs are worth training together on `device`, else why not, in a line.

    Without a device it answers whether `fit_stacked` can train them at all.
    """
    if len(cfgs) < 2:
        return "a single run: nothing to stack"
    first = cfgs[0].to_dict()
    differ = {k for cfg in cfgs[1:] for k, v in cfg.to_dict().items() if v != first[k]}
    if differ - set(MAY_DIFFER):
        names = ", ".join(sorted(differ - set(MAY_DIFFER)))
        return f"the runs differ in {names}; a stack's runs may differ in seed, lr, weight_decay"
    cfg = cfgs[0]
    rnn = cfg.model in RNN_MODELS
    if cfg.bf16:
        return "bf16: the stacked path is checked in float32 only"
    if rnn and cfg.bidirectional:
        return "a bidirectional RNN packs its batches (pack_padded_sequence): vmap cannot"
    if rnn and cfg.dropout > 0 and cfg.num_layers > 1:
        return "an RNN with dropout between layers packs its batches in training: vmap cannot"
    if cfg.as_sequence and cfg.batchnorm and cfg.model in ("cnn1d", "mlp"):
        # cnn1d's Norm picks the real steps by a boolean mask (a shape vmap cannot batch); the
        # MLP's would see the padding rows of the epoch's short batch (`stack_batches`)
        return f"model={cfg.model} with batchnorm on sequences: set batchnorm=False to stack"
    if rnn and device is not None and device.type == "cpu":
        # A stacked RNN steps through a Python loop of batched matmuls, padded to the longest
        # batch of the k: on the CPU that is compute-bound and measured 0.8-1.1x the runs one
        # at a time (bench/results.md, "Stacked replicates"); vmap trains it correctly.
        return f"model={cfg.model} on the CPU: a stack trains no faster than one run at a time"
    return ""


@dataclass
class _Run:
    """One run of the stack: its config, batch order, log and what it has so far."""

    cfg: Config
    generator: torch.Generator
    log: LogFn
    acc: MulticlassAccuracy
    f1: MulticlassF1Score
    result: FitResult = field(default_factory=lambda: FitResult(summary={}))
    best: dict[str, float] = field(default_factory=dict)
    pred: Tensor | None = None  # the last epoch's validation predictions (N,)
    ended: float = 0.0  # perf_counter when it left the stack


def fit_stacked(
    cfgs: Sequence[Config], data: Dataset, device: torch.device, logs: Sequence[LogFn]
) -> list[FitResult]:
    """Train `cfgs` as one stacked model; each run's epochs go to its own `logs[i]`.

    Returns one FitResult per config, in order, as `fit` would (summary, history, errors,
    failure, best_state when save_model). Raises ValueError with `can_stack`'s reason.
    """
    reason = can_stack(cfgs)  # what it cannot train; not whether it is worth it
    if reason:
        raise ValueError(f"cannot stack these runs: {reason}")
    importlib.import_module("torch._dynamo")  # as `fit`: torch.optim's one-off import
    runs, models = [], []
    for cfg, log in zip(cfgs, logs, strict=True):
        generator = seed_everything(cfg.seed)  # as train.py: the init, then the batch order
        models.append(build_model(cfg, data.info))
        n = data.info.num_classes  # the metrics `fit` keeps, one pair per run
        acc = MulticlassAccuracy(num_classes=n, average="micro").to(device)
        f1 = MulticlassF1Score(num_classes=n, average="macro").to(device)
        runs.append(_Run(cfg, generator, log, acc, f1))
    stack = StackedModel(models, device)
    opt = StackedOptimizer(cfgs, list(stack.params.values()))
    start = time.perf_counter()
    active = list(range(len(runs)))  # the stack's rows -> positions in `runs`
    cfg, train, valid = cfgs[0], data.train, data.valid
    train_len = None if train.lengths is None else train.lengths.cpu()
    valid_len = None if valid.lengths is None else valid.lengths.cpu()
    for epoch in range(1, cfg.epochs + 1):
        opt.set_epoch(epoch)
        stack.base.train()
        total = torch.zeros(len(active), device=device)
        epochs = [
            train_batches(train, train_len, cfg.batch_size, runs[i].generator) for i in active
        ]
        for parts in zip(*epochs, strict=True):
            x, lengths, y, weight, sizes = stack_batches(parts)
            loss = row_losses(stack.forward(x, lengths, shared=False), y, weight)  # (k,)
            opt.zero_grad()
            loss.sum().backward()  # the runs are independent: each row's grad is its own
            opt.step()
            total += loss.detach() * sizes
        ended = _end_epoch(stack, runs, active, epoch, total.tolist(), valid, valid_len, data)
        if ended:
            now = time.perf_counter()
            for row in ended:
                runs[active[row]].ended = now
            keep = [row for row in range(len(active)) if row not in ended]
            active = [active[row] for row in keep]
            if not active:
                break
            stack.select(keep)
            opt.select(keep, list(stack.params.values()))
    now = time.perf_counter()
    return [_finish(run, start, now, valid, data.info.num_classes) for run in runs]


def _end_epoch(
    stack: StackedModel,
    runs: list[_Run],
    active: list[int],
    epoch: int,
    totals: list[float],
    valid: Split,
    valid_len: Tensor | None,
    data: Dataset,
) -> set[int]:
    """Validate, record and log the epoch of every run in the stack; the rows that ended
    (failed, or stopped by their log's StopEarly)."""
    failed: dict[int, str] = {}
    for row, total in enumerate(totals):
        train_loss = total / len(data.train)
        if not math.isfinite(train_loss):
            failed[row] = f"train/loss is {train_loss} at epoch {epoch}"
    val_losses, logits = _evaluate(stack, valid, valid_len)
    for row, i in enumerate(active):
        run = runs[i]
        if row not in failed and not math.isfinite(val_losses[row]):
            failed[row] = f"val/loss is {val_losses[row]}"
        if row in failed:
            run.result.failure = failed[row]
            continue
        run.acc.update(logits[row], valid.y)
        run.f1.update(logits[row], valid.y)
        run.pred = logits[row].argmax(dim=1)
        metrics = {
            keys.EPOCH: epoch,
            keys.TRAIN_LOSS: totals[row] / len(data.train),
            keys.VAL_LOSS: val_losses[row],
            keys.VAL_ACCURACY: float(run.acc.compute()),
            keys.VAL_F1: float(run.f1.compute()),
        }
        run.acc.reset()
        run.f1.reset()
        _record(run, metrics, stack, row)
    return set(failed) | {row for row, i in enumerate(active) if runs[i].result.stopped}


def _record(run: _Run, metrics: dict[str, Any], stack: StackedModel, row: int) -> None:
    """The running bests, the best state and the log, as `fit` keeps them."""
    if not run.best:
        run.best = {k: -math.inf if keys.goal_of(k) == "max" else math.inf for k in keys.BEST_OF}
    improved = metrics[keys.VAL_ACCURACY] > run.best[keys.VAL_ACCURACY]
    for key, value in run.best.items():
        better = max if keys.goal_of(key) == "max" else min
        run.best[key] = better(value, metrics[key])
        metrics[keys.BEST_OF[key]] = run.best[key]
    if improved and run.cfg.save_model:
        run.result.best_state = stack.state_of(row)
    run.result.history.append(metrics)
    try:
        run.log(metrics)
    except StopEarly as err:  # its sweep's early_terminate: this run ends here, as in `fit`
        run.result.stopped = str(err)


def _evaluate(
    stack: StackedModel, split: Split, lengths_cpu: Tensor | None
) -> tuple[list[float], Tensor]:
    """Every run's val loss (as `loop.evaluate`: the mean over the split) and logits
    (k, N, classes) in the split's order, from the chunks `loop.evaluate` runs, each divided
    among the k models."""
    stack.base.eval()
    chunks, undo = eval_batches(split, lengths_cpu, models=len(stack))
    with torch.no_grad():
        logits = torch.cat([stack.forward(x, n, shared=True).float() for x, n in chunks], dim=1)
    if undo is not None:
        logits = logits[:, undo]
    return row_losses(logits, split.y, None).tolist(), logits


def _finish(run: _Run, start: float, now: float, valid: Split, n_classes: int) -> FitResult:
    result = run.result
    if result.failure is None and run.pred is not None:
        result.errors = errors_of(run.pred, valid.y, n_classes)
    # train_time: the stack's wall clock until this run left it (the runs shared it).
    return summarize(result, (run.ended or now) - start)
