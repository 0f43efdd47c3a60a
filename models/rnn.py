"""LSTM and GRU classifiers over zero-padded sequences (B, T, F) with true lengths (B,)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

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
        )


class RNN(nn.Module):
    """Classify a sequence from the final hidden state of the last layer."""

    cell: ClassVar[type[nn.LSTM] | type[nn.GRU]]

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        self.rnn = self.cell(
            input_size=config.features,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            # PyTorch applies this only between layers (and warns with one layer), so pass it
            # only when there is a between; the dropout before the head works for any depth.
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        self.directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size * self.directions, config.num_classes)

    @classmethod
    def from_run(cls, cfg: Config, info: ModelInputs) -> RNN:
        return cls(RNNConfig.from_run(cfg, info))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x: (B, T, F) zero-padded; lengths: (B,) true lengths, None = all of length T."""
        if lengths is None:
            _, hidden = self.rnn(x)
        else:
            # Packing stops each sequence at its true length (and starts the backward direction
            # there), so the padding never reaches h_n. pack_padded_sequence wants CPU lengths.
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, hidden = self.rnn(packed)
        # LSTM returns (h_n, c_n), GRU h_n; with enforce_sorted=False h_n is in the input order.
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # (L * D, B, H)
        # h_n is layer-major: (layer, direction). Concatenate both directions of the last layer.
        last = rearrange(h_n, "(l d) b h -> l b (d h)", d=self.directions)[-1]  # (B, D * H)
        out: Tensor = self.head(self.dropout(last))
        return out


class LSTM(RNN):
    cell = nn.LSTM


class GRU(RNN):
    cell = nn.GRU
