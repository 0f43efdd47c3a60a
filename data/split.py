"""Seeded train/valid splits and sequence preprocessing shared by the loaders."""

from __future__ import annotations

import numpy as np
import torch

VALID_FRACTION = 0.2


def stratified_split(
    labels: torch.Tensor, split_seed: int, valid_fraction: float = VALID_FRACTION
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and valid indices (sorted), the same for the same seed in every process.

    Per class, so each class keeps its share in valid; a private Generator, so nothing
    else that touches numpy's or torch's global RNG can move the split.
    """
    rng = np.random.default_rng(split_seed)
    y = labels.numpy()
    train: list[np.ndarray] = []
    valid: list[np.ndarray] = []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_valid = round(len(idx) * valid_fraction)
        valid.append(idx[:n_valid])
        train.append(idx[n_valid:])
    return (
        torch.from_numpy(np.sort(np.concatenate(train))),
        torch.from_numpy(np.sort(np.concatenate(valid))),
    )


def pad(sequences: list[torch.Tensor], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, max_len, F) with zeros past each true length, and the lengths (N,) int64."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    x = torch.zeros(len(sequences), max_len, sequences[0].shape[-1])
    for i, s in enumerate(sequences):
        x[i, : len(s)] = s
    return x, lengths


def standardize(train: list[torch.Tensor], *others: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Scale every split with the train split's per-feature mean and std.

    The statistics come from the real steps of the train sequences only: padding would pull
    the mean to zero, and valid data must not leak into what the model is fitted on.
    """
    steps = torch.cat(train)  # (sum of train lengths, F)
    mean = steps.mean(dim=0)
    std = steps.std(dim=0).clamp_min(1e-8)  # a constant feature would divide by zero
    return [[(s - mean) / std for s in split] for split in (train, *others)]
