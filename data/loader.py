"""`load_dataset(name)`: the one entry point train.py calls."""

from __future__ import annotations

from pathlib import Path

from data.cache import resolve_data_dir
from data.types import Dataset

NAMES = ("digits", "gestures", "fashion")


def load_dataset(
    name: str,
    split_seed: int = 0,
    *,
    as_sequence: bool = False,
    data_dir: Path | None = None,
) -> Dataset:
    """Load `name` on the CPU with a train/valid split fixed by `split_seed`.

    as_sequence reads images row by row, (N, H, W) as (N, T, F), for the RNNs; gestures are
    sequences either way. data_dir defaults to $SWEEPMAP_DATA_DIR, else mads_datasets'
    ~/.cache/mads_datasets. Raises DataUnavailable (one line) when the data cannot be had.
    """
    # Imported on demand: scikit-learn alone adds a second to every agent's start-up.
    if name == "digits":
        from data import digits

        return digits.load(split_seed, as_sequence=as_sequence)
    if name == "gestures":
        from data import gestures

        return gestures.load(resolve_data_dir(data_dir), split_seed)
    if name == "fashion":
        from data import fashion

        return fashion.load(resolve_data_dir(data_dir), as_sequence=as_sequence)
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)}")
