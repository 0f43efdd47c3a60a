"""Sequence models never read the padding: garbage there does not move the logits, in eval
and in training (batchnorm's statistics), for the 1-D CNN, the MLP and the residual RNNs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import build_model
from models.masks import Norm, bin_means, pool_steps, step_mask
from sweepmap.config import Config

from .test_models import (
    GESTURES,
    one_thread,  # noqa: F401  (autouse: one torch thread)
)

CASES: list[dict[str, Any]] = [
    {"model": "cnn1d"},
    {"model": "cnn1d", "pooling": "avg", "block": "inception", "squeeze_excite": 2,
     "residual": True, "num_blocks": 3, "filters": 8, "head_layers": 1},
    {"model": "cnn1d", "block": "residual", "batchnorm": False, "num_blocks": 4, "filters": 4,
     "kernel_size": 5, "pooling": "none"},
    {"model": "mlp", "num_layers": 3},
    {"model": "gru", "residual": True, "bidirectional": True, "num_layers": 3, "head_layers": 2},
    {"model": "lstm", "residual": True, "num_layers": 2, "dropout": 0.3},
]  # fmt: skip


def padded(x: Tensor, lengths: Tensor, steps: int, fill: Tensor) -> Tensor:
    """x's real steps, then `fill` up to `steps`."""
    longer = torch.cat([x, torch.zeros(len(x), steps - x.shape[1], x.shape[2])], dim=1)
    real = (torch.arange(steps)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
    return torch.where(real, longer, fill)


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_garbage_in_the_padding_does_not_move_the_output(kw: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = build_model(Config(dataset="gestures", **kw), GESTURES).eval()
    lengths = torch.tensor([3, 7, 5, 1, 10])
    x = padded(torch.randn(5, 10, 3), lengths, 10, torch.zeros(()))  # as the data deliver it
    expected = model(x, lengths)
    for fill in (100 * torch.randn(5, 19, 3), torch.full((5, 19, 3), torch.nan)):
        torch.testing.assert_close(model(padded(x, lengths, 19, fill), lengths), expected)
    # Each row alone and unpadded gives the same logits: nothing leaks across the batch.
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(model(x[i : i + 1, :n]), expected[i : i + 1])
    # Without lengths the padding does reach the output: the checks above can fail.
    garbage = padded(x, lengths, 19, 100 * torch.randn(5, 19, 3))
    assert not torch.allclose(model(garbage), expected)
    # In training, batchnorm's statistics (and so the output) come from real steps only.
    model.train()
    torch.manual_seed(1)
    clean = model(x, lengths)
    torch.manual_seed(1)
    torch.testing.assert_close(model(garbage, lengths), clean)


def test_masked_batchnorm_uses_the_real_steps_only() -> None:
    norm = Norm(1, 2).train()
    x = torch.randn(3, 2, 6)
    lengths = torch.tensor([6, 2, 4])
    mask = step_mask(lengths, 3, 6, x.device)
    out = norm(x, mask)
    real = torch.cat([x[i, :, :n] for i, n in enumerate(lengths.tolist())], dim=1)  # (C, 12)
    mean, var = real.mean(1), real.var(1, unbiased=False)
    expected = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + 1e-5)
    torch.testing.assert_close(out, expected * mask[:, None, :])
    # Running statistics: one momentum step from (0, 1) towards the unbiased real variance.
    assert norm.bn.running_mean is not None and norm.bn.running_var is not None
    torch.testing.assert_close(norm.bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(norm.bn.running_var, 0.9 + 0.1 * real.var(1))


@pytest.mark.parametrize("bins", [1, 3, 8])
def test_bin_means_split_as_adaptive_avg_pool(bins: int) -> None:
    # torch's adaptive pooling of each unpadded row is the independent answer.
    x = torch.randn(4, 13, 3)
    lengths = torch.tensor([13, 10, 4, 1])
    got = bin_means(padded(x, lengths, 13, torch.full((4, 13, 3), torch.nan)), lengths, bins)
    for i, n in enumerate(lengths.tolist()):
        row = F.adaptive_avg_pool1d(x[i, :n].T[None], bins)[0].T  # (bins, F)
        torch.testing.assert_close(got[i], row)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_steps_halve_each_length_rounding_up(kind: str) -> None:
    lengths = torch.tensor([7, 1, 4, 2])
    x = torch.randn(4, 2, 7)
    mask = step_mask(lengths, 4, 7, x.device)
    out, new = pool_steps(x.masked_fill(~mask[:, None], 0), mask, kind)
    assert new.sum(-1).tolist() == [4, 1, 2, 1]
    pool = nn.MaxPool1d(2, ceil_mode=True) if kind == "max" else None
    for i, n in enumerate(lengths.tolist()):
        row = x[i : i + 1, :, :n]
        if pool is not None:
            ref = pool(row)
        else:  # the mean of each pair, the last odd step alone
            ref = torch.stack([row[..., j : j + 2].mean(-1) for j in range(0, n, 2)], dim=-1)
        torch.testing.assert_close(out[i : i + 1, :, : (n + 1) // 2], ref)
        assert not out[i, :, (n + 1) // 2 :].any()
