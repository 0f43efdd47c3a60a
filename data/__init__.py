"""Datasets as tensors on one device: `load_dataset(name, split_seed)` -> Dataset."""

from loguru import logger

from data.loader import NAMES, load_dataset
from data.types import DataInfo, Dataset, DataUnavailable, Split

# mads_datasets logs every step at INFO; a sweep agent's output is one line per epoch.
# loguru filters by module name, so this holds for modules imported before or after.
logger.disable("mads_datasets")

__all__ = ["NAMES", "DataInfo", "DataUnavailable", "Dataset", "Split", "load_dataset"]
