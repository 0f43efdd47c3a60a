"""Device, threads and seeds: the process-level settings of a run."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from sweepmap.config import Config, ConfigError


def pick_device(cfg: Config) -> torch.device:
    """cuda when present, then mps, else cpu; an explicit choice that is absent is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if cfg.device != "auto":
        if not available[cfg.device]:
            raise ConfigError(f"device={cfg.device}: not available here; allowed: auto, cpu")
        return torch.device(cfg.device)
    return torch.device(next(name for name in ("cuda", "mps", "cpu") if available[name]))


def set_threads(cfg: Config) -> int:
    """Small models run faster on one thread than two here (measured: README), so 0 means 1.

    Several agents on one machine each get one thread rather than fighting over all cores.
    """
    threads = cfg.threads or int(os.environ.get("SWEEPMAP_THREADS", "1"))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> torch.Generator:
    """Seeds the global RNGs (init, dropout) and returns a generator for the batch order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Deterministic cuDNN where it matters; CPU kernels used here are deterministic already.
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
