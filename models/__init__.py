"""Models by name: `build_model(cfg, info)` (timm's create_model shape, with a plain dict).

Every model is called as `model(x, lengths=None) -> logits (B, num_classes)`:
images x (B, C, H, W) for the CNN, zero-padded sequences x (B, T, F) plus lengths (B,) for
the 1-D CNN and the RNNs; the MLP takes either. Which layout a model reads on which dataset
is `sweepmap.config.INPUT_LAYOUT`. Each model builds its own small frozen config from the run
Config (`from_run`), so the module never sees unrelated keys.
"""

from __future__ import annotations

from torch import nn

from models.cnn import CNN, ConvConfig
from models.cnn1d import CNN1d
from models.inputs import ModelInputs
from models.mlp import MLP, MLPConfig
from models.rnn import GRU, LSTM, RNN, RNNConfig
from sweepmap.config import Config

__all__ = [
    "CNN",
    "GRU",
    "LSTM",
    "MLP",
    "MODELS",
    "RNN",
    "CNN1d",
    "ConvConfig",
    "MLPConfig",
    "ModelInputs",
    "RNNConfig",
    "build_model",
    "count_parameters",
]

MODELS: dict[str, type[CNN] | type[MLP] | type[CNN1d] | type[RNN]] = {
    "cnn": CNN,
    "mlp": MLP,
    "cnn1d": CNN1d,
    "lstm": LSTM,
    "gru": GRU,
}


def build_model(cfg: Config, info: ModelInputs) -> nn.Module:
    """The model `cfg.model` for the data described by `info`, on the CPU, in train mode."""
    if cfg.model not in MODELS:
        raise ValueError(f"model={cfg.model!r}: unknown; valid models: {', '.join(MODELS)}")
    return MODELS[cfg.model].from_run(cfg, info)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
