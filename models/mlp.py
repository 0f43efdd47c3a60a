"""An MLP: `num_layers` hidden layers of `hidden_size`, each Linear -> [batchnorm] -> ReLU ->
dropout, then a Linear to the classes.

Images are flattened (B, C*H*W). Sequences (B, T, F) are read through a length-aware pooling:
the mean of each of SEQUENCE_BINS equal stretches of a sequence's real steps (models/masks.py,
`bin_means`), flattened to (B, bins*F). The bins keep the order of the steps, so the MLP sees
the course of a gesture in time, at any length, and never a padded step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from models.inputs import ModelInputs
from models.masks import bin_means
from sweepmap.config import Config

# The shortest gesture has 10 steps: 8 bins give every bin a step of its own there.
SEQUENCE_BINS = 8


@dataclass(frozen=True)
class MLPConfig:
    num_classes: int
    is_sequence: bool
    input_shape: tuple[int, ...]  # images: (C, H, W); sequences: (F,), one step
    hidden_size: int = 64
    num_layers: int = 2
    batchnorm: bool = True
    dropout: float = 0.0

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> MLPConfig:
        shape = (info.features,) if info.is_sequence else (info.channels, *info.image_size)
        return cls(
            num_classes=info.num_classes,
            is_sequence=info.is_sequence,
            input_shape=shape,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            batchnorm=cfg.batchnorm,
            dropout=cfg.dropout,
        )


class MLP(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        # The first layer's width comes from reading a dummy input, not from arithmetic.
        steps = (SEQUENCE_BINS,) if config.is_sequence else ()
        width = self.read(torch.zeros(2, *steps, *config.input_shape), None).shape[1]
        layers: list[nn.Module] = []
        for _ in range(config.num_layers):
            layers += [
                nn.Linear(width, config.hidden_size),
                nn.BatchNorm1d(config.hidden_size) if config.batchnorm else nn.Identity(),
                nn.ReLU(),
                nn.Dropout(config.dropout),
            ]
            width = config.hidden_size
        self.layers = nn.Sequential(*layers, nn.Linear(width, config.num_classes))

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> MLP:
        return cls(MLPConfig.from_run(cfg, info))

    def read(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """The flat input: (B, C*H*W) for images, (B, bins*F) for sequences."""
        if self.config.is_sequence:
            return rearrange(bin_means(x, lengths, SEQUENCE_BINS), "b k f -> b (k f)")
        return rearrange(x, "b ... -> b (...)")

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x: images (B, C, H, W), or sequences (B, T, F) with lengths (B,)."""
        out: Tensor = self.layers(self.read(x, lengths))
        return out
