"""`python -m analysis inspect`: what the best cell's runs (or one named run) got wrong.

Each run's summary holds its final validation confusion matrix and the validation positions
it misclassified, with their predictions (sweepmap/keys.py). The split is fixed by the run's
`split_seed`, so the samples are found again from the data alone, without any model. Over a
cell's seeds the matrices are summed, and a sample shows how many of the runs got it wrong.
"""

from __future__ import annotations

import argparse
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.design import axes_of, choose_metrics
from analysis.guards import Guarded, apply_guards
from analysis.labels import slug
from analysis.output import default_folder, write_outputs
from analysis.stats import best_cell, pivot
from analysis.table import AnalysisError, Study
from sweepmap import keys
from sweepmap.wandb_exit import wandb_error

DEFAULT_SAMPLES = 24
FASHION = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Boot")  # fmt: skip


@dataclass(frozen=True)
class Mistake:
    position: int  # in load_dataset(dataset, split_seed).valid
    true: int
    predicted: int  # the most common wrong prediction among the runs that missed it
    wrong_in: int  # how many of the runs misclassified it
    preds: tuple[int, ...]  # every run's prediction for it, among the runs that missed it


@dataclass(frozen=True)
class Errors:
    """The chosen runs' mistakes, pooled, with the samples they were made on."""

    title: str  # which runs: the cell or the run, and its metric
    dataset: str
    split_seed: int
    runs: list[str]
    confusion: np.ndarray  # (C, C) int, summed over the runs: [true][predicted]
    mistakes: list[Mistake]  # most often wrong first, then by position
    notes: list[str]
    complete: bool  # every mistake's position was recorded (none capped)
    samples: Any = None  # the drawn samples' inputs, in `mistakes` order (numpy arrays)
    lengths: Any = None  # their true lengths (sequences), else None

    def class_name(self, label: int) -> str:
        return FASHION[label] if self.dataset == "fashion" else str(label)

    def pairs(self, top: int) -> list[tuple[int, int, int]]:
        """The `top` most frequent (true, predicted, count) with true != predicted."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(-off, axis=None, kind="stable")[:top]
        cells = [(int(i) // len(off), int(i) % len(off)) for i in order]
        return [(t, p, int(off[t, p])) for t, p in cells if off[t, p] > 0]


def _chosen(study: Study, args: argparse.Namespace) -> tuple[pd.DataFrame, str, Guarded | None]:
    """(runs, a title, the guarded study or None for a named run)."""
    table = study.table
    if args.run:
        rows = table[table["run_id"] == args.run]
        if rows.empty:
            ids = ", ".join(table["run_id"].head(8)) + (", ..." if len(table) > 8 else "")
            raise AnalysisError(f"--run {args.run!r}: not a run of {study.name} (runs: {ids})")
        return rows, f"run {args.run} ({rows.iloc[0]['state']})", None
    x, y = axes_of(study, args.x, args.y)
    g = apply_guards(study, x, y, allow_mixed_budgets=args.allow_mixed_budgets)
    metric = choose_metrics(study, args.metric)[0][0]
    cells = pivot(g, metric)
    best = best_cell(cells, g.goal(metric))
    if best is None:
        raise AnalysisError(f"sweep {study.name}: no cell has a value of {metric}")
    a, b = best[x], best[y]
    rows = g.runs[(g.runs[x] == a) & (g.runs[y] == b)]
    mean = f"{metric} {best['mean']:.4g}, n={int(best['n'])}"
    return rows, f"best cell {g.where(a, b)} ({mean}, goal {g.goal(metric)})", g


def _summaries(study: Study, args: argparse.Namespace, ids: list[str]) -> dict[str, dict]:
    """Whole summaries (the table keeps scalars only) of the runs `ids`."""
    if args.wandb:
        return _wandb_summaries(args.wandb, ids)
    from localsweep.store import Store

    store = Store(args.store or ".sweepmap")
    try:
        return {r.id: r.summary for r in store.runs(study.name) if r.id in ids}
    finally:
        store.close()


def _wandb_summaries(path: str, ids: list[str]) -> dict[str, dict]:
    """From the server each time: the cache of `heatmap`/`report` holds scalars only."""
    from analysis.wandbsrc import PER_PAGE, parse_path

    entity, project, sweep_id = parse_path(path)
    try:
        import wandb

        runs = wandb.Api().runs(
            f"{entity}/{project}", filters={"sweep": sweep_id}, per_page=PER_PAGE, lazy=False
        )
        return {r.id: dict(r.summary_metrics) for r in runs if r.id in ids}
    except Exception as err:  # network, auth: one line, as for the other commands
        raise AnalysisError(f"--wandb {path}: {wandb_error(err)}") from None


def collect(study: Study, args: argparse.Namespace) -> Errors:
    rows, title, _ = _chosen(study, args)
    summaries = _summaries(study, args, list(rows["run_id"]))
    notes: list[str] = []
    have = [r for r in rows["run_id"] if keys.VAL_CONFUSION in summaries.get(r, {})]
    if not have:
        what = "it has" if args.run else f"its {len(rows)} run(s) have"
        raise AnalysisError(
            f"{title}: {what} no {keys.VAL_CONFUSION} in the summary (a failed run, or one "
            "trained before runs recorded their mistakes): run it again"
        )
    if len(have) < len(rows):
        notes.append(f"{len(rows) - len(have)} run(s) of the cell recorded no matrix: left out")
    rows = rows.set_index("run_id").loc[have]
    # Positions index one split: keep the runs that share the first one's data and split.
    split = rows[["dataset", "split_seed"]].drop_duplicates()
    if len(split) > 1:
        first = rows.iloc[0]
        same = (rows["dataset"] == first["dataset"]) & (rows["split_seed"] == first["split_seed"])
        notes.append(f"{int((~same).sum())} run(s) on another split left out")
        rows = rows[same]
    dataset, split_seed = str(rows.iloc[0]["dataset"]), int(rows.iloc[0]["split_seed"])
    matrices = [np.asarray(summaries[r][keys.VAL_CONFUSION], dtype=np.int64) for r in rows.index]
    confusion = np.sum(np.stack(matrices), axis=0)
    wrong: dict[int, list[int]] = {}
    recorded = 0
    for r in rows.index:
        s = summaries[r]
        recorded += len(s[keys.VAL_MISCLASSIFIED])
        for pos, pred in zip(
            s[keys.VAL_MISCLASSIFIED], s[keys.VAL_MISCLASSIFIED_PRED], strict=True
        ):
            wrong.setdefault(int(pos), []).append(int(pred))
    total = int(confusion.sum() - np.trace(confusion))
    if recorded < total:
        notes.append(f"positions recorded for {recorded} of {total} mistakes (capped per run)")
    mistakes = [
        Mistake(pos, -1, Counter(preds).most_common(1)[0][0], len(preds), tuple(preds))
        for pos, preds in wrong.items()
    ]
    mistakes.sort(key=lambda m: (-m.wrong_in, m.position))
    return Errors(
        title, dataset, split_seed, list(rows.index), confusion, mistakes, notes, recorded == total
    )


def with_samples(errors: Errors, n: int) -> Errors:
    """The first `n` mistakes with their true labels and inputs, loaded by split_seed."""
    from data import DataUnavailable, load_dataset  # torch: only once the input is good

    try:
        valid = load_dataset(errors.dataset, errors.split_seed).valid
    except DataUnavailable as err:
        raise AnalysisError(str(err)) from None
    changed = (
        f"{errors.title}: the recorded mistakes do not fit {errors.dataset}'s validation split "
        f"(split_seed {errors.split_seed}) as it loads now: the data changed since the runs"
    )
    if any(m.position >= len(valid) for m in errors.mistakes):
        raise AnalysisError(changed)
    y = valid.y.tolist()
    mistakes = [
        Mistake(m.position, y[m.position], m.predicted, m.wrong_in, m.preds)
        for m in errors.mistakes
    ]
    # The samples are found again by position alone: check them against the matrices, which
    # count each (true, predicted) pair (exactly so when no position was capped).
    seen = Counter((m.true, p) for m in mistakes for p in m.preds)
    for (t, p), count in seen.items():
        if t == p or count > errors.confusion[t, p]:
            raise AnalysisError(changed)
    off = errors.confusion.sum() - np.trace(errors.confusion)
    if errors.complete and sum(seen.values()) != off:
        raise AnalysisError(changed)
    index = [m.position for m in mistakes[:n]]
    lengths = None if valid.lengths is None else valid.lengths[index].numpy()
    return Errors(
        errors.title, errors.dataset, errors.split_seed, errors.runs, errors.confusion,
        mistakes, errors.notes, errors.complete, valid.x[index].numpy(), lengths,
    )  # fmt: skip


def run_inspect(args: argparse.Namespace, study: Study, reproduce: str) -> list[Path]:
    from analysis.inspect_figure import inspect_figure  # matplotlib: after the input checks

    if args.samples < 1:
        raise AnalysisError(f"--samples {args.samples}: draw at least 1")
    errors = with_samples(collect(study, args), args.samples)
    fig = inspect_figure(errors)
    if args.out:
        out = Path(args.out)
    elif args.run:
        out = Path("reports") / study.name / f"inspect_{slug(args.run)}"
    else:
        x, y = axes_of(study, args.x, args.y)
        out = default_folder(study.name, "inspect", x, y)
    table = pd.DataFrame(
        [{**vars(m), "preds": " ".join(map(str, m.preds))} for m in errors.mistakes]
    )
    for line in [errors.title, *errors.notes]:
        print(line)
    for t, p, count in errors.pairs(5):
        print(f"  true {errors.class_name(t)} -> predicted {errors.class_name(p)}: {count}")
    info = {
        "command": "inspect",
        "sweep": study.name,
        "source": study.origin,
        "selection": errors.title,
        "runs": errors.runs,
        "dataset": errors.dataset,
        "split_seed": errors.split_seed,
        "reproduce": reproduce + (f" --run {shlex.quote(args.run)}" if args.run else ""),
    }
    what = {
        "misclassified.csv": "every recorded mistake: valid position, true, predicted, runs",
        "inspect.png": "most-confused class pairs and misclassified validation samples",
    }
    csv = {"misclassified.csv": table.to_csv(index=False)}
    paths = write_outputs(out, {"inspect.png": fig}, csv, what, info)
    return sorted(paths, key=lambda p: p.suffix == ".png")  # the figure's path printed last
