"""LSTM and GRU classifiers over zero-padded sequences (B, T, F) with true lengths (B,).

`residual=True` stacks single-layer RNNs with a skip around every layer but the first
(x_{l+1} = x_l + rnn_l(x_l); the first changes the width from F to H). `head_layers` puts
hidden layers into the head (models/blocks.py). Both default to the plain nn.LSTM / nn.GRU
with a Linear head.

A unidirectional RNN reads each sequence's last true step from the padded run (exact for a
causal RNN, and cheaper than packing); a bidirectional one, and dropout between layers in
training, pack the batch (see `RNN._packs`). A GRU training on the CPU on the padded run goes
through models/fastgru.py, nn.GRU's pass with its backward written out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from models import fastgru
from models.blocks import head
from models.inputs import ModelInputs
from sweepmap.config import Config


@dataclass(frozen=True)
class RNNConfig:
    features: int  # F per time step
    num_classes: int
    hidden_size: int = 64
    num_layers: int = 2
    bidirectional: bool = False
    dropout: float = 0.0
    residual: bool = False
    head_layers: int = 0

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> RNNConfig:
        if not info.is_sequence:
            raise ValueError(
                f"model={cfg.model} needs sequences (B, T, F), but dataset {info.name} gives images"
            )
        return cls(
            features=info.features,
            num_classes=info.num_classes,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout,
            residual=cfg.residual,
            head_layers=cfg.head_layers,
        )


class RNN(nn.Module):
    """Classify a sequence from the final hidden state of the last layer."""

    cell: ClassVar[type[nn.LSTM] | type[nn.GRU]]

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        self.directions = 2 if config.bidirectional else 1
        width = config.hidden_size * self.directions
        self.rnn: nn.Module
        if config.residual:
            # One module per layer, so the skip can be added between them.
            sizes = [config.features] + [width] * (config.num_layers - 1)
            self.rnn = nn.ModuleList([self._cell(size, 1) for size in sizes])
        else:
            self.rnn = self._cell(config.features, config.num_layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = head(width, config.num_classes, config.head_layers, config.dropout)

    def _cell(self, input_size: int, layers: int) -> nn.Module:
        return self.cell(
            input_size=input_size,
            hidden_size=self.config.hidden_size,
            num_layers=layers,
            batch_first=True,
            # PyTorch applies this only between layers (and warns with one layer), so pass it
            # only when there is a between; the dropout before the head works for any depth.
            dropout=self.config.dropout if layers > 1 else 0.0,
            bidirectional=self.config.bidirectional,
        )

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> RNN:
        return cls(RNNConfig.from_run(cfg, info))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x: (B, T, F) zero-padded; lengths: (B,) true lengths, None = all of length T."""
        if lengths is None or not self._packs():
            # A causal RNN's state at step t has seen steps 0..t only, so the padding after a
            # sequence's end never reaches its state at its last true step: gathering that
            # step from the padded run is exact, and cheaper than packing (no sort, no
            # pack/unpack, one batch size for every step).
            last = (
                self._residual(x, lengths) if self.config.residual else self._gathered(x, lengths)
            )
        else:
            # pack_padded_sequence wants CPU lengths.
            seq = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            last = self._residual(seq, lengths) if self.config.residual else self._stacked(seq)
        out: Tensor = self.head(self.dropout(last))
        return out

    def _packs(self) -> bool:
        """Whether padded batches are packed: for a backward direction, which must start at
        each sequence's true end, and for dropout between layers in training, whose masks
        over a padded (B, T, H) run would depend on T (how much padding a batch has), where
        over the packed steps they depend on the real steps only."""
        between = self.training and self.config.dropout > 0 and self.config.num_layers > 1
        return self.directions == 2 or between

    def _gathered(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        if lengths is None:
            return self._stacked(x)  # h_n is the state at step T - 1
        out, _ = _run(self.rnn, x)  # (B, T, D * H): the last layer's state at every step
        ends = lengths.to(out.device) - 1
        last: Tensor = out[torch.arange(len(out), device=out.device), ends]
        return last  # (B, H)

    def _stacked(self, seq: Tensor | PackedSequence) -> Tensor:
        _, hidden = _run(self.rnn, seq)
        # LSTM returns (h_n, c_n), GRU h_n; with enforce_sorted=False h_n is in the input order.
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # (L * D, B, H)
        # h_n is layer-major: (layer, direction). Concatenate both directions of the last layer.
        last: Tensor = rearrange(h_n, "(l d) b h -> l b (d h)", d=self.directions)[-1]
        return last  # (B, D * H)

    def _residual(self, seq: Tensor | PackedSequence, lengths: Tensor | None) -> Tensor:
        assert isinstance(self.rnn, nn.ModuleList)
        for i, layer in enumerate(self.rnn):
            if i > 0:  # as nn.LSTM does: dropout on the input of every layer but the first
                seq = _map(seq, self.dropout)
            out, _ = _run(layer, seq)
            seq = out if i == 0 else _add(out, seq)
        # The final state of each direction from the residual stream: the forward one at the
        # last true step, the backward one at step 0 (where h_n of each direction is read).
        if isinstance(seq, PackedSequence):
            padded, _ = pad_packed_sequence(seq, batch_first=True)  # (B, T, D*H), input order
        else:
            padded = seq
        batch = torch.arange(len(padded), device=padded.device)
        if lengths is None:
            ends = torch.full_like(batch, padded.shape[1] - 1)
        else:
            ends = lengths.to(padded.device) - 1
        forward = padded[batch, ends]  # (B, D*H)
        if self.directions == 1:
            return forward
        h = self.config.hidden_size
        return torch.cat([forward[:, :h], padded[:, 0, h:]], dim=1)


def _run(rnn: nn.Module, seq: Tensor | PackedSequence) -> tuple[Any, Any]:
    """rnn(seq); a GRU training on the CPU runs through models/fastgru.py (the same values to
    float rounding, 1.38x faster on the default gestures GRU)."""
    if isinstance(seq, Tensor) and isinstance(rnn, nn.GRU) and fastgru.applies(rnn, seq):
        return fastgru.fast_gru(rnn, seq)
    out: tuple[Any, Any] = rnn(seq)
    return out


def _map(seq: Tensor | PackedSequence, fn: nn.Module) -> Tensor | PackedSequence:
    # A PackedSequence holds its steps as one (sum of lengths, width) tensor: elementwise
    # functions apply to it directly, and the packing stays valid.
    return seq._replace(data=fn(seq.data)) if isinstance(seq, PackedSequence) else fn(seq)


def _add(a: Tensor | PackedSequence, b: Tensor | PackedSequence) -> Tensor | PackedSequence:
    if isinstance(a, PackedSequence) and isinstance(b, PackedSequence):
        return a._replace(data=a.data + b.data)  # the same packing: one order, one length each
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    return a + b


class LSTM(RNN):
    cell = nn.LSTM


class GRU(RNN):
    cell = nn.GRU
