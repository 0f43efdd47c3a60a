"""The training loop. It knows nothing about wandb: metrics go out through a `log` callable.

Data sit on the device as whole tensors and are batched by index, so a step does no per-sample
Python and no host sync; the loss is read back once per epoch.
"""

from __future__ import annotations

import copy
import importlib
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from data import Dataset, Split
from sweepmap import keys
from sweepmap.batches import eval_batches, train_batches
from sweepmap.config import Config
from sweepmap.outcome import StopEarly

LogFn = Callable[[dict[str, Any]], None]
# Misclassified positions kept per run: every one on digits and gestures (360 and 650
# samples), a summary-sized share of a diverged fashion run's 10,000.
MAX_MISCLASSIFIED = 1000


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the run is failed, not finished."""


@dataclass
class FitResult:
    summary: dict[str, Any]
    best_state: dict[str, torch.Tensor] | None = None
    failure: str | None = None
    stopped: str | None = None  # why the sweep's early_terminate rule ended it
    history: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, Any] = field(default_factory=dict)  # see `errors_of`; {} when failed


def make_optimizer(cfg: Config, params: Any) -> torch.optim.Optimizer:
    # One fused kernel per step over every parameter (torch has it for SGD, Adam and AdamW on
    # CPU and CUDA), else foreach: on the default gestures GRU an Adam step took 558 us
    # single-tensor, 419 us foreach and 154 us fused, against about 11 ms for a whole step.
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd, fused=True
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd, fused=True)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd, foreach=True
        )
    raise ValueError(f"optimizer={cfg.optimizer!r}")  # Config validated it already


def make_scheduler(cfg: Config, opt: torch.optim.Optimizer) -> Any:
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.epochs // 3), gamma=0.1)
    return None


def fit(
    model: nn.Module,
    data: Dataset,
    cfg: Config,
    device: torch.device,
    generator: torch.Generator,
    log: LogFn,
) -> FitResult:
    result = FitResult(summary={})
    # torch.optim imports torch._dynamo at a process's first optimizer (~1.2 s on 2 CPU cores):
    # import it before the clock starts, so train_time is the training loop in every run.
    importlib.import_module("torch._dynamo")
    start_all = time.perf_counter()
    try:
        _epochs(model, data, cfg, device, generator, log, result)
    except NonFiniteLoss as err:
        result.failure = str(err)
    except StopEarly as err:
        result.stopped = str(err)
    return summarize(result, time.perf_counter() - start_all)


def summarize(result: FitResult, train_time: float) -> FitResult:
    """The run's summary as `fit` gives it (and the stacked path, sweepmap/stack.py): the last
    epoch's metrics and bests, the epochs completed, the loop's time, what the final model got
    wrong, and why it failed or stopped."""
    last = result.history[-1] if result.history else {}
    result.summary = {**last, keys.EPOCHS_COMPLETED: len(result.history)}
    result.summary[keys.TRAIN_TIME] = train_time
    result.summary.update(result.errors)
    if result.failure:
        result.summary[keys.FAILURE] = result.failure
    if result.stopped:
        result.summary[keys.STOPPED] = result.stopped
    return result


def _epochs(
    model: nn.Module,
    data: Dataset,
    cfg: Config,
    device: torch.device,
    generator: torch.Generator,
    log: LogFn,
    result: FitResult,
) -> None:
    opt = make_optimizer(cfg, model.parameters())
    sched = make_scheduler(cfg, opt)
    loss_fn = nn.CrossEntropyLoss()
    n_classes = data.info.num_classes
    val_acc = MulticlassAccuracy(num_classes=n_classes, average="micro").to(device)
    val_f1 = MulticlassF1Score(num_classes=n_classes, average="macro").to(device)
    val_pred = _Predictions()  # the last epoch's are the final model's: no extra pass
    best = {key: -math.inf if keys.goal_of(key) == "max" else math.inf for key in keys.BEST_OF}
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.bf16 and device.type == "cuda"
        else nullcontext()
    )
    train, valid = data.train, data.valid
    train_len = None if train.lengths is None else train.lengths.cpu()
    valid_len = None if valid.lengths is None else valid.lengths.cpu()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        # Sequences come in length buckets (sweepmap/batches.py), in the generator's order.
        for x, lengths, y in train_batches(train, train_len, cfg.batch_size, generator):
            with autocast:
                loss = loss_fn(model(x, lengths), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().float() * len(y)
        if sched is not None:
            sched.step()
        train_loss = float(total) / len(train)  # the one host sync of the epoch
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"train/loss is {train_loss} at epoch {epoch}")
        val_pred.reset()
        val_loss = evaluate(model, valid, valid_len, loss_fn, (val_acc, val_f1, val_pred), autocast)
        metrics = {
            keys.EPOCH: epoch,
            keys.TRAIN_LOSS: train_loss,
            keys.VAL_LOSS: val_loss,
            keys.VAL_ACCURACY: float(val_acc.compute()),
            keys.VAL_F1: float(val_f1.compute()),
        }
        val_acc.reset()
        val_f1.reset()
        improved = metrics[keys.VAL_ACCURACY] > best[keys.VAL_ACCURACY]
        for key, value in best.items():
            better = max if keys.goal_of(key) == "max" else min
            best[key] = better(value, metrics[key])
            metrics[keys.BEST_OF[key]] = best[key]
        if improved and cfg.save_model:
            result.best_state = copy.deepcopy(model.state_dict())
        result.history.append(metrics)
        try:
            log(metrics)
        except StopEarly:  # the epoch's predictions are the stopped run's final model's
            result.errors = errors_of(val_pred.all(), valid.y, n_classes)
            raise
    result.errors = errors_of(val_pred.all(), valid.y, n_classes)


class _Predictions:
    """Takes `evaluate`'s logits like a metric does and keeps their argmax, as
    MulticlassAccuracy takes it: the final matrix agrees with the last val/accuracy."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, _y: torch.Tensor) -> None:
        self.batches.append(logits.argmax(dim=1))

    def reset(self) -> None:
        self.batches = []

    def all(self) -> torch.Tensor:
        return torch.cat(self.batches)


def errors_of(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, Any]:
    """The confusion matrix (rows: true class, columns: predicted) and the valid positions
    predicted wrong, ascending, with their predictions. Positions past MAX_MISCLASSIFIED (a
    diverged run on a large split) are left out; the matrix still counts them."""
    # (true, predicted) pairs counted in one bincount
    counts = torch.bincount(y * n_classes + pred, minlength=n_classes**2)
    wrong = torch.nonzero(pred != y).flatten()[:MAX_MISCLASSIFIED]
    return {
        keys.VAL_CONFUSION: counts.reshape(n_classes, n_classes).tolist(),
        keys.VAL_MISCLASSIFIED: wrong.tolist(),
        keys.VAL_MISCLASSIFIED_PRED: pred[wrong].tolist(),
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    lengths_cpu: torch.Tensor | None,
    loss_fn: nn.Module,
    metrics: tuple[Any, ...],
    autocast: Any,
) -> float:
    """The mean loss over the split; each metric updated once, with every row's logits in the
    split's order (the chunks run in length order: sweepmap/batches.py)."""
    model.eval()
    chunks, undo = eval_batches(split, lengths_cpu)
    parts = []
    for x, lengths in chunks:
        with autocast:
            parts.append(model(x, lengths).float())
    logits = torch.cat(parts) if undo is None else torch.cat(parts)[undo]
    loss = float(loss_fn(logits, split.y))
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"val/loss is {loss}")
    for metric in metrics:
        metric.update(logits, split.y)
    return loss
