"""sklearn's 8x8 handwritten digits: bundled with scikit-learn, so always offline."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from data.split import stratified_split
from data.types import DataInfo, Dataset, Split

NUM_CLASSES = 10
# The file sklearn.datasets.load_digits reads (scikit-learn 1.9): 1797 rows of 64 pixel
# counts and the label. tests/test_data.py checks that we read what load_digits returns.
CSV = Path("datasets") / "data" / "digits.csv.gz"


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 8, 8), labels (N,)), as load_digits gives them, without importing sklearn:
    its import costs every agent 0.2 s (0.9 s before scipy is loaded), the read 5 ms."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn, which ships the digits, is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / CSV
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load(split_seed: int, *, as_sequence: bool) -> Dataset:
    images, labels = read_digits()
    # pixel values are counts 0..16 of the original 32x32 bitmap's 4x4 blocks
    x = torch.tensor(images, dtype=torch.float32) / 16.0  # (N, 8, 8)
    y = torch.tensor(labels, dtype=torch.int64)
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
