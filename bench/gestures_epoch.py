"""Seconds per epoch of the default gestures GRU (hidden 64, 2 layers, batch 32, Adam 1e-3),
one torch thread, in one invocation, the variants taking turns within each round:

- before: sweepmap's loop as it was: packed GRU, random batches trimmed to their longest;
- gathered: the last true step gathered from the padded run, random batches;
- bucketed: gathered, and length-bucketed batches (sweepmap/batches.py);
- after: bucketed, and the GRU's backward written out (models/fastgru.py): today's `fit`;
- course: the course's pipeline (mads_datasets' streamer with mltrainer's PaddedPreprocessor,
  mltrainer's Trainer and GRUmodel): bench/course_epoch.py, run by the python of the course's
  own venv (bench/course.lock; mltrainer cannot share sweepmap's), one process per round.

    make bench-gestures  # builds .venv-course, then:
    python -m bench.gestures_epoch --epochs 20 --rounds 3 [--course-python PATH] [--out FILE]

An epoch is its training steps and its validation pass. Round r trains every variant from
seed r; the sweepmap variants start from the same weights on the same split, and share today's
validation pass and fused optimizer. The course's process times its own epochs: its start-up
and data preparation are not in its seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from bench.facts import ROOT, machine_facts
from bench.peers_report import git_commit
from bench.report import append
from data import Dataset, Split, load_dataset
from data.gestures import SOURCE
from models import build_model, fastgru
from models.rnn import RNN
from sweepmap import keys, loop
from sweepmap.config import Config
from sweepmap.runtime import seed_everything

VARIANTS = ("before", "gathered", "bucketed", "after", "course")


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
        if variant != "after":  # nn.GRU's own training pass
            stack.enter_context(mock.patch.object(fastgru, "applies", lambda rnn, x: False))
        last = time.perf_counter()

        def log(metrics: dict[str, Any]) -> None:
            nonlocal last
            now = time.perf_counter()
            trace.seconds.append(now - last)
            trace.accuracy.append(metrics[keys.VAL_ACCURACY])
            last = now

        loop.fit(model, data, cfg, torch.device("cpu"), generator, log)
    return trace


COURSE_SCRIPT = Path(__file__).with_name("course_epoch.py")
COURSE_VENV_PYTHON = ROOT / ".venv-course" / "bin" / "python"
HOW_TO_BUILD = "`make bench-gestures` builds .venv-course from bench/course.lock"


def find_course_python(
    given: Path | None, environ: Mapping[str, str], default: Path = COURSE_VENV_PYTHON
) -> Path | None:
    """--course-python, else $SWEEPMAP_COURSE_PYTHON, else .venv-course's python if built."""
    if given is not None:
        return given
    if environ.get("SWEEPMAP_COURSE_PYTHON"):
        return Path(environ["SWEEPMAP_COURSE_PYTHON"])
    return default if default.exists() else None


def course_unavailable(python: Path | None, zip_path: str | None) -> str | None:
    """Why the course cannot be measured here, as the report's line; None when it can."""
    if python is None:
        return f"- course: not measured (no course python: {HOW_TO_BUILD})."
    if not python.exists():
        return f"- course: not measured ({python} does not exist: {HOW_TO_BUILD})."
    if not zip_path:
        return "- course: not measured (it reads the zip itself: set SWEEPMAP_GESTURES_ZIP)."
    return None


def parse_course(stdout: str, epochs: int) -> Trace:
    """bench/course_epoch.py's output: one JSON object per epoch, in order, nothing else."""
    trace = Trace([], [])
    for n, line in enumerate(stdout.splitlines(), start=1):
        try:
            epoch = json.loads(line)
            if epoch["epoch"] != n:
                raise ValueError
            trace.seconds.append(float(epoch["seconds"]))
            trace.accuracy.append(float(epoch["accuracy"]))
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"course: line {n} is not epoch {n}'s JSON: {line!r}") from None
    if len(trace.seconds) != epochs:
        raise ValueError(f"course: {len(trace.seconds)} epochs reported, {epochs} asked")
    return trace


def course_run(
    python: Path, zip_path: str, seed: int, epochs: int, script: Path = COURSE_SCRIPT
) -> Trace:
    """One round of the course in its own process; its start-up and data preparation fall
    outside the seconds, which it times per epoch itself."""
    args = ["--zip", zip_path, "--seed", str(seed), "--epochs", str(epochs)]
    command = [str(python), str(script), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise RuntimeError(f"course: {' '.join(command)} exited {done.returncode}:\n{tail}")
    return parse_course(done.stdout, epochs)


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
    parser.add_argument(
        "--course-python",
        type=Path,
        help="the course venv's python (default $SWEEPMAP_COURSE_PYTHON, else .venv-course's)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")  # torch.optim's one-off import, out of epoch 1
    data = load_dataset("gestures")
    facts, load_before = machine_facts(), os.getloadavg()[0]
    python = find_course_python(args.course_python, os.environ)
    zip_path = os.environ.get(SOURCE.env)
    missing = course_unavailable(python, zip_path)
    if missing:
        print(missing.removeprefix("- "), flush=True)
    names = [v for v in VARIANTS if v != "course" or missing is None]
    traces: dict[str, list[Trace]] = {name: [] for name in names}
    for seed in range(args.rounds):
        for name in names:
            if name == "course":
                assert python is not None and zip_path
                trace = course_run(python, zip_path, seed, args.epochs)
            else:
                trace = sweepmap_run(name, data, seed, args.epochs)
            traces[name].append(trace)
            print(f"round {seed} {name}: {spread(trace.seconds)} s/epoch, "
                  f"accuracy {trace.accuracy[-1]:.3f}", flush=True)  # fmt: skip
    command = f"python -m bench.gestures_epoch --epochs {args.epochs} --rounds {args.rounds}"
    load = f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    lines = [
        "",
        "## Gestures epoch: sweepmap's loop, step by step, against the course's pipeline",
        "",
        f"`{command}` (`make bench-gestures`: 20 epochs, 3 rounds) at commit "
        f"{git_commit(ROOT)}, {facts['date']}; {facts['cpu']}, one torch thread, "
        f"{facts['versions']}; {load}. Medians (ranges) over every epoch of the rounds; the "
        "ratios are paired within a round.",
        "",
        *report(traces, args.epochs),
    ]
    if missing:
        lines.append(missing)
    append(lines, args.out)


if __name__ == "__main__":
    main()
