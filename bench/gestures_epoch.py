"""Seconds per epoch of the default gestures GRU (hidden 64, 2 layers, batch 32, Adam 1e-3),
one torch thread, in one process, the variants taking turns within each round:

- before: sweepmap's loop as it was: packed GRU, random batches trimmed to their longest;
- gathered: the last true step gathered from the padded run, random batches;
- after: gathered, and length-bucketed batches (sweepmap/batches.py): today's `fit`;
- course: the course's pipeline (mads_datasets' streamer with mltrainer's PaddedPreprocessor,
  mltrainer's Trainer and GRUmodel), when mltrainer is importable (not a dependency).

    python -m bench.gestures_epoch --epochs 20 --rounds 3 [--out bench/results.md]

An epoch is its training steps and its validation pass. Round r trains every variant from
seed r; before, gathered and after start from the same weights on the same split.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import tqdm
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from bench.report import append
from data import Dataset, Split, load_dataset
from models import build_model
from models.rnn import RNN
from sweepmap import keys, loop
from sweepmap.config import Config
from sweepmap.runtime import seed_everything

VARIANTS = ("before", "gathered", "after", "course")


@dataclass
class Trace:
    seconds: list[float]  # per epoch
    accuracy: list[float]  # val/accuracy after each epoch


def random_batches(
    split: Split, lengths_cpu: Tensor | None, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor | None, Tensor]]:
    """The loop's batches before bucketing (a copy of the code it replaced)."""
    assert lengths_cpu is not None
    order = torch.randperm(len(split), generator=generator).to(split.y.device)
    for i in range(0, len(split), batch_size):
        idx = order[i : i + batch_size]
        lengths = lengths_cpu[idx.cpu()]
        yield split.x[idx, : int(lengths.max())], lengths, split.y[idx]


def packed_forward(model: RNN) -> Callable[..., Tensor]:
    """The RNN's forward before gathering (a copy of the code it replaced): always packed."""

    def forward(x: Tensor, lengths: Tensor | None = None) -> Tensor:
        seq: Any = x
        if lengths is not None:
            seq = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out: Tensor = model.head(model.dropout(model._stacked(seq)))
        return out

    return forward


def sweepmap_run(variant: str, data: Dataset, seed: int, epochs: int) -> Trace:
    cfg = Config(dataset="gestures", model="gru", epochs=epochs, seed=seed)
    generator = seed_everything(seed)
    model = build_model(cfg, data.info)
    assert isinstance(model, RNN)
    trace = Trace([], [])
    with contextlib.ExitStack() as stack:
        if variant == "before":
            stack.enter_context(mock.patch.object(model, "forward", packed_forward(model)))
        if variant in ("before", "gathered"):
            stack.enter_context(mock.patch.object(loop, "train_batches", random_batches))
        last = time.perf_counter()

        def log(metrics: dict[str, Any]) -> None:
            nonlocal last
            now = time.perf_counter()
            trace.seconds.append(now - last)
            trace.accuracy.append(metrics[keys.VAL_ACCURACY])
            last = now

        loop.fit(model, data, cfg, torch.device("cpu"), generator, log)
    return trace


class Course:
    """The course's pipeline on its own split of the same zip (mads shuffles the files)."""

    def __init__(self, zip_dir: Path) -> None:
        from mads_datasets.factories import GesturesDatasetFactory
        from mads_datasets.settings import gesturesdatasetsettings
        from mltrainer.preprocessors import PaddedPreprocessor

        from data.fetch import quiet_mads

        factory = GesturesDatasetFactory(gesturesdatasetsettings, datadir=zip_dir)
        with quiet_mads():
            self.streamers = factory.create_datastreamer(
                batchsize=32, preprocessor=PaddedPreprocessor()
            )

    def run(self, seed: int, epochs: int, logdir: Path) -> Trace:
        from mltrainer import Trainer, TrainerSettings, metrics, rnn_models

        random.seed(seed)
        seed_everything(seed)
        train, valid = self.streamers["train"], self.streamers["valid"]
        config = rnn_models.ModelConfig(input_size=3, hidden_size=64, num_layers=2, output_size=20)
        settings = TrainerSettings(
            epochs=epochs,
            metrics=[metrics.Accuracy()],
            logdir=logdir,
            train_steps=len(train),
            valid_steps=len(valid),
            reporttypes=[],
            earlystop_kwargs=None,
        )
        trainer = Trainer(
            model=rnn_models.GRUmodel(config),
            settings=settings,
            loss_fn=torch.nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam,
            traindataloader=train.stream(),
            validdataloader=valid.stream(),
            scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau,
        )
        trace = Trace([], [])
        quiet = functools.partial(tqdm.tqdm, disable=True)  # no progress bar per epoch
        with mock.patch("mltrainer.trainer.tqdm", quiet):
            for _ in range(epochs):  # Trainer.loop's epoch, without its logging
                start = time.perf_counter()
                trainer.trainbatches()
                scores, _ = trainer.evalbatches()
                trace.seconds.append(time.perf_counter() - start)
                trace.accuracy.append(float(scores["Accuracy"]))
        return trace


def course_or_none(workdir: Path) -> Course | None:
    try:
        importlib.import_module("mltrainer")
    except ImportError:
        return None
    from data.fetch import obtain
    from data.gestures import SOURCE

    obtain(SOURCE, workdir)  # its own copy from SWEEPMAP_GESTURES_ZIP: mads edits the folder
    return Course(workdir)


def spread(values: list[float], digits: int = 2) -> str:
    mid, low, high = statistics.median(values), min(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def report(traces: dict[str, list[Trace]], epochs: int) -> list[str]:
    rows = [
        "| variant | s/epoch, median (range) | val/accuracy after 5 | after "
        f"{epochs} | before ÷ variant, paired |",
        "|---|--:|--:|--:|--:|",
    ]
    after = traces["after"]
    for name, runs in traces.items():
        seconds = [s for t in runs for s in t.seconds]
        acc5 = [t.accuracy[min(4, epochs - 1)] for t in runs]
        acc_end = [t.accuracy[-1] for t in runs]
        paired = [
            statistics.median(b.seconds) / statistics.median(t.seconds)
            for b, t in zip(traces["before"], runs, strict=True)
        ]
        rows.append(
            f"| {name} | {spread(seconds)} | {spread(acc5, 3)} | {spread(acc_end, 3)} "
            f"| {spread(paired)}x |"
        )
    rows.append("")
    for name, runs in traces.items():
        if name != "after":
            ratio = [
                statistics.median(t.seconds) / statistics.median(a.seconds)
                for t, a in zip(runs, after, strict=True)
            ]
            rows.append(f"- {name} ÷ after, per round (paired): {spread(ratio)}x")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="append the section to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")  # torch.optim's one-off import, out of epoch 1
    data = load_dataset("gestures")
    with tempfile.TemporaryDirectory() as tmp:
        course = course_or_none(Path(tmp))
        names = [v for v in VARIANTS if v != "course" or course is not None]
        traces: dict[str, list[Trace]] = {name: [] for name in names}
        for seed in range(args.rounds):
            for name in names:
                if name == "course":
                    assert course is not None
                    trace = course.run(seed, args.epochs, Path(tmp))
                else:
                    trace = sweepmap_run(name, data, seed, args.epochs)
                traces[name].append(trace)
                print(f"round {seed} {name}: {spread(trace.seconds)} s/epoch, "
                      f"accuracy {trace.accuracy[-1]:.3f}", flush=True)  # fmt: skip
    lines = report(traces, args.epochs)
    if course is None:
        lines.append("- course: not measured (mltrainer is not importable here).")
    append(lines, args.out)


if __name__ == "__main__":
    main()
