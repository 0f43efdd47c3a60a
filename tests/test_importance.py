"""`analysis importance`'s method: the fANOVA decomposition against brute force, planted
interactions recovered, an additive function read as additive, and the budget of a hyperband
scan against a pandas computation (the command itself: tests/test_importance_cli.py)."""

from __future__ import annotations

import itertools
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.importance import bootstrap, decompose, fit_ensemble, quadrature_levels
from analysis.scan_runs import at_budget, scan_params
from analysis.table import AnalysisError, build_table
from localsweep.store import Store
from sweepmap import keys
from sweepmap.sweepfile import read_sweep, sweep_name

ROOT = Path(__file__).resolve().parents[1]
REPLICATES = 25
SCAN = textwrap.dedent(
    """\
    # Which pair of the digits CNN's parameters interacts?
    program: train.py
    method: random
    run_cap: 60
    metric:
      name: val/accuracy
      goal: maximize
    early_terminate:
      type: hyperband
      min_iter: 2
      eta: 2
    parameters:
      lr:
        distribution: log_uniform_values
        min: 1.0e-4
        max: 1.0e-1
      optimizer:
        values: [sgd, adam, rmsprop]
      dropout:
        distribution: uniform
        min: 0.0
        max: 0.5
      batch_size:
        values: [16, 32, 64]
      filters:
        distribution: int_uniform
        min: 8
        max: 64
      dataset:
        value: digits
      model:
        value: cnn
      epochs:
        value: 8
    """
)
BEST_LOG_LR = {"sgd": -1.5, "adam": -3.0, "rmsprop": -2.5}  # the planted interaction
# How each run ended: (state, epochs completed); 60 runs, 2 failed.
ENDINGS = [("stopped", 2)] * 12 + [("stopped", 4)] * 8 + [("stopped", 6)] * 6
ENDINGS += [("finished", 8)] * 32 + [("failed", 1)] * 2


def planted(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Runs of the scan above: the best lr moves with the optimizer; dropout costs a little;
    batch_size and filters do nothing."""
    rng = np.random.default_rng(seed)
    runs = pd.DataFrame(
        {
            "lr": 10 ** rng.uniform(-4, -1, n),
            "optimizer": rng.choice(list(BEST_LOG_LR), n),
            "dropout": rng.uniform(0, 0.5, n),
            "batch_size": rng.choice([16, 32, 64], n),
            "filters": rng.integers(8, 65, n),
        }
    )
    best = runs["optimizer"].map(BEST_LOG_LR)
    y = 0.95 - 0.05 * (np.log10(runs["lr"]) - best) ** 2 - 0.1 * runs["dropout"]
    return runs, (y + 0.01 * rng.normal(size=n)).to_numpy()


def at_epoch(final: float, epoch: int) -> float:
    """A learning curve that ends at `final` after 8 epochs: every epoch's value differs."""
    return final * (1 - 0.5**epoch) / (1 - 0.5**8)


def make_scan(tmp: Path) -> tuple[Path, Path, pd.DataFrame]:
    """The scan in a real store: (store, yaml, runs with their histories' long table)."""
    yaml_path = tmp / "scan.yaml"
    yaml_path.write_text(SCAN)
    text, config = read_sweep(yaml_path)
    name = sweep_name(yaml_path, config)
    root = tmp / "store"
    store = Store(root)
    store.create_sweep(name, text, config)
    runs, y = planted(len(ENDINGS))
    rows = []
    for i, ((state, done), final) in enumerate(zip(ENDINGS, y, strict=True)):
        point = {**runs.iloc[i].to_dict(), "dataset": "digits", "model": "cnn", "epochs": 8}
        point = {k: v.item() if hasattr(v, "item") else v for k, v in point.items()}
        history = [
            {keys.EPOCH: e, keys.VAL_ACCURACY: at_epoch(final, e), keys.VAL_LOSS: 1 - final}
            for e in range(1, done + 1)
        ]
        summary = {**history[-1], keys.EPOCHS_COMPLETED: done}
        if state == "stopped":
            summary[keys.STOPPED] = "hyperband"
        if state == "failed":
            summary = {keys.FAILURE: "diverged", keys.EPOCHS_COMPLETED: done}
        store.restore_run(f"r{i:02d}", name, point, state, summary, None, time.time() + i, history)
        rows += [{"run_id": f"r{i:02d}", "state": state, **h} for h in history]
    store.close()
    return root, yaml_path, pd.DataFrame(rows)


def test_decomposition_equals_brute_force_on_the_product_grid() -> None:
    runs, y = planted()
    x = pd.DataFrame(
        {"lr": np.log10(runs["lr"]), "opt": runs["optimizer"].astype("category").cat.codes}
    )
    x["dropout"] = runs["dropout"]
    values = x.to_numpy(dtype=float)
    levels = [quadrature_levels(values[:, k], k == 1) for k in range(3)]
    model = fit_ensemble(values, y, 0)
    got = decompose(model, levels)
    grid = np.array(list(itertools.product(*levels)))
    f = model.predict(grid).reshape([len(g) for g in levels])
    f0, v = f.mean(), f.var()
    main = [f.mean(axis=tuple(d for d in range(3) if d != i)) - f0 for i in range(3)]
    assert got.f0 == pytest.approx(f0) and got.variance == pytest.approx(v)
    assert got.main == pytest.approx([np.mean(m**2) / v for m in main])
    for i, j in itertools.combinations(range(3), 2):
        joint = f.mean(axis=3 - i - j)
        effect = joint - main[i][:, None] - main[j][None, :] - f0
        assert got.surface[(i, j)] == pytest.approx(joint)
        assert got.pair[(i, j)] == pytest.approx(np.mean(effect**2) / v)


def _pairs(x: pd.DataFrame, y: np.ndarray, categorical: list[bool]) -> pd.DataFrame:
    table = bootstrap(x, y, categorical, REPLICATES, seed=0).table(0.90)
    return table[table["kind"] == "pair"].reset_index(drop=True)


def test_planted_categorical_by_continuous_pair_ranks_first() -> None:
    runs, y = planted()
    x = pd.DataFrame(
        {
            "lr": np.log10(runs["lr"]),
            "optimizer": runs["optimizer"].map({o: k for k, o in enumerate(BEST_LOG_LR)}),
            "dropout": runs["dropout"],
            "batch_size": runs["batch_size"],
            "filters": runs["filters"],
        }
    )
    pairs = _pairs(x, y, [False, True, False, True, False])
    top, rest = pairs.iloc[0], pairs.iloc[1:]
    assert top["parameters"] == "lr × optimizer"
    # Its true share on the quantile grid is 0.58; the surrogate reads less of it, but its
    # interval stays clear of every other pair's median, all of them near zero.
    assert top["lo"] > 3 * rest["share"].max()
    assert top["first"] >= 0.9
    assert rest["share"].max() < 0.05


def test_planted_product_pair_ranks_first() -> None:
    # y = a x1 + b x2 + c x3 x4 + noise on [0, 1]: x3 x4's interaction share is 0.15
    # on the quantile grid (the rest of the product is two main effects).
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.uniform(0, 1, (60, 5)), columns=["x1", "x2", "x3", "x4", "x5"])
    y = x["x1"] + 0.7 * x["x2"] + 4 * x["x3"] * x["x4"] + 0.1 * rng.normal(size=60)
    pairs = _pairs(x, y.to_numpy(), [False] * 5)
    assert pairs.iloc[0]["parameters"] == "x3 × x4"
    assert pairs.iloc[0]["lo"] > 2 * pairs.iloc[1:]["share"].max()
    assert pairs.iloc[0]["first"] >= 0.9


def test_additive_function_has_no_pair_interaction() -> None:
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.uniform(0, 1, (60, 5)), columns=["x1", "x2", "x3", "x4", "x5"])
    y = x["x1"] + 0.7 * x["x2"] + 0.3 * x["x3"] + 0.1 * rng.normal(size=60)
    pairs = _pairs(x, y.to_numpy(), [False] * 5)
    assert pairs["share"].max() < 0.05


def _history(root: Path, run_ids: list[str]) -> dict[str, list[dict]]:
    store = Store(root, create=False)
    try:
        return {r: store.history(r) for r in run_ids}
    finally:
        store.close()


def test_budget_of_a_hyperband_scan_equals_pandas(tmp_path: Path) -> None:
    root, yaml_path, hist = make_scan(tmp_path)
    study = build_table(root, None, yaml_path)
    params, _ = scan_params(study.sweep_config)
    history = _history(root, list(study.table["run_id"]))
    at = at_budget(study, history, keys.VAL_ACCURACY, None, params)
    # Independently: each run reached its history's last epoch; the budget is the largest
    # epoch that 2/3 of the finished and stopped runs reached; each counts at that epoch.
    runs = hist.groupby("run_id").agg(state=("state", "first"), reached=("epoch", "max"))
    done = runs[runs["state"].isin(["finished", "stopped"])]
    budget = max(e for e in range(1, 9) if (done["reached"] >= e).sum() >= 2 / 3 * len(done))
    assert at.budget == budget == 4
    rows = hist[(hist["epoch"] == budget) & hist["state"].isin(["finished", "stopped"])]
    want = rows.set_index("run_id")[keys.VAL_ACCURACY].sort_index()
    got = at.runs.set_index("run_id")["y"].sort_index()
    pd.testing.assert_series_equal(got, want, check_names=False)
    # r20 was stopped at epoch 6: it counts at its epoch-4 value, not its summary's (epoch 6).
    summary = study.table.set_index("run_id").loc["r20", keys.VAL_ACCURACY]
    assert got["r20"] == want["r20"] != summary
    assert at.line == (
        "budget 4 epochs: 46 runs (14 stopped runs at their epoch-4 value); "
        "14 left out (12 stopped before epoch 4, 2 failed)"
    )
    six = at_budget(study, history, keys.VAL_ACCURACY, 6, params)
    assert len(six.runs) == int((done["reached"] >= 6).sum()) == 38
    with pytest.raises(AnalysisError, match=r"--budget 9: no finished or stopped run reached "
                       r"epoch 9; epochs they completed: 2 \(12 runs\), 4 \(8 runs\), "
                       r"6 \(6 runs\), 8 \(32 runs\)$"):  # fmt: skip
        at_budget(study, history, keys.VAL_ACCURACY, 9, params)
