"""A CNN for small images: `num_blocks` conv blocks, global average pool, head.

Global average pooling (rather than flatten) keeps the head at C_last x classes, so more
blocks or filters always mean more parameters and `pooling` changes what the convs see, not
the size of the head. `ConvConfig` is shared with the 1-D CNN (models/cnn1d.py).

Block types (the `block` and `residual` keys of the run Config):
- `plain`: conv -> [batchnorm] -> ReLU; `residual`: the same with a skip around it.
- `inception`: four parallel branches (models/blocks.py), concatenated.
- `residual=True` (the older key, kept for existing sweeps) adds the skip to any block type:
  with `plain` it *is* the residual block, with `inception` a residual inception block.
- `squeeze_excite=r` adds a squeeze-excite gate (reduction r) to every block of any type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops.layers.torch import Reduce
from torch import Tensor, nn

from models.blocks import BlockSpec, ConvBlock, head, probe
from models.inputs import ModelInputs
from sweepmap.config import Config


@dataclass(frozen=True)
class ConvConfig:
    in_channels: int  # images: C; sequences: F, the features of a step
    image_size: tuple[int, int]  # images: (H, W); sequences: (0, 0)
    num_classes: int
    num_blocks: int = 2
    filters: int = 32
    filter_growth: float = 2.0
    kernel_size: int = 3
    batchnorm: bool = True
    residual: bool = False
    block: str = "plain"  # plain | inception (Config's block=residual is plain + residual)
    squeeze_excite: int = 0
    pooling: str = "max"  # max | avg | none
    dropout: float = 0.0
    head_layers: int = 0

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> ConvConfig:
        sequence = cfg.model == "cnn1d"
        if info.is_sequence != sequence:
            want, other = ("sequences", "cnn") if sequence else ("images", "cnn1d")
            raise ValueError(
                f"model={cfg.model} needs {want}, but dataset {info.name} does not give them; "
                f"use {other}"
            )
        return cls(
            in_channels=info.features if sequence else info.channels,
            image_size=(0, 0) if sequence else info.image_size,
            num_classes=info.num_classes,
            num_blocks=cfg.num_blocks,
            filters=cfg.filters,
            filter_growth=cfg.filter_growth,
            kernel_size=cfg.kernel_size,
            batchnorm=cfg.batchnorm,
            residual=cfg.residual or cfg.block == "residual",
            block="inception" if cfg.block == "inception" else "plain",
            squeeze_excite=cfg.squeeze_excite,
            pooling=cfg.pooling,
            dropout=cfg.dropout,
            head_layers=cfg.head_layers,
        )

    def block_channels(self) -> list[int]:
        """Output channels of each block: filters * growth**i, at least 1."""
        return [max(1, round(self.filters * self.filter_growth**i)) for i in range(self.num_blocks)]

    def spec(self, dims: int) -> BlockSpec:
        return BlockSpec(
            dims=dims,
            kernel_size=self.kernel_size,
            batchnorm=self.batchnorm,
            residual=self.residual,
            inception=self.block == "inception",
            squeeze_excite=self.squeeze_excite,
        )


def _pool(kind: str, size: torch.Size) -> nn.Module:
    """2x2 pooling, but never below 1: a side already < 2 keeps kernel 1 on that side."""
    h, w = size
    kernel = (2 if h >= 2 else 1, 2 if w >= 2 else 1)
    if kind == "none" or kernel == (1, 1):
        return nn.Identity()
    if kind == "max":
        return nn.MaxPool2d(kernel)
    if kind == "avg":
        return nn.AvgPool2d(kernel)
    raise ValueError(f"pooling={kind!r}: allowed: max, avg, none")


class CNN(nn.Module):
    def __init__(self, config: ConvConfig):
        super().__init__()
        self.config = config
        # The pooling of each block and the head's input size come from a dummy forward,
        # never from hand arithmetic on kernel, padding and stride.
        x = torch.zeros(1, config.in_channels, *config.image_size)  # (1, C, H, W)
        layers: list[nn.Module] = []
        in_ch = config.in_channels
        for out_ch in config.block_channels():
            block = ConvBlock(config.spec(dims=2), in_ch, out_ch)
            x = probe(block, x)
            pool = _pool(config.pooling, x.shape[-2:])
            x = probe(pool, x)
            # Dropout2d drops whole feature maps: neighbouring pixels are too correlated
            # for element-wise dropout to regularise a conv layer.
            layers += [block, pool, nn.Dropout2d(config.dropout)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = Reduce("b c h w -> b c", "mean")  # (B, C_last)
        self.head = head(x.shape[1], config.num_classes, config.head_layers, config.dropout)

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> CNN:
        return cls(ConvConfig.from_run(cfg, info))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x: (B, C, H, W) -> logits (B, num_classes); `lengths` is unused (images)."""
        out: Tensor = self.head(self.pool(self.features(x)))
        return out
