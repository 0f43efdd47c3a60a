"""`python -m analysis inspect` on a small real store: runs trained on digits for one epoch,
their summaries stored as the local agent stores them; the cell, the counts and the samples
checked against independent computations (pandas, the data loaded here)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch

from analysis.cli import main
from analysis.inspect_figure import inspect_figure
from analysis.inspect_runs import Errors, Mistake
from data import load_dataset
from localsweep.store import Store
from models import build_model
from sweepmap import keys
from sweepmap.config import Config
from sweepmap.loop import fit
from sweepmap.runtime import seed_everything, set_threads
from sweepmap.sweepfile import read_sweep, sweep_name

from .conftest import write_sweep

GRID: dict[str, list[Any]] = {"lr": [0.003, 0.03], "optimizer": ["sgd", "adam"], "seed": [0, 1]}
FIXED = {"epochs": 1, "dataset": "digits", "model": "mlp"}  # real training, quickly


@pytest.fixture(scope="module")
def trained() -> list[tuple[dict, dict]]:
    """(point, summary) of 8 real one-epoch runs, trained once for the module (~1 s)."""
    out = []
    for lr in GRID["lr"]:
        for opt in GRID["optimizer"]:
            for seed in GRID["seed"]:
                point = {"lr": lr, "optimizer": opt, "seed": seed, **FIXED}
                cfg = Config.from_mapping(point)
                set_threads(cfg)  # one thread, as an agent's run: two cores are shared
                data = load_dataset(cfg.dataset, cfg.split_seed)
                net = build_model(cfg, data.info)
                res = fit(
                    net, data, cfg, torch.device("cpu"), seed_everything(seed), lambda _: None
                )
                out.append((point, res.summary))
    return out


def store_of(root: Path, trained: list[tuple[dict, dict]], drop: tuple[str, ...] = ()) -> str:
    root.mkdir(parents=True, exist_ok=True)
    yaml = write_sweep(root / "grid.yaml", {**GRID, **FIXED})
    text, config = read_sweep(yaml)
    name = sweep_name(yaml, config)
    store = Store(root / "store")
    store.create_sweep(name, text, config)
    for i, (point, summary) in enumerate(trained):
        kept = {k: v for k, v in summary.items() if k not in drop}
        store.db.execute(
            "INSERT INTO runs (id, sweep, config, state, summary, created) VALUES (?,?,?,?,?,?)",
            (f"r{i}", name, json.dumps(point), "finished", json.dumps(kept), time.time() + i),
        )
    store.close()
    return name


def test_inspect_draws_the_best_cells_mistakes(
    tmp_path: Path, trained: list[tuple[dict, dict]], capsys: pytest.CaptureFixture[str]
) -> None:
    name = store_of(tmp_path, trained)
    out = tmp_path / "out"
    argv = ["inspect", "--store", str(tmp_path / "store"), "--sweep", name, "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "inspect.png")  # the figure's path, last
    image = mpimg.imread(out / "inspect.png")
    assert image.shape[0] > 800 and image.shape[1] > 1500

    # The best cell by pandas, from the summaries alone.
    runs = pd.DataFrame(
        [{**p, "run_id": f"r{i}", "acc": s[keys.VAL_ACCURACY]} for i, (p, s) in enumerate(trained)]
    )
    best = runs.groupby(["lr", "optimizer"])["acc"].mean().idxmax()
    ids = list(runs[(runs["lr"] == best[0]) & (runs["optimizer"] == best[1])]["run_id"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["runs"]) == sorted(ids)
    assert set(manifest["files"]) == {"inspect.png", "misclassified.csv"}

    # Every recorded mistake of those runs once, with how many missed it; true labels from
    # the data loaded here, by split_seed alone.
    summaries = [trained[int(i[1:])][1] for i in ids]
    missed = Counter(p for s in summaries for p in s[keys.VAL_MISCLASSIFIED])
    table = pd.read_csv(out / "misclassified.csv")
    assert dict(zip(table["position"], table["wrong_in"], strict=True)) == dict(missed)
    valid_y = load_dataset("digits", 0).valid.y.numpy()
    assert (table["true"].to_numpy() == valid_y[table["position"]]).all()
    assert (table["true"] != table["predicted"]).all()
    assert list(table["wrong_in"]) == sorted(table["wrong_in"], reverse=True)


def test_a_named_run_and_refusals(
    tmp_path: Path, trained: list[tuple[dict, dict]], capsys: pytest.CaptureFixture[str]
) -> None:
    name = store_of(tmp_path, trained)
    base = ["inspect", "--store", str(tmp_path / "store"), "--sweep", name]
    assert main([*base, "--run", "r3", "--out", str(tmp_path / "one")]) == 0
    table = pd.read_csv(tmp_path / "one" / "misclassified.csv")
    summary = trained[3][1]
    assert sorted(table["position"]) == summary[keys.VAL_MISCLASSIFIED]
    assert (table["wrong_in"] == 1).all()
    capsys.readouterr()

    for extra, says in (
        (["--run", "nope"], "not a run of"),
        (["--samples", "0"], "at least 1"),
        (["--x", "lr", "--y", "lr"], "both"),
    ):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err


def test_runs_without_a_matrix_or_with_other_data_are_refused(
    tmp_path: Path, trained: list[tuple[dict, dict]], capsys: pytest.CaptureFixture[str]
) -> None:
    old = store_of(tmp_path / "old", trained, drop=(keys.VAL_CONFUSION,))
    assert main(["inspect", "--store", str(tmp_path / "old" / "store"), "--sweep", old]) == 2
    assert "no val/confusion_matrix" in capsys.readouterr().err

    # A position past the split, or a sample whose class the matrix says was never missed:
    # the data is not what the run saw.
    (point, summary), *rest = trained
    moved = {**summary, keys.VAL_MISCLASSIFIED: [10_000] * len(summary[keys.VAL_MISCLASSIFIED])}
    other = store_of(tmp_path / "other", [(point, moved), *rest])
    argv = ["inspect", "--store", str(tmp_path / "other" / "store"), "--sweep", other]
    assert main([*argv, "--run", "r0"]) == 2
    assert "the data changed" in capsys.readouterr().err


def test_gestures_are_drawn_as_three_traces() -> None:
    rng = np.random.default_rng(0)
    confusion = np.diag(np.full(20, 30))
    confusion[3, 7] = confusion[7, 3] = 2
    mistakes = [Mistake(5, 3, 7, 1, (7,)), Mistake(9, 7, 3, 1, (3,))]
    errors = Errors(
        "run x", "gestures", 0, ["x"], confusion, mistakes, [], True,
        rng.normal(size=(2, 40, 3)), np.array([25, 40]),
    )  # fmt: skip
    fig = inspect_figure(errors)
    traces = [ax for sub in fig.subfigs for ax in sub.axes if len(ax.lines) == 3]
    assert len(traces) == 2
    assert np.size(traces[0].lines[0].get_xdata()) == 25  # the true length, not the padding
    assert traces[0].get_title() == "#5: 3 → 7"
