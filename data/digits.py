"""sklearn's 8x8 handwritten digits: bundled with scikit-learn, so always offline."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from data.split import stratified_split
from data.types import DataInfo, Dataset, Split

NUM_CLASSES = 10


def load(split_seed: int, *, as_sequence: bool) -> Dataset:
    bunch = load_digits()
    # pixel values are counts 0..16 of the original 32x32 bitmap's 4x4 blocks
    x = torch.tensor(bunch.images, dtype=torch.float32) / 16.0  # (N, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    train_idx, valid_idx = stratified_split(y, split_seed)
    if as_sequence:  # one image row per step: (N, T=8, F=8)
        lengths = torch.full((len(y),), x.shape[1], dtype=torch.int64)
        info = DataInfo.sequences("digits", NUM_CLASSES, x)
        return Dataset(
            info,
            Split(x[train_idx], y[train_idx], lengths[train_idx]),
            Split(x[valid_idx], y[valid_idx], lengths[valid_idx]),
        )
    x = x.unsqueeze(1)  # (N, C=1, 8, 8)
    info = DataInfo.images("digits", NUM_CLASSES, x)
    return Dataset(
        info,
        Split(x[train_idx], y[train_idx], None),
        Split(x[valid_idx], y[valid_idx], None),
    )
