"""A plain CNN for small images: `num_blocks` conv blocks, global average pool, Linear.

Global average pooling (rather than flatten) keeps the head at C_last x classes, so more
blocks or filters always mean more parameters and `pooling` changes what the convs see, not
the size of the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops.layers.torch import Reduce
from torch import Tensor, nn

from models.inputs import ModelInputs
from sweepmap.config import Config


@dataclass(frozen=True)
class CNNConfig:
    in_channels: int
    image_size: tuple[int, int]  # (H, W)
    num_classes: int
    num_blocks: int = 2
    filters: int = 32
    filter_growth: float = 2.0
    kernel_size: int = 3
    batchnorm: bool = True
    residual: bool = False
    pooling: str = "max"  # max | avg | none
    dropout: float = 0.0

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> CNNConfig:
        if info.is_sequence:
            raise ValueError(
                f"model=cnn needs images, but dataset {info.name} gives sequences; use lstm or gru"
            )
        return cls(
            in_channels=info.channels,
            image_size=info.image_size,
            num_classes=info.num_classes,
            num_blocks=cfg.num_blocks,
            filters=cfg.filters,
            filter_growth=cfg.filter_growth,
            kernel_size=cfg.kernel_size,
            batchnorm=cfg.batchnorm,
            residual=cfg.residual,
            pooling=cfg.pooling,
            dropout=cfg.dropout,
        )

    def block_channels(self) -> list[int]:
        """Output channels of each block: filters * growth**i, at least 1."""
        return [max(1, round(self.filters * self.filter_growth**i)) for i in range(self.num_blocks)]


class ConvBlock(nn.Module):
    """conv -> [batchnorm] -> (+ skip) -> ReLU; the shape stays (B, C_out, H, W)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, batchnorm: bool, residual: bool):
        super().__init__()
        # Odd kernels (Config checks) make 'same' padding symmetric, so H and W are kept.
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding="same")
        self.norm: nn.Module = nn.BatchNorm2d(out_ch) if batchnorm else nn.Identity()
        self.skip: nn.Module | None = None
        if residual:
            # A 1x1 projection only where the channel count changes; otherwise the identity.
            self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.conv(x))  # (B, C_out, H, W)
        if self.skip is not None:
            h = h + self.skip(x)
        out: Tensor = self.act(h)
        return out


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


@torch.no_grad()
def _probe(module: nn.Module, x: Tensor) -> Tensor:
    """Run a dummy batch in eval mode, so batchnorm's running statistics stay untouched."""
    was_training = module.training
    module.eval()
    out: Tensor = module(x)
    module.train(was_training)
    return out


class CNN(nn.Module):
    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        # The pooling of each block and the head's input size come from a dummy forward,
        # never from hand arithmetic on kernel, padding and stride.
        x = torch.zeros(1, config.in_channels, *config.image_size)  # (1, C, H, W)
        layers: list[nn.Module] = []
        in_ch = config.in_channels
        for out_ch in config.block_channels():
            block = ConvBlock(in_ch, out_ch, config.kernel_size, config.batchnorm, config.residual)
            x = _probe(block, x)
            pool = _pool(config.pooling, x.shape[-2:])
            x = _probe(pool, x)
            # Dropout2d drops whole feature maps: neighbouring pixels are too correlated
            # for element-wise dropout to regularise a conv layer.
            layers += [block, pool, nn.Dropout2d(config.dropout)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            Reduce("b c h w -> b c", "mean"),  # (B, C_last)
            nn.Dropout(config.dropout),
            nn.Linear(x.shape[1], config.num_classes),
        )

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> CNN:
        return cls(CNNConfig.from_run(cfg, info))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x: (B, C, H, W) -> logits (B, num_classes); `lengths` is unused (images)."""
        out: Tensor = self.head(self.features(x))
        return out
