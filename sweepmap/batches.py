"""The training batches of one epoch, in an order fixed by the run's generator.

Images: a random permutation cut into batches. Sequences: length bucketing. The epoch's
samples are shuffled, cut into chunks of `BUCKET_BATCHES` batches, each chunk is sorted by
length and cut into batches, and the batches are shuffled. A batch then holds sequences of
similar lengths and is trimmed to its longest one, so an RNN runs few padded steps; the chunks
keep each batch a random draw from a random part of the data (a global sort would put the same
lengths together every epoch). The same generator state gives the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from data import Split

# Batches per chunk. On gestures (2602 sequences of 10 to 51 steps, batch 32) an epoch runs
# 1.63x the real steps in random batches, 1.19x with 4, 1.11x with 8, 1.065x with 16 and
# 1.01x with one global sort; 4, 8, 32 and a global sort all reached 0.96-0.99 validation
# accuracy after 20 epochs (2 seeds each). 16 keeps most of the saving while each batch is
# still drawn from a random fifth of the data, not from the same length band every epoch.
BUCKET_BATCHES = 16


def train_batches(
    split: Split,
    lengths_cpu: Tensor | None,
    batch_size: int,
    generator: torch.Generator,
    bucket_batches: int = BUCKET_BATCHES,
) -> Iterator[tuple[Tensor, Tensor | None, Tensor]]:
    """(x, lengths, y) for each training batch of one epoch; lengths (CPU) None for images.

    The order is drawn on the CPU and copied to the device once, so a step does no host sync.
    """
    device = split.y.device
    if lengths_cpu is None:
        order = torch.randperm(len(split), generator=generator).to(device)
        for i in range(0, len(split), batch_size):
            idx = order[i : i + batch_size]
            yield split.x[idx], None, split.y[idx]
        return
    batches = bucketed(lengths_cpu, batch_size, generator, bucket_batches)
    on_device = torch.cat(batches).to(device).split([len(b) for b in batches])
    for idx_cpu, idx in zip(batches, on_device, strict=True):
        lengths = lengths_cpu[idx_cpu]
        # Trim the padding to this batch's longest sequence: less work for the RNN.
        yield split.x[idx, : int(lengths.max())], lengths, split.y[idx]


def bucketed(
    lengths: Tensor, batch_size: int, generator: torch.Generator, bucket_batches: int
) -> list[Tensor]:
    """The batches of one epoch as CPU index tensors, every index once, in a seeded order."""
    perm = torch.randperm(len(lengths), generator=generator)
    chunk = batch_size * bucket_batches  # a multiple of batch_size: one short batch at most
    batches: list[Tensor] = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        # stable: equal lengths keep their random order, so ties are not sorted by index
        part = part[torch.sort(lengths[part], stable=True).indices]
        batches.extend(part.split(batch_size))
    # Shuffled, so an epoch does not run from short to long within each chunk.
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def padded_steps(batches: list[Tensor], lengths: Tensor) -> tuple[int, int]:
    """(steps run, real steps) over an epoch of batches, each trimmed to its longest."""
    run = sum(len(b) * int(lengths[b].max()) for b in batches)
    return run, int(lengths.sum())


# Rows per validation chunk. Images go in index order. Sequences are sorted by length and each
# chunk is trimmed to its longest: on gestures' validation split (649 sequences of 10 to 51
# steps, the default GRU, one thread) one padded batch took 61 ms, sorted chunks of 64, 128,
# 256 and 520 rows 30, 27, 25 and 28 ms.
EVAL_IMAGES = 1024
EVAL_SEQUENCES = 256


def eval_batches(
    split: Split, lengths_cpu: Tensor | None, models: int = 1
) -> tuple[list[tuple[Tensor, Tensor | None]], Tensor | None]:
    """The validation pass's (x, lengths) chunks, and the permutation that puts the rows of
    their outputs, concatenated, back in the split's order (None: they are in it already).

    `models` evaluated at once (a stack) share one chunk's memory, so its rows are divided.
    """
    n, device = len(split), split.y.device
    if lengths_cpu is None:
        size = max(1, EVAL_IMAGES // models)
        return [(split.x[i : i + size], None) for i in range(0, n, size)], None
    size = max(1, EVAL_SEQUENCES // models)
    order = torch.sort(lengths_cpu, stable=True).indices
    chunks: list[tuple[Tensor, Tensor | None]] = []
    for idx in order.split(size):
        lengths = lengths_cpu[idx]
        chunks.append((split.x[idx.to(device), : int(lengths.max())], lengths))
    return chunks, torch.argsort(order).to(device)
