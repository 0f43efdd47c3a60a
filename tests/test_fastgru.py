"""models/fastgru.py computes nn.GRU's training pass: the same outputs and gradients to float
rounding, float64 gradients that pass gradcheck, nothing read from the padding, and the model
takes it only where it applies."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from models import build_model, fastgru
from sweepmap.config import Config

from .test_models import (
    GESTURES,
    one_thread,  # noqa: F401  (autouse: one torch thread)
)


def both(rnn: nn.GRU, x: Tensor) -> list[tuple[Tensor, ...]]:
    """(out, h_n, dx, every parameter's gradient) from nn.GRU and from fast_gru, for one loss
    that weighs every step and the final states."""
    results = []
    for run in (lambda x: rnn(x), lambda x: fastgru.fast_gru(rnn, x)):
        rnn.zero_grad()
        leaf = x.detach().clone().requires_grad_()
        out, h_n = run(leaf)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        ((out * weights).sum() + h_n.square().sum()).backward()
        assert leaf.grad is not None
        grads = [p.grad.clone() for p in rnn.parameters() if p.grad is not None]
        results.append((out.detach(), h_n.detach(), leaf.grad, *grads))
    return results


@pytest.mark.parametrize("steps", [1, 15, 50])
def test_outputs_and_every_gradient_equal_nn_gru_to_float_rounding(steps: int) -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(3, 64, num_layers=2, batch_first=True)
    assert fastgru.applies(rnn, torch.zeros(1, 1, 3))
    native, fast = both(rnn, torch.randn(32, steps, 3))
    assert len(native) == len(fast) == 3 + 8  # out, h_n, dx and 2 layers x 4 tensors
    for a, b in zip(native, fast, strict=True):
        # Relative to the tensor's scale: a weight's gradient sums 32 x steps terms, and where
        # they cancel an element is small beside its rounding error (measured at most 7e-7).
        assert float((b - a).abs().max()) <= 1e-5 * float(a.abs().max()), (a - b).abs().max()


def test_float64_gradients_pass_gradcheck() -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(2, 4, num_layers=2, batch_first=True).double()
    x = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    weights = tuple(rnn.parameters())

    def layer0(x: Tensor, *w: Tensor) -> Tensor:
        return fastgru._Layer.apply(x, *w[:4])

    assert torch.autograd.gradcheck(layer0, (x.transpose(0, 1), *weights))
    native, fast = both(rnn, x.detach())
    for a, b in zip(native, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_the_padding_reaches_neither_the_last_true_step_nor_any_gradient() -> None:
    torch.manual_seed(0)
    model = build_model(Config(dataset="gestures", model="gru"), GESTURES).train()
    lengths = torch.tensor([3, 9, 5, 1, 12, 7])
    real = (torch.arange(12)[None, :] < lengths[:, None])[..., None]
    x = torch.randn(6, 12, 3) * real

    def trained(x: Tensor) -> tuple[Tensor, ...]:
        model.zero_grad()
        logits = model(x, lengths)
        logits.square().sum().backward()
        return logits.detach(), *(p.grad.clone() for p in model.parameters() if p.grad is not None)

    clean = trained(x)
    noisy = trained(torch.where(real, x, 100 * torch.randn(6, 12, 3)))
    for a, b in zip(clean, noisy, strict=True):
        assert torch.equal(a, b)  # bit for bit: the padding is never read


def test_the_model_takes_it_only_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    real = fastgru.fast_gru

    def counted(rnn: nn.GRU, x: Tensor) -> tuple[Tensor, Tensor]:
        calls.append(True)
        return real(rnn, x)

    monkeypatch.setattr(fastgru, "fast_gru", counted)
    x, lengths = torch.randn(4, 6, 3), torch.tensor([6, 2, 4, 1])
    cases: list[tuple[dict[str, Any], bool, bool]] = [
        ({}, True, True),
        ({"residual": True, "num_layers": 3}, True, True),  # each layer of the residual stack
        ({}, False, False),  # validation: nn.GRU's own no-grad loop
        ({"model": "lstm"}, True, False),
        ({"bidirectional": True}, True, False),  # packed
        ({"dropout": 0.2}, True, False),  # dropout between layers: packed
    ]
    for kw, training, takes in cases:
        calls.clear()
        model = build_model(Config.from_mapping({"dataset": "gestures", "model": "gru", **kw}),
                            GESTURES)  # fmt: skip
        with torch.set_grad_enabled(training):
            model.train(training)(x, lengths)
        assert bool(calls) == takes, kw
