"""Training batches: every sample once an epoch, similar lengths together, the order fixed by
the seed; images keep the plain permutation; validation does not depend on the batching."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import pytest
import torch

from data import DataInfo, Dataset, Split
from models import build_model
from sweepmap import batches as batching
from sweepmap import loop
from sweepmap.batches import bucketed, padded_steps, train_batches
from sweepmap.config import Config

from .test_models import one_thread  # noqa: F401  (autouse: one torch thread)


def sequences(n: int = 300, steps: int = 40, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, steps + 1, (n,), generator=g)
    real = (torch.arange(steps)[None, :] < lengths[:, None])[..., None]
    x = torch.randn(n, steps, 3, generator=g) * real
    # The sample's index in its first feature's first step: batches can be traced back.
    x[:, 0, 0] = torch.arange(n, dtype=torch.float32)
    return Split(x, torch.randint(0, 4, (n,), generator=g), lengths)


def epoch(split: Split, seed: int, batch_size: int = 16) -> list[tuple[Any, ...]]:
    assert split.lengths is not None
    g = torch.Generator().manual_seed(seed)
    return list(train_batches(split, split.lengths, batch_size, g))


def test_every_sample_once_trimmed_to_the_longest_in_its_batch() -> None:
    split = sequences()
    assert split.lengths is not None
    batches = epoch(split, 0)
    assert len(batches) == math.ceil(len(split) / 16)
    seen = torch.cat([x[:, 0, 0] for x, _, _ in batches]).long()
    assert sorted(seen.tolist()) == list(range(len(split)))
    for x, lengths, y in batches:
        idx = x[:, 0, 0].long()
        assert torch.equal(lengths, split.lengths[idx]) and torch.equal(y, split.y[idx])
        assert x.shape[1] == int(lengths.max())
        assert torch.equal(x, split.x[idx, : x.shape[1]])
    assert sum(len(y) < 16 for _, _, y in batches) == 1  # 300 = 18 * 16 + 12


def test_similar_lengths_together_less_padding_than_random() -> None:
    lengths = sequences(2000).lengths
    assert lengths is not None
    g = torch.Generator().manual_seed(0)
    random_run, real = padded_steps(list(torch.randperm(2000, generator=g).split(32)), lengths)
    bucket_run, _ = padded_steps(bucketed(lengths, 32, g, 8), lengths)
    assert bucket_run < 1.15 * real < random_run  # measured: about 1.07 against 1.5


def test_the_seed_fixes_the_order() -> None:
    split = sequences()

    def ids(seed: int) -> list[list[int]]:
        return [x[:, 0, 0].long().tolist() for x, _, _ in epoch(split, seed)]

    assert ids(3) == ids(3)
    assert ids(3) != ids(4)
    assert sorted(map(sorted, ids(3))) != sorted(map(sorted, ids(4)))  # other batches too
    # One generator over two epochs: the second epoch is another draw.
    g = torch.Generator().manual_seed(3)
    assert split.lengths is not None
    first, second = (bucketed(split.lengths, 16, g, 8) for _ in range(2))
    assert [b.tolist() for b in first] != [b.tolist() for b in second]


def test_images_keep_the_plain_permutation() -> None:
    x, y = torch.randn(50, 1, 4, 4), torch.arange(50)
    g = torch.Generator().manual_seed(0)
    got = [yb for _, lengths, yb in train_batches(Split(x, y, None), None, 16, g)]
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    assert all(lengths is None for _, lengths, _ in train_batches(Split(x, y, None), None, 16, g))
    assert [b.tolist() for b in got] == [b.tolist() for b in order.split(16)]


def test_validation_chunks_run_in_length_order_trimmed_and_divided_among_a_stack() -> None:
    split = sequences(600, 30, seed=2)
    assert split.lengths is not None
    chunks, undo = batching.eval_batches(split, split.lengths, models=3)
    assert undo is not None
    sizes = [len(x) for x, _ in chunks]
    assert max(sizes) == batching.EVAL_SEQUENCES // 3 and sum(sizes) == 600
    lengths = torch.cat([n for _, n in chunks if n is not None])
    assert lengths.tolist() == sorted(split.lengths.tolist())
    assert all(n is not None and x.shape[1] == int(n.max()) for x, n in chunks)
    # Concatenated and undone, the rows are the split's own.
    rows = torch.cat([x[:, 0] for x, _ in chunks])[undo]
    assert torch.equal(rows, split.x[:, 0])
    images = Split(torch.randn(2500, 1, 2, 2), torch.zeros(2500, dtype=torch.long), None)
    chunks, undo = batching.eval_batches(images, None)
    assert undo is None and [len(x) for x, _ in chunks] == [1024, 1024, 452]


def test_validation_does_not_depend_on_the_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same weights scored in one chunk, in length-sorted chunks of 7, and with the rows
    # reversed: the loss and the predictions, in the split's order, are the same.
    torch.manual_seed(0)
    valid = sequences(60, 30, seed=1)
    info = DataInfo.sequences("gestures", 4, valid.x)
    model = build_model(Config(dataset="gestures", model="gru", hidden_size=8), info).eval()
    loss_fn = torch.nn.CrossEntropyLoss()

    def scored(split: Split, batch: int) -> tuple[float, list[int]]:
        monkeypatch.setattr(batching, "EVAL_SEQUENCES", batch)
        preds = loop._Predictions()
        loss = loop.evaluate(model, split, split.lengths, loss_fn, (preds,), nullcontext())
        return loss, preds.all().tolist()

    whole, pred = scored(valid, 1024)
    small, small_pred = scored(valid, 7)
    assert math.isclose(small, whole, rel_tol=1e-5) and small_pred == pred
    assert valid.lengths is not None
    flip = torch.arange(59, -1, -1)
    loss, flipped = scored(Split(valid.x[flip], valid.y[flip], valid.lengths[flip]), 7)
    assert math.isclose(loss, whole, rel_tol=1e-5) and flipped == pred[::-1]


def test_fit_same_seed_same_history() -> None:
    split = sequences(120, 20)
    data = Dataset(DataInfo.sequences("gestures", 4, split.x), split, sequences(40, 20, seed=1))
    cfg = Config(dataset="gestures", model="gru", hidden_size=8, epochs=2)

    def history(seed: int) -> list[dict[str, Any]]:
        torch.manual_seed(0)  # the same weights: only the batch order's seed differs
        model = build_model(cfg, data.info)
        g = torch.Generator().manual_seed(seed)
        result = loop.fit(model, data, cfg, torch.device("cpu"), g, lambda _: None)
        return [{k: v for k, v in m.items() if k != "epoch"} for m in result.history]

    assert history(5) == history(5)
    assert history(5) != history(6)
