"""Length-aware operations on zero-padded sequences: none of them reads a padded step.

A sequence batch is (B, C, T) for convolutions (or (B, T, F) as the data give it) with a mask
(B, T), True on real steps. Images have no mask: every function takes `mask=None` to mean
"every position is real", so a conv block is written once for 1-D and 2-D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn


def step_mask(lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor:
    """(B, T) bool, True where t < length; all True without lengths."""
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    # The loop passes lengths on the CPU (pack_padded_sequence wants them there).
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]


def zero_pad(x: Tensor, mask: Tensor | None) -> Tensor:
    """x (B, C, T) with every padded step set to 0; a conv then sees exactly the zeros its own
    'same' padding would add past the end of an unpadded sequence. masked_fill, not a product,
    so that even inf or NaN in the padding cannot leak (0 * inf is NaN)."""
    return x if mask is None else x.masked_fill(~mask[:, None, :], 0.0)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """(B, C, ...) -> (B, C): the mean over real positions (all of them for images)."""
    if mask is None:
        return reduce(x, "b c ... -> b c", "mean")
    m = mask[:, None, :].to(x.dtype)  # (B, 1, T)
    return (zero_pad(x, mask) * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def max_pool_same(x: Tensor, mask: Tensor | None) -> Tensor:
    """3-wide max pooling with stride 1 (inception's pooling branch); padded steps are -inf,
    so they never win, as positions past the end never do."""
    if x.ndim == 4:  # images
        return F.max_pool2d(x, 3, stride=1, padding=1)
    if mask is not None:
        x = x.masked_fill(~mask[:, None, :], -torch.inf)
    return F.max_pool1d(x, 3, stride=1, padding=1)


def pool_steps(x: Tensor, mask: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Halve the steps, pairing (0, 1), (2, 3), ...: a sequence of length n keeps ceil(n / 2),
    the last pair of an odd one being its last real step alone. Pairs start at 0 whatever the
    padding, so padded and unpadded sequences pool alike. A single step is left as it is."""
    if kind == "none" or x.shape[-1] < 2:
        return x, mask
    if x.shape[-1] % 2:
        x, mask = F.pad(x, (0, 1)), F.pad(mask, (0, 1), value=False)
    pairs = rearrange(x, "b c (t two) -> b c t two", two=2)
    real = rearrange(mask, "b (t two) -> b 1 t two", two=2)
    if kind == "max":
        out = pairs.masked_fill(~real, -torch.inf).amax(-1)
    elif kind == "avg":
        out = (pairs * real).sum(-1) / real.sum(-1).clamp_min(1)
    else:
        raise ValueError(f"pooling={kind!r}: allowed: max, avg, none")
    new_mask = real.any(-1)[:, 0]  # (B, T / 2)
    return zero_pad(out, new_mask), new_mask


def bin_means(x: Tensor, lengths: Tensor | None, bins: int) -> Tensor:
    """(B, T, F) -> (B, bins, F): the mean of each of `bins` equal stretches of a sequence's
    real steps, as torch's adaptive_avg_pool1d splits a sequence of that length (bin j covers
    floor(j n / k) .. ceil((j + 1) n / k)). The steps keep their order, so an MLP sees the
    shape of a gesture in time, whatever its length, and never a padded step."""
    batch, steps, _ = x.shape
    mask = step_mask(lengths, batch, steps, x.device)
    n = mask.sum(-1, keepdim=True)  # (B, 1) true lengths
    j = torch.arange(bins, device=x.device)[None, :]  # (1, k)
    start, end = (j * n) // bins, ((j + 1) * n + bins - 1) // bins  # (B, k)
    t = torch.arange(steps, device=x.device)[None, None, :]  # (1, 1, T)
    window = (t >= start[..., None]) & (t < end[..., None])  # (B, k, T)
    weights = window / window.sum(-1, keepdim=True)
    return torch.einsum("bkt,btf->bkf", weights, x.masked_fill(~mask[..., None], 0.0))


class Norm(nn.Module):
    """Batchnorm over real positions only: in training the statistics of a padded batch are
    those of its real steps, so neither the padding nor the amount of it moves them."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.bn: nn.Module = nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            out: Tensor = self.bn(x)
            return out
        steps = rearrange(x, "b c t -> b t c")
        real = self.bn(steps[mask])  # (real steps, C): BatchNorm1d over them alone
        # Of real's dtype, whatever autocast made it: index_put wants one dtype on both sides.
        normed = real.new_zeros(steps.shape)
        normed[mask] = real
        return rearrange(normed, "b t c -> b c t")
