"""Conv blocks written once for images (2-D) and sequences (1-D), squeeze-excite, the head.

Every block keeps its input's spatial shape, (B, C, H, W) or (B, C, T), and takes the mask
of real steps (None for images); its input is zero on padded steps and so is its output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from models.masks import Norm, masked_mean, max_pool_same, zero_pad


@dataclass(frozen=True)
class BlockSpec:
    """What every conv block of one model shares."""

    dims: int  # 1: sequences (B, C, T); 2: images (B, C, H, W)
    kernel_size: int = 3
    batchnorm: bool = True
    residual: bool = False  # a skip around the block (plain + skip: the residual block)
    inception: bool = False  # parallel branches instead of one conv
    squeeze_excite: int = 0  # reduction ratio; 0 = off


def conv(dims: int, in_ch: int, out_ch: int, kernel_size: int) -> nn.Module:
    # Odd kernels (Config checks) make 'same' padding symmetric, so H, W and T are kept.
    layer = nn.Conv1d if dims == 1 else nn.Conv2d
    return layer(in_ch, out_ch, kernel_size, padding="same")


class Inception(nn.Module):
    """GoogLeNet's block, factorised as in its v2: 1x1 | 1x1, k | 1x1, k, k (the receptive
    field of a 5x5 for k=3, with fewer weights) | 3-wide max pool, 1x1; concatenated.

    `out_ch` is split over the four branches (the first ones get the remainder); the 1x1
    convs before the k-wide ones shrink the input to the branch's width first.
    """

    def __init__(self, spec: BlockSpec, in_ch: int, out_ch: int):
        super().__init__()
        widths = [out_ch // 4 + (i < out_ch % 4) for i in range(4)]
        d, k = spec.dims, spec.kernel_size
        self.one = conv(d, in_ch, widths[0], 1)
        n, w = widths[1], widths[2]
        self.narrow = nn.ModuleList([conv(d, in_ch, n, 1), conv(d, n, n, k)])
        self.wide = nn.ModuleList([conv(d, in_ch, w, 1), conv(d, w, w, k), conv(d, w, w, k)])
        self.pool_proj = conv(d, in_ch, widths[3], 1)
        self.act = nn.ReLU()

    def _chain(self, convs: nn.ModuleList, x: Tensor, mask: Tensor | None) -> Tensor:
        # ReLU between the convs of a branch; padded steps back to 0 before each next conv.
        for i, layer in enumerate(convs):
            x = layer(x) if i == 0 else layer(zero_pad(self.act(x), mask))
        return x

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        branches = [
            self.one(x),
            self._chain(self.narrow, x, mask),
            self._chain(self.wide, x, mask),
            self.pool_proj(zero_pad(max_pool_same(x, mask), mask)),
        ]
        return torch.cat(branches, dim=1)  # (B, out_ch, ...)


class SqueezeExcite(nn.Module):
    """Scale each channel by a gate computed from all channels' means (Hu et al., 2018):
    C -> C // ratio -> C, sigmoid. The mean is over real positions only."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        hidden = max(1, channels // ratio)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        g = self.gate(masked_mean(x, mask))  # (B, C)
        shape = "b c -> b c 1" if x.ndim == 3 else "b c -> b c 1 1"
        return x * rearrange(g, shape)


class ConvBlock(nn.Module):
    """body (conv or inception) -> [batchnorm] -> [squeeze-excite] -> (+ skip) -> ReLU.

    Squeeze-excite sits on the residual branch, before the sum, as in SE-ResNet.
    """

    def __init__(self, spec: BlockSpec, in_ch: int, out_ch: int):
        super().__init__()
        self.conv: nn.Module = (
            Inception(spec, in_ch, out_ch)
            if spec.inception
            else conv(spec.dims, in_ch, out_ch, spec.kernel_size)
        )
        self.out_channels = out_ch
        self.norm = Norm(spec.dims, out_ch) if spec.batchnorm else None
        self.se = SqueezeExcite(out_ch, spec.squeeze_excite) if spec.squeeze_excite else None
        self.skip: nn.Module | None = None
        if spec.residual:
            # A 1x1 projection only where the channel count changes; otherwise the identity.
            self.skip = conv(spec.dims, in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.conv(x, mask) if isinstance(self.conv, Inception) else self.conv(x)
        if self.norm is not None:
            h = self.norm(h, mask)
        if self.se is not None:
            h = self.se(h, mask)
        if self.skip is not None:
            h = h + self.skip(x)
        return zero_pad(self.act(h), mask)


def head(in_features: int, num_classes: int, hidden_layers: int, dropout: float) -> nn.Sequential:
    """[dropout -> Linear(in, in) -> ReLU] x hidden_layers -> dropout -> Linear(in, classes).

    With no hidden layers it is the plain dropout + Linear every model had before.
    """
    layers: list[nn.Module] = []
    for _ in range(hidden_layers):
        layers += [nn.Dropout(dropout), nn.Linear(in_features, in_features), nn.ReLU()]
    return nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(in_features, num_classes))


@torch.no_grad()
def probe(module: nn.Module, *args: Tensor | None) -> Tensor:
    """Run a dummy batch in eval mode, so batchnorm's running statistics stay untouched."""
    was_training = module.training
    module.eval()
    out: Tensor = module(*args)
    module.train(was_training)
    return out
