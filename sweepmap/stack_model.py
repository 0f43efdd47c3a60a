"""The k models of a stack as one: their stacked tensors (k, ...) and one forward for all.

Each run's parameters and buffers sit on a leading axis (`torch.func.stack_module_state`); a
copy of the first model on the meta device gives the structure. Plain-block CNNs run as one
grouped network (sweepmap/stack_cnn.py); every other model through
`vmap(functional_call(base, ...), randomness="different")`, its RNNs swapped for loops that
vmap can batch (sweepmap/stack_rnn.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from models import CNN
from sweepmap.stack_cnn import grouped_cnn, grouped_forward
from sweepmap.stack_rnn import loop_rnns

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


class StackedModel:
    """The k models as one: a structure on the meta device plus stacked tensors (k, ...)."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        base = copy.deepcopy(models[0]).to("meta")
        # Dropout at p=0 returns its input in training (ATen's _dropout_impl), but vmap's
        # "different" randomness would still draw and multiply a mask of ones.
        for name, module in list(base.named_modules()):
            if isinstance(module, _DROPOUTS) and module.p == 0:
                parent, _, child = name.rpartition(".")
                setattr(base.get_submodule(parent), child, nn.Identity())
        self.grouped = grouped_cnn(base)  # else vmap over functional_call
        self.base = loop_rnns(base)  # vmap has no batching rule for aten::gru / lstm
        self.state_keys = list(models[0].state_dict())
        params, buffers = stack_module_state([m.to(device) for m in models])
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers

    def __len__(self) -> int:
        """The runs in the stack."""
        return len(next(iter(self.params.values())))

    def select(self, rows: Sequence[int]) -> None:
        index = torch.tensor(list(rows), device=next(iter(self.params.values())).device)
        self.params = {k: v.detach()[index].requires_grad_() for k, v in self.params.items()}
        self.buffers = {k: v[index] for k, v in self.buffers.items()}

    def state_of(self, row: int) -> dict[str, Tensor]:
        """One run's state_dict, as `model.state_dict()` names it."""
        both = {**self.params, **self.buffers}
        return {k: both[k][row].detach().clone() for k in self.state_keys}

    def forward(self, x: Tensor, lengths: Tensor | None, shared: bool) -> Tensor:
        """Logits (k, B, classes): x (k, B, ...) and lengths (k, B), one batch per run, or
        x (B, ...) and lengths (B,) shared by every run (validation)."""
        if self.grouped:
            assert isinstance(self.base, CNN)
            return grouped_forward(self.base, self.params, self.buffers, x, shared)

        def one(params: Any, buffers: Any, x: Tensor, lengths: Tensor | None) -> Tensor:
            out: Tensor = functional_call(self.base, (params, buffers), (x, lengths))
            return out

        data_dim = None if shared else 0
        dims = (0, 0, data_dim, None if lengths is None else data_dim)
        out: Tensor = vmap(one, in_dims=dims, randomness="different")(
            self.params, self.buffers, x, lengths
        )
        return out


def row_losses(logits: Tensor, y: Tensor, weight: Tensor | None) -> Tensor:
    """Each run's mean cross-entropy (nn.CrossEntropyLoss, as `fit`): logits (k, B, classes),
    y (k, B) or (B,) shared; weight (k, B), 1 on real samples, 0 on padding -> (k,)."""
    y = y.expand(logits.shape[:2])
    each = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (k, B)
    if weight is None:
        return each.mean(dim=1)
    return (each * weight).sum(dim=1) / weight.sum(dim=1)


def stack_batches(
    parts: Sequence[tuple[Tensor, Tensor | None, Tensor]],
) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None, Tensor]:
    """Each run's (x, lengths, y) of one step -> x (k, B, ...), lengths (k, B) or None,
    y (k, B), weight (k, B) or None, sizes (k,) float: the runs' true batch sizes.

    Images come in equal batches (one permutation cut alike). Bucketed sequences are trimmed to
    each batch's longest and the epoch's one short batch falls at another step in each run, so
    they are padded to the longest and largest: zeros of length 1, weight 0 in the loss.
    """
    xs, lens, ys = zip(*parts, strict=True)
    sizes = torch.tensor([float(len(y)) for y in ys], device=ys[0].device)
    if all(x.shape == xs[0].shape for x in xs) and len(set(map(len, ys))) == 1:
        lengths = None if lens[0] is None else torch.stack(lens)
        return torch.stack(xs), lengths, torch.stack(ys), None, sizes
    k, batch = len(xs), max(map(len, ys))
    shape = [max(s) for s in zip(*(x.shape[1:] for x in xs), strict=True)]  # longest T
    x = xs[0].new_zeros(k, batch, *shape)
    y = ys[0].new_zeros(k, batch)
    weight = torch.zeros(k, batch, device=ys[0].device)
    lengths = None if lens[0] is None else torch.ones(k, batch, dtype=lens[0].dtype)
    for i, (xi, li, yi) in enumerate(parts):
        x[(i, slice(len(yi)), *map(slice, xi.shape[1:]))] = xi
        y[i, : len(yi)], weight[i, : len(yi)] = yi, 1.0
        if lengths is not None and li is not None:
            lengths[i, : len(yi)] = li
    return x, lengths, y, weight, sizes
