"""Fashion-MNIST through mads_datasets' factory and its cached .pt file.

Its fixed train/test split is used as train/valid, so `split_seed` does not apply.
"""

from __future__ import annotations

from pathlib import Path

import torch
from mads_datasets.factories import FashionDatasetFactory
from mads_datasets.settings import fashionmnistsettings

from data.cache import locked, md5
from data.fetch import Source, obtain, quiet_mads
from data.types import DataInfo, Dataset, Split

NUM_CLASSES = 10


def _is_complete(folder: Path) -> bool:
    # mads leaves a partial file behind when a download dies; the md5 tells it apart
    # (about 0.1 s for the 55 MB file, next to seconds of training).
    path = folder / SOURCE.settings.filename
    return path.is_file() and md5(path) == SOURCE.settings.digest


SOURCE = Source(
    name="fashion",
    settings=fashionmnistsettings,
    factory=FashionDatasetFactory,
    env="SWEEPMAP_FASHION_PT",
    is_complete=_is_complete,
)


def _split(mnist: object, as_sequence: bool) -> Split:
    images = torch.as_tensor(mnist.data).to(torch.float32) / 255.0  # type: ignore[attr-defined]
    labels = torch.as_tensor(mnist.labels).to(torch.int64)  # type: ignore[attr-defined]
    if as_sequence:  # one image row per step: (N, T=28, F=28)
        lengths = torch.full((len(labels),), images.shape[1], dtype=torch.int64)
        return Split(images, labels, lengths)
    return Split(images.unsqueeze(1), labels, None)  # (N, C=1, 28, 28)


def load(data_dir: Path, *, as_sequence: bool) -> Dataset:
    if not _is_complete(SOURCE.folder(data_dir)):
        with locked(data_dir, SOURCE.settings.name):
            obtain(SOURCE, data_dir)
    # With the file in place, mads' download_data only finds it; create_dataset loads it.
    factory = FashionDatasetFactory(SOURCE.settings, datadir=data_dir)
    with quiet_mads():
        splits = factory.create_dataset()
    train, valid = _split(splits["train"], as_sequence), _split(splits["valid"], as_sequence)
    if as_sequence:
        info = DataInfo.sequences("fashion", NUM_CLASSES, train.x)
    else:
        info = DataInfo.images("fashion", NUM_CLASSES, train.x)
    return Dataset(info, train, valid)
