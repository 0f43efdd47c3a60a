"""SmartWatch gestures: 3-axis accelerometer sequences of 20 gestures by 8 users.

Read with mads_datasets' own parser (TSDataset) from mads_datasets' own cache layout, but
split here with a seeded RNG: mads shuffles with the unseeded global `random`, so two runs
of one sweep would otherwise train and validate on different samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from mads_datasets.datasets import TSDataset
from mads_datasets.factories import GesturesDatasetFactory
from mads_datasets.settings import gesturesdatasetsettings

from data.cache import locked, save_atomic
from data.fetch import Source, obtain, quiet_mads
from data.split import pad, standardize, stratified_split
from data.types import DataInfo, Dataset, Split

NUM_CLASSES = 20
SAMPLES = 3251  # sample files in the zip with the md5 below (info.txt aside)
PARSED = "sweepmap-gestures-v1.pt"  # parsed tensors, next to mads' folder of txt files


def _sample_files(folder: Path) -> list[Path]:
    # user/gesture/repetition; mads' walk also finds info.txt one level up and deletes it
    # from the cache, we just do not look there.
    return sorted((folder / "gestures-dataset").glob("U*/*/*.txt"))


def _is_complete(folder: Path) -> bool:
    return len(_sample_files(folder)) == SAMPLES


SOURCE = Source(
    name="gestures",
    settings=gesturesdatasetsettings,
    factory=GesturesDatasetFactory,
    env="SWEEPMAP_GESTURES_ZIP",
    is_complete=_is_complete,
)


class _OrderedTSDataset(TSDataset):
    """mads' TSDataset parsing, in the order given: its base __init__ shuffles globally."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.dataset: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.process_data()


@dataclass(frozen=True)
class Parsed:
    """Every sample, in sorted path order: the ragged data as one tensor plus lengths."""

    paths: list[str]  # "U01/01/01.txt", relative to gestures-dataset/
    values: torch.Tensor  # float32 (sum of lengths, 3): ax ay az, unscaled
    lengths: torch.Tensor  # int64 (N,)
    labels: torch.Tensor  # int64 (N,): gesture folder number - 1

    def sequences(self) -> list[torch.Tensor]:
        return list(torch.split(self.values, self.lengths.tolist()))


def _parse(folder: Path) -> Parsed:
    files = _sample_files(folder)
    with quiet_mads():
        samples = _OrderedTSDataset(files).dataset  # [(x (T, 3) float32, y 0-d), ...]
    root = folder / "gestures-dataset"
    return Parsed(
        paths=[f.relative_to(root).as_posix() for f in files],
        values=torch.cat([x for x, _ in samples]),
        lengths=torch.tensor([len(x) for x, _ in samples], dtype=torch.int64),
        labels=torch.stack([y for _, y in samples]).to(torch.int64),
    )


def _save(parsed: Parsed, path: Path) -> None:
    save_atomic({"source_md5": SOURCE.settings.digest, **vars(parsed)}, path)


def _read(path: Path) -> Parsed | None:
    """The parsed samples, or None when absent, unreadable or from another zip."""
    if not path.is_file():
        return None
    try:
        raw = torch.load(path, weights_only=True)  # plain tensors and strings only
        if raw.pop("source_md5") != SOURCE.settings.digest:
            return None
        return Parsed(**raw)
    except Exception:  # truncated by a crash, or an older layout: parse again
        return None


def load_parsed(data_dir: Path) -> Parsed:
    """All samples; the txt files are parsed once per data dir, then read from one file."""
    path = SOURCE.folder(data_dir) / PARSED
    parsed = _read(path)  # the common case: no lock, the file is replaced atomically
    if parsed is not None:
        return parsed
    with locked(data_dir, SOURCE.settings.name):
        parsed = _read(path)  # another process may have finished while we waited
        if parsed is None:
            parsed = _parse(obtain(SOURCE, data_dir))
            _save(parsed, path)
    return parsed


def load(data_dir: Path, split_seed: int) -> Dataset:
    parsed = load_parsed(data_dir)
    sequences, labels = parsed.sequences(), parsed.labels
    train_idx, valid_idx = stratified_split(labels, split_seed)
    train, valid = standardize([sequences[i] for i in train_idx], [sequences[i] for i in valid_idx])
    max_len = int(parsed.lengths.max())  # both splits padded alike, so shapes agree
    x_train, len_train = pad(train, max_len)
    x_valid, len_valid = pad(valid, max_len)
    info = DataInfo.sequences("gestures", NUM_CLASSES, x_train)
    return Dataset(
        info,
        Split(x_train, labels[train_idx], len_train),
        Split(x_valid, labels[valid_idx], len_valid),
    )
