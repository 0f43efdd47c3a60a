"""A unidirectional RNN reads each sequence's last true step from the padded run instead of
packing: the logits and the gradients equal the packed ones for every RNN option."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from models import build_model
from models.rnn import RNN
from sweepmap.config import Config

from .test_models import (
    GESTURES,
    one_thread,  # noqa: F401  (autouse: one torch thread)
)

OPTIONS = list(itertools.product(["gru", "lstm"], [1, 3], [False, True], [0, 2]))


def packed(model: RNN, x: Tensor, lengths: Tensor) -> Tensor:
    """The packed path, as forward takes it for a bidirectional RNN."""
    seq = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    last = model._residual(seq, lengths) if model.config.residual else model._stacked(seq)
    out: Tensor = model.head(model.dropout(last))
    return out


def grads(model: RNN, logits: Tensor, y: Tensor) -> list[Tensor]:
    model.zero_grad()
    torch.nn.functional.cross_entropy(logits, y).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize(
    ("name", "layers", "residual", "head_layers"),
    OPTIONS,
    ids=["-".join(map(str, o)) for o in OPTIONS],
)
def test_gathered_equals_packed(name: str, layers: int, residual: bool, head_layers: int) -> None:
    torch.manual_seed(0)
    kw: dict[str, Any] = {"num_layers": layers, "residual": residual, "head_layers": head_layers}
    model = build_model(Config(dataset="gestures", model=name, hidden_size=8, **kw), GESTURES)
    assert isinstance(model, RNN) and model.directions == 1
    lengths = torch.tensor([3, 9, 5, 1, 9, 2])
    real = (torch.arange(9)[None, :] < lengths[:, None])[..., None]
    x = torch.randn(6, 9, 3) * real  # zero padding, as the data deliver it
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    model.train()  # dropout 0: train and eval agree; head batchnorm (if any) in batch mode
    gathered = model(x, lengths)
    reference = packed(model, x, lengths)
    torch.testing.assert_close(gathered, reference)
    # Training sees the same gradients: the padded steps after an end get none.
    for got, want in zip(
        grads(model, model(x, lengths), y), grads(model, reference, y), strict=True
    ):
        torch.testing.assert_close(got, want)
    model.eval()
    torch.testing.assert_close(model(x, lengths), packed(model, x, lengths))


def test_bidirectional_still_packs() -> None:
    # The backward direction starts at the true end, so padding would move it if unpacked.
    torch.manual_seed(0)
    cfg = Config(dataset="gestures", model="gru", hidden_size=8, bidirectional=True)
    model = build_model(cfg, GESTURES).eval()
    assert isinstance(model, RNN)
    lengths = torch.tensor([2, 6])
    x = torch.randn(2, 6, 3) * (torch.arange(6)[None, :] < lengths[:, None])[..., None]
    torch.testing.assert_close(model(x, lengths), packed(model, x, lengths))
    assert not torch.allclose(model(x, lengths), model(x))
