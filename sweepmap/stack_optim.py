"""One torch optimizer over stacked parameters (k, ...), each row with its own lr and weight decay.

sweepmap's optimizers (SGD with momentum, Adam, AdamW, RMSprop; torch 2.13's fused and
foreach steps) are elementwise, so one of them over tensors stacked on a leading replicate axis
steps every row as k optimizers would, when their hyperparameters are equal: bit for bit, but
for the fused kernel's few elements past its last full vector, whose scalar path can round
an ulp apart (measured: 0 on tensors of 64 or more elements, up to 2.4e-7 on one of 7). Where
rows differ:

- lr: none of their states (momentum buffer, exp_avg, exp_avg_sq, square_avg) depends on lr, and
  the update is linear in it (`param.add_(buf, alpha=-lr)`, `addcdiv_(.., value=-lr / bc1)`,
  AdamW's `param.mul_(1 - lr * wd)`). So the inner optimizer steps at L = the largest lr, and
  each row moves `r = lr / L` of the way: `lerp(old, after, r)`. The row at L gets torch's own
  result (lerp at weight 1 is `after`); r <= 1 keeps the others' error within an
  ulp of the parameter.
- weight_decay: the inner optimizer gets 0 and each row's decay is applied as torch applies it,
  coupled (SGD, Adam, RMSprop: `grad += wd * param` before the step) or decoupled (AdamW:
  `param *= 1 - lr * wd`, from the parameter before the step).
- momentum (SGD, RMSprop) enters the state: rows must share it (`sweepmap.stack.can_stack`).

Schedulers scale the lr per epoch; each row's lr per epoch comes from its own torch scheduler
(`lr_table`), the same floats as its run alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sweepmap.config import Config
from sweepmap.loop import make_optimizer, make_scheduler


def lr_table(cfg: Config) -> list[float]:
    """The lr of epochs 1..cfg.epochs as `fit`'s optimizer and scheduler give them."""
    dummy = torch.zeros(1, requires_grad=True)  # no grad: step() leaves it alone
    opt = make_optimizer(cfg, [dummy])
    sched = make_scheduler(cfg, opt)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(float(opt.param_groups[0]["lr"]))
        if sched is not None:
            opt.step()  # so the scheduler does not warn of a step before the optimizer's
            sched.step()
    return lrs


def _rows(values: Tensor, like: Tensor) -> Tensor:
    """(k,) -> (k, 1, ..., 1), to broadcast one value per row over a stacked tensor."""
    return values.view(-1, *[1] * (like.dim() - 1))


class StackedOptimizer:
    """`make_optimizer` over the stacked parameters, stepping each row with its run's lr and
    weight decay. `set_epoch` before each epoch; `select` when rows leave the stack."""

    def __init__(self, cfgs: Sequence[Config], params: list[Tensor]) -> None:
        self.cfg = cfgs[0]  # the optimizer, momentum and scheduler: equal in a stack
        self.lrs = [lr_table(cfg) for cfg in cfgs]  # [row][epoch - 1]
        self.wds = [cfg.weight_decay for cfg in cfgs]
        self.decoupled = self.cfg.optimizer == "adamw"
        # Fixed for the stack's life: load_state_dict in `select` restores the inner
        # optimizer's weight_decay too, so it must not change when rows leave.
        self.own_decay = len(set(self.wds)) > 1
        self.params = params
        self._build(None)
        self.set_epoch(1)

    def _build(self, state: dict[str, Any] | None) -> None:
        inner_wd = 0.0 if self.own_decay else self.wds[0]
        self.opt = make_optimizer(self.cfg.replace(weight_decay=inner_wd), self.params)
        if state is not None:
            self.opt.load_state_dict(state)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        lrs = [table[epoch - 1] for table in self.lrs]
        self.top = max(lrs)
        self.opt.param_groups[0]["lr"] = self.top
        device = self.params[0].device
        self.lr = torch.tensor(lrs, device=device)  # (k,)
        self.ratio = None if len(set(lrs)) == 1 else self.lr / self.top
        self.wd = torch.tensor(self.wds, device=device)  # (k,)

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        if self.own_decay and not self.decoupled:
            for p in params:  # as torch: grad = grad.add(param, alpha=weight_decay)
                assert p.grad is not None
                p.grad.addcmul_(p, _rows(self.wd, p))
        keep_old = self.ratio is not None or (self.own_decay and self.decoupled)
        olds = [p.clone() for p in params] if keep_old else []
        self.opt.step()
        for p, old in zip(params if keep_old else [], olds, strict=True):
            if self.ratio is not None:
                torch.lerp(old, p, _rows(self.ratio, p), out=p)
            if self.own_decay and self.decoupled:  # AdamW: param *= 1 - lr * wd, before
                p.sub_(old * _rows(self.lr * self.wd, p))

    def select(self, rows: Sequence[int], params: list[Tensor]) -> None:
        """Keep the given rows (positions in the current stack) and their optimizer state,
        now over `params`, the stacked parameters cut to those rows."""
        k = len(self.lrs)
        state = self.opt.state_dict()
        index = torch.tensor(list(rows))
        for per_param in state["state"].values():
            for key, value in per_param.items():
                # per-element state (momentum, moments) has the rows; Adam's step is 0-d
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == k:
                    per_param[key] = value[index.to(value.device)]
        self.lrs = [self.lrs[r] for r in rows]
        self.wds = [self.wds[r] for r in rows]
        self.params = params
        self._build(state)
        self.set_epoch(self.epoch)
