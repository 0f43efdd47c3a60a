"""analysis/: table, guards, pivot and ANOVA on synthetic runs in a real local store.

Numbers are checked against independent computations (a pandas group-by, sums of squares
by hand), never against the code's own output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.design import axes_of
from analysis.guards import BudgetError, apply_guards
from analysis.labels import fmt_levels, fmt_value
from analysis.stats import anova, pivot
from analysis.table import AnalysisError, Study, build_table, table_from_records
from localsweep.store import Store
from sweepmap import keys

SWEEP = """\
# Does the best learning rate depend on the optimizer?
program: train.py
method: grid
parameters:
  lr:
    values: [1.0e-1, 1.0e-3, 1.0e-2]
  optimizer:
    values: [sgd, adam]
  seed:
    values: [0, 1, 2]
  epochs:
    value: 2
"""
CONFIG: dict[str, Any] = {
    "program": "train.py",
    "method": "grid",
    "parameters": {
        "lr": {"values": [1e-1, 1e-3, 1e-2]},
        "optimizer": {"values": ["sgd", "adam"]},
        "seed": {"values": [0, 1, 2]},
        "epochs": {"value": 2},
    },
}


def summary(acc: float, completed: int = 2) -> dict[str, Any]:
    return {
        keys.VAL_ACCURACY: acc - 0.01,
        keys.BEST_VAL_ACCURACY: acc,
        keys.VAL_LOSS: 1.0 - acc,
        keys.EPOCHS_COMPLETED: completed,
        keys.RUNTIME: 1.5,
    }


def make_store(root: Path, runs: list[dict[str, Any]], config: dict[str, Any] = CONFIG) -> str:
    """A real store; runs are {lr, optimizer, seed, state?, epochs?, acc?, completed?}."""
    store = Store(root)
    store.create_sweep("study", SWEEP, config)
    for i, r in enumerate(runs):
        point = {"lr": r["lr"], "optimizer": r["optimizer"], "seed": r["seed"]}
        point["epochs"] = r.get("epochs", 2)
        state = r.get("state", "finished")
        summ = summary(r["acc"], r.get("completed", point["epochs"])) if state == "finished" else {}
        store.db.execute(
            "INSERT INTO runs (id, sweep, config, state, summary, created) VALUES (?,?,?,?,?,?)",
            (
                r.get("id", f"run{i:02d}"),
                "study",
                json.dumps(point),
                state,
                json.dumps(summ),
                time.time() + i,
            ),
        )
    store.close()
    return "study"


def full_grid(seed_effect: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    return [
        {"lr": lr, "optimizer": opt, "seed": s, "acc": 0.9 - lr + 0.01 * rng.normal()}
        for lr in (1e-3, 1e-2, 1e-1)
        for opt in ("sgd", "adam")
        for s in (0, 1, 2)
    ]


def guarded(tmp_path: Path, runs: list[dict[str, Any]], allow: bool = False) -> Any:
    make_store(tmp_path, runs)
    study = build_table(tmp_path)
    return apply_guards(study, *axes_of(study, None, None), allow_mixed_budgets=allow)


def test_labels_read_like_a_person_writes_them() -> None:
    assert [fmt_value(v) for v in (0.001, 0.0001, 0.01, 0.5, 2.5e-4, 32, 8.0)] == [
        "1e-3",
        "1e-4",
        "0.01",
        "0.5",
        "2.5e-4",
        "32",
        "8",
    ]
    # On one axis, one style: a log grid reads 1e-4 .. 1e-1, never 1e-3 beside 0.01.
    assert fmt_levels([1e-4, 1e-3, 1e-2, 1e-1]) == ["1e-4", "1e-3", "1e-2", "1e-1"]
    assert fmt_levels([0.0, 0.25, 0.5]) == ["0", "0.25", "0.5"]
    assert fmt_levels(["sgd", "adam"]) == ["sgd", "adam"]


def test_table_fills_config_defaults_and_orders_axes(tmp_path: Path) -> None:
    make_store(tmp_path, full_grid())
    study = build_table(tmp_path)  # the only sweep in the store
    t = study.table
    assert list(t.columns[:2]) == ["run_id", "state"]
    assert {"dropout", "batch_size", keys.EPOCHS_COMPLETED, keys.RUNTIME} <= set(t.columns)
    assert (t["batch_size"] == 32).all() and (t["epochs"] == 2).all()
    assert axes_of(study, None, None) == ("lr", "optimizer")
    g = apply_guards(study, "lr", "optimizer")
    assert g.x_levels == [1e-3, 1e-2, 1e-1]  # numbers ascend
    assert g.y_levels == ["sgd", "adam"]  # categories keep the file's order
    with pytest.raises(AnalysisError, match=r"--x 'lrr'.*did you mean 'lr'.*varied parameters: lr"):
        axes_of(study, "lrr", None)


def test_mixed_budgets_refused_naming_runs_unless_allowed(tmp_path: Path) -> None:
    runs = full_grid()
    runs[0].update(id="longer", epochs=3)
    runs[1].update(id="stopped", completed=1)  # early-stopped: finished, but 1 of 2 epochs
    with pytest.raises(BudgetError, match=r"longer.*|stopped.*") as err:
        guarded(tmp_path / "a", runs)
    assert "longer" in str(err.value) and "stopped" in str(err.value)
    assert "--allow-mixed-budgets" in str(err.value)
    g = guarded(tmp_path / "b", runs, allow=True)
    assert len(g.runs) == 18
    assert any(n.startswith("WARNING mixed training budgets") for n in g.notes)


def test_failed_runs_left_out_and_counted_in_their_cell(tmp_path: Path) -> None:
    runs = [r for r in full_grid() if not (r["lr"] == 1e-1 and r["optimizer"] == "adam")]
    runs += [{"lr": 1e-1, "optimizer": "adam", "seed": s, "state": "failed"} for s in (0, 1)]
    runs.append({"lr": 1e-1, "optimizer": "adam", "seed": 2, "state": "crashed"})
    runs[0]["state"] = "crashed"  # lr=1e-3/sgd seed 0: one seed short
    # lr=1e-2/sgd seed 0 failed once, then finished on a retry: not a loss.
    runs.append({"lr": 1e-2, "optimizer": "sgd", "seed": 0, "state": "failed"})
    cells = pivot(guarded(tmp_path, runs), keys.BEST_VAL_ACCURACY).set_index(["lr", "optimizer"])
    # Each state is counted as itself: a crash (the agent died) is not a failed config.
    assert cells.loc[(1e-1, "adam"), ["n", "failed", "crashed"]].tolist() == [0, 2, 1]
    assert np.isnan(cells.loc[(1e-1, "adam"), "mean"])
    assert cells.loc[(1e-3, "sgd"), ["n", "failed", "crashed"]].tolist() == [2, 0, 1]
    assert cells.loc[(1e-2, "sgd"), ["n", "failed", "crashed"]].tolist() == [3, 0, 0]


def test_duplicate_point_counts_once_first_kept(tmp_path: Path) -> None:
    runs = full_grid()
    first = runs[0]
    runs.append({**first, "id": "dup", "acc": 0.0})
    g = guarded(tmp_path, runs)
    assert g.dropped["duplicate"] == ["dup"] and len(g.runs) == 18
    cells = pivot(g, keys.BEST_VAL_ACCURACY).set_index(["lr", "optimizer"])
    assert cells.loc[(first["lr"], first["optimizer"]), "n"] == 3
    assert cells.loc[(first["lr"], first["optimizer"]), "mean"] > 0.5  # 0.0 left out


def test_early_terminate_warns(tmp_path: Path) -> None:
    config = {**CONFIG, "early_terminate": {"type": "hyperband", "min_iter": 1}}
    make_store(tmp_path, full_grid(), config)
    study = build_table(tmp_path)
    notes = apply_guards(study, "lr", "optimizer").notes
    assert any("early_terminate (hyperband)" in n for n in notes)


def test_pivot_matches_an_independent_groupby(tmp_path: Path) -> None:
    runs = full_grid()
    runs[4]["state"] = "failed"
    g = guarded(tmp_path, runs)
    cells = pivot(g, keys.BEST_VAL_ACCURACY)
    frame = pd.DataFrame([r for r in runs if r.get("state", "finished") == "finished"])
    want = frame.groupby(["lr", "optimizer"])["acc"].agg(["mean", "std", "count"])
    got = cells.set_index(["lr", "optimizer"]).loc[want.index]
    np.testing.assert_allclose(got["mean"], want["mean"])
    np.testing.assert_allclose(got["std"], want["std"])  # pandas' std is ddof=1
    assert got["n"].tolist() == want["count"].tolist()


def _study(values: dict[tuple[int, int], list[float]]) -> Study:
    """A study straight from records: the ANOVA needs no store."""
    lrs, opts = [1e-3, 1e-2, 1e-1], ["sgd", "adam", "rmsprop"]
    config = {
        "method": "grid",
        "parameters": {
            "lr": {"values": lrs},
            "optimizer": {"values": opts},
            "seed": {"values": [0, 1, 2, 3]},
        },
    }
    records = [
        {
            "run_id": f"{i}-{j}-{s}",
            "state": "finished",
            "config": {"lr": lrs[i], "optimizer": opts[j], "seed": s, "epochs": 2},
            "summary": {"m": v, keys.EPOCHS_COMPLETED: 2},
        }
        for (i, j), vs in values.items()
        for s, v in enumerate(vs)
    ]
    return Study("s", table_from_records(records, config), config, "", "test")


def _cells(effect: Any, seeds: int = 4) -> dict[tuple[int, int], list[float]]:
    rng = np.random.default_rng(7)
    return {
        (i, j): [effect(i, j) + 0.02 * rng.normal() for _ in range(seeds)]
        for i in range(3)
        for j in range(3)
    }


def test_anova_finds_a_planted_interaction_and_only_then() -> None:
    values = _cells(lambda i, j: 0.1 * (i == j))  # each optimizer has its own best lr
    result = anova(apply_guards(_study(values), "lr", "optimizer"), "m")
    assert result.table is not None
    assert result.table.loc["x:y", "p"] < 1e-6
    # partial eta squared by hand: SS_ab / (SS_ab + SS_within), balanced design.
    y = np.array([values[(i, j)] for i in range(3) for j in range(3)]).reshape(3, 3, 4)
    cell, grand = y.mean(axis=2), y.mean()
    ss_within = ((y - cell[..., None]) ** 2).sum()
    ss_a = 12 * ((cell.mean(axis=1) - grand) ** 2).sum()
    ss_b = 12 * ((cell.mean(axis=0) - grand) ** 2).sum()
    ss_ab = 4 * ((cell - grand) ** 2).sum() - ss_a - ss_b
    eta = result.table.loc["x:y", "eta2_p"]
    assert eta == pytest.approx(ss_ab / (ss_ab + ss_within))

    additive = _cells(lambda i, j: 0.05 * i + 0.03 * j)
    result = anova(apply_guards(_study(additive), "lr", "optimizer"), "m")
    assert result.table is not None
    assert result.table.loc["x:y", "p"] > 0.05
    assert result.table.loc["x", "p"] < 1e-6  # main effects are still found


def test_anova_with_one_seed_says_so_plainly() -> None:
    result = anova(apply_guards(_study(_cells(lambda i, j: 0.0, seeds=1)), "lr", "optimizer"), "m")
    assert result.table is None
    assert (
        "ANOVA needs >= 2 finished runs per cell; cells with fewer: lr=1e-3/optimizer=sgd (n=1)"
        in (result.lines()[0])
    )
