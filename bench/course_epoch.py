"""The course's pipeline on the gestures zip, timed per epoch, in the course's own venv.

Run by bench/gestures_epoch.py with .venv-course's python (bench/course.lock), one process per
round; mltrainer cannot be installed next to sweepmap (bench/course.in says why), so this file
imports only the standard library and the course's packages, never sweepmap's:

    .venv-course/bin/python bench/course_epoch.py --zip gestures-dataset.zip --seed 0 --epochs 20

mads_datasets' streamer with mltrainer's PaddedPreprocessor, mltrainer's Trainer and GRUmodel
(hidden 64, 2 layers, batch 32, Adam 1e-3, ReduceLROnPlateau), one torch thread, on its own
split of the zip (mads shuffles the files). Stdout carries only one JSON object per epoch,
{"epoch": 1, "seconds": 1.43, "accuracy": 0.61}; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib
import json
import os
import random
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from unittest import mock

import numpy as np  # mads' streamers draw their batch order from numpy's global RNG
import torch
import tqdm

BATCH_SIZE = 32


def record(epoch: int, seconds: float, accuracy: float) -> str:
    """One epoch's line on stdout (bench/gestures_epoch.py's parse_course reads it)."""
    return json.dumps({"epoch": epoch, "seconds": seconds, "accuracy": accuracy})


def seed_all(seed: int) -> None:
    # What sweepmap's seed_everything does, without importing sweepmap.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No progress bars from mads_datasets' parsing nor mltrainer's training steps."""
    import mads_datasets.datasets.torchdatasets as mads_torchdatasets
    import mads_datasets.datatools as mads_datatools

    bar = functools.partial(tqdm.tqdm, disable=True)
    with (
        mock.patch.object(mads_datatools, "tqdm", bar),
        mock.patch.object(mads_torchdatasets, "tqdm", bar),
        mock.patch("mltrainer.trainer.tqdm", bar),
    ):
        yield


def unpack(zip_path: Path, datadir: Path) -> None:
    """The layout mads' own download leaves (the archive unpacked, the archive gone), from a
    copy: mads deletes files from the folder it reads."""
    from mads_datasets.settings import gesturesdatasetsettings as settings

    digest = hashlib.md5(zip_path.read_bytes()).hexdigest()
    if digest != settings.digest:
        sys.exit(f"{zip_path}: md5 {digest}, expected {settings.digest} (the gestures zip?)")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(datadir / settings.name)


def streamers(datadir: Path) -> Any:
    from mads_datasets.factories import GesturesDatasetFactory
    from mads_datasets.settings import gesturesdatasetsettings
    from mltrainer.preprocessors import PaddedPreprocessor

    factory = GesturesDatasetFactory(gesturesdatasetsettings, datadir=datadir)
    return factory.create_datastreamer(batchsize=BATCH_SIZE, preprocessor=PaddedPreprocessor())


def train(datadir: Path, seed: int, epochs: int, out: IO[str]) -> None:
    from mltrainer import Trainer, TrainerSettings, metrics, rnn_models

    seed_all(seed)  # mads' split (random) and the streamers' first batch order (numpy)
    loaders = streamers(datadir)
    seed_all(seed)  # the weights, from the same state whatever the data preparation drew
    train, valid = loaders["train"], loaders["valid"]
    config = rnn_models.ModelConfig(input_size=3, hidden_size=64, num_layers=2, output_size=20)
    settings = TrainerSettings(
        epochs=epochs,
        metrics=[metrics.Accuracy()],
        logdir=datadir / "logs",
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
    for epoch in range(1, epochs + 1):  # Trainer.loop's epoch, without its logging
        start = time.perf_counter()
        trainer.trainbatches()
        scores, _ = trainer.evalbatches()
        seconds = time.perf_counter() - start
        print(record(epoch, seconds, float(scores["Accuracy"])), file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", type=Path, required=True, help="gestures-dataset.zip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    # The JSON lines keep the real stdout; fd 1 becomes stderr, so that nothing the libraries
    # print (loguru, mlflow, C extensions) can end up among them.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")  # torch.optim's one-off import, out of epoch 1
    with tempfile.TemporaryDirectory() as tmp, quiet():
        unpack(args.zip, Path(tmp))
        train(Path(tmp), args.seed, args.epochs, out)
    out.close()


if __name__ == "__main__":
    main()
