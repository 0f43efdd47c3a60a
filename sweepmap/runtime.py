"""Device, threads and seeds: the process-level settings of a run."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from sweepmap.config import Config, ConfigError


def pick_device(cfg: Config) -> torch.device:
    """cuda when present, then mps, else cpu; an explicit choice that is absent is an error.

    It also checks what this machine must offer the run (bf16 needs a CUDA GPU, threads the
    cores): train.py calls it before `wandb.init`, so such a run is refused (ConfigError,
    exit 2) before it exists, instead of quietly training in fp32 or oversubscribing.
    """
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if cfg.device != "auto":
        if not available[cfg.device]:
            raise ConfigError(f"device={cfg.device}: not available here; allowed: auto, cpu")
        device = torch.device(cfg.device)
    else:
        device = torch.device(next(name for name in ("cuda", "mps", "cpu") if available[name]))
    if cfg.bf16 and device.type != "cuda":
        raise ConfigError(
            f"bf16=True: needs a CUDA GPU, and this run would train on {device.type}; "
            "set bf16=False"
        )
    if cfg.bf16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("bf16=True: this GPU has no bf16 support; set bf16=False")
    cores = usable_cores()
    if cfg.threads > cores:
        raise ConfigError(
            f"threads={cfg.threads}: this machine has {cores} cores; allowed: 0..{cores}"
        )
    return device


def usable_cores() -> int:
    """The cores this process may run on (its affinity, under a container or taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(cfg: Config) -> int:
    """Small models run faster on one thread than two here (measured: README), so 0 means 1.

    Several agents on one machine each get one thread rather than fighting over all cores.
    """
    threads = cfg.threads or int(os.environ.get("SWEEPMAP_THREADS", "1"))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> torch.Generator:
    """Seeds the global RNGs (init, dropout) and returns a generator for the batch order.

    Config bounds the seed below 2**32, numpy's limit.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Deterministic cuDNN where it matters; CPU kernels used here are deterministic already.
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
