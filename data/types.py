"""The shapes every loader returns; models and the training loop code against these only."""

from __future__ import annotations

from dataclasses import dataclass

import torch


class DataUnavailable(RuntimeError):
    """The data is neither cached nor obtainable; the message names the dataset and the fix."""


@dataclass(frozen=True)
class DataInfo:
    name: str
    num_classes: int
    is_sequence: bool  # True: x is (N, T, F), zero-padded, with lengths
    channels: int  # images: C; sequences: 0
    image_size: tuple[int, int]  # images: (H, W); sequences: (0, 0)
    features: int  # sequences: F per step; images: 0
    max_len: int  # sequences: T (the longest); images: 0

    @classmethod
    def images(cls, name: str, num_classes: int, x: torch.Tensor) -> DataInfo:
        _, c, h, w = x.shape
        return cls(name, num_classes, False, c, (h, w), 0, 0)

    @classmethod
    def sequences(cls, name: str, num_classes: int, x: torch.Tensor) -> DataInfo:
        _, t, f = x.shape
        return cls(name, num_classes, True, 0, (0, 0), f, t)


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # images float32 (N, C, H, W); sequences float32 (N, T, F), zero-padded
    y: torch.Tensor  # int64 (N,)
    lengths: torch.Tensor | None  # int64 (N,): true lengths of sequences; None for images

    def __post_init__(self) -> None:
        # Catch a loader bug here, not as a shape error deep inside a model.
        n = len(self.y)
        if len(self.x) != n or (self.lengths is not None and len(self.lengths) != n):
            raise ValueError(f"Split: x, y and lengths disagree on N ({n})")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> Split:
        # lengths moves too, so one index tensor on the device selects a whole batch;
        # pack_padded_sequence wants them on the CPU again (lengths.cpu()).
        lengths = None if self.lengths is None else self.lengths.to(device)
        return Split(self.x.to(device), self.y.to(device), lengths)


@dataclass(frozen=True)
class Dataset:
    info: DataInfo
    train: Split
    valid: Split

    def to(self, device: torch.device) -> Dataset:
        return Dataset(self.info, self.train.to(device), self.valid.to(device))
