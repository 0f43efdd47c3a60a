"""A 1-D CNN for zero-padded sequences (B, T, F) with true lengths (B,), e.g. the gestures.

The same blocks as the 2-D CNN (plain, residual, inception, squeeze-excite; models/blocks.py)
convolve over time with the F features as channels. Every layer sees the padding as zeros
and batchnorm, squeeze-excite, pooling and the final average read real steps only, so a
padded sequence gives exactly the logits of the same sequence unpadded (tested with garbage
in the padding).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from models.blocks import ConvBlock, head, probe
from models.cnn import ConvConfig
from models.inputs import ModelInputs
from models.masks import masked_mean, pool_steps, step_mask, zero_pad
from sweepmap.config import Config

DUMMY_STEPS = 16  # the probe's length: the head's width does not depend on it


class CNN1d(nn.Module):
    def __init__(self, config: ConvConfig):
        super().__init__()
        self.config = config
        blocks: list[ConvBlock] = []
        x = torch.zeros(1, config.in_channels, DUMMY_STEPS)  # (1, F, T)
        in_ch = config.in_channels
        for out_ch in config.block_channels():
            block = ConvBlock(config.spec(dims=1), in_ch, out_ch)
            x = probe(block, x)  # the channel count comes from the block itself
            blocks.append(block)
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        # Dropout1d drops whole channels, as Dropout2d does for the 2-D CNN.
        self.drop = nn.Dropout1d(config.dropout)
        self.head = head(x.shape[1], config.num_classes, config.head_layers, config.dropout)

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> CNN1d:
        return cls(ConvConfig.from_run(cfg, info))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x: (B, T, F) zero-padded; lengths: (B,) true lengths, None = all of length T."""
        mask = step_mask(lengths, x.shape[0], x.shape[1], x.device)  # (B, T)
        h = zero_pad(rearrange(x, "b t f -> b f t"), mask)  # (B, F, T), whatever the padding held
        for block in self.blocks:
            h, mask = pool_steps(block(h, mask), mask, self.config.pooling)  # (B, C, ceil(T/2))
            h = self.drop(h)
        out: Tensor = self.head(masked_mean(h, mask))  # mean over real steps: (B, C_last)
        return out
