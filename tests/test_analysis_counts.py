"""analysis' counts on sweeps that did not simply finish: interrupted (each grid point by the
state of its last run), never run, all failed, a pooled factor and no seed; every count is
checked against a pandas computation of the runs that were written.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from analysis.cli import main
from analysis.guards import apply_guards
from analysis.reading import analyse, finding
from analysis.report import render_report
from analysis.table import build_table
from localsweep.grid import all_points
from sweepmap import keys
from tests.test_analysis_studies import noise, store_study, sweep


def test_pooled_factor_and_missing_seed_are_said(tmp_path: Path) -> None:
    config = sweep({"lr": [1e-3, 1e-2], "optimizer": ["sgd", "adam"], "batch_size": [16, 32]})
    runs = store_study(tmp_path, config, lambda p: 0.9 + noise(p))
    study = build_table(tmp_path)
    g = apply_guards(study, "lr", "optimizer")
    want = runs.groupby(["lr", "optimizer"]).size()
    cells = analyse(g, keys.VAL_ACCURACY).cells.set_index(["lr", "optimizer"])
    assert cells.loc[want.index, "n"].tolist() == want.tolist() == [2] * 4
    assert g.n_counts == "runs over batch_size"
    assert any(n.startswith("WARNING batch_size also varied: pooled") for n in g.notes)
    assert not any(n.startswith("WARNING no seed axis") for n in g.notes)  # the pooled line says it

    config = sweep({"lr": [1e-3, 1e-2], "optimizer": ["sgd", "adam"]})
    store_study(tmp_path / "b", config, lambda p: 0.9)
    g = apply_guards(build_table(tmp_path / "b"), "lr", "optimizer")
    assert any(n.startswith("WARNING no seed axis: one run per cell") for n in g.notes)
    # One run a cell: no CI, no test, no ANOVA, and the page says so rather than failing.
    r = analyse(g, keys.VAL_ACCURACY)
    assert r.cells["ci_lo"].isna().all() and not r.ties.tested and r.anova.table is None
    assert finding(g, r).endswith("is not tested (a cell has < 2 finished runs)")
    plt.close(render_report(g, [r], "python -m analysis report"))


def test_interrupted_sweep_counts_every_point_by_its_state(tmp_path: Path) -> None:
    config = sweep(
        {"lr": [1e-3, 1e-2, 1e-1], "optimizer": ["sgd", "adam", "rmsprop"], "seed": [0, 1, 2]}
    )
    order = ["finished"] * 17 + ["failed", "failed", "crashed", "error", "running"] + [None] * 5
    states = dict(zip(range(27), order, strict=True))
    index = {json.dumps(p, sort_keys=True): i for i, p in enumerate(all_points(config))}
    runs = store_study(
        tmp_path, config, noise, lambda p: states[index[json.dumps(p, sort_keys=True)]]
    )
    study = build_table(tmp_path)
    g = apply_guards(study, "lr", "optimizer")
    seen = runs["state"].value_counts()
    assert g.progress.counts() == {
        "finished": seen["finished"], "failed": seen["failed"], "crashed": seen["crashed"],
        "error": seen["error"], "running": seen["running"], "not started": 27 - len(runs),
    }  # fmt: skip
    assert g.notes[0] == (
        "WARNING 17 of 27 grid points finished; 2 failed, 1 crashed, 1 error, 1 running, "
        "5 not started (22 runs); only finished runs are counted"
    )
    failed = next(n for n in g.notes if n.startswith("WARNING 2 failed"))
    assert "failed at epoch 1" in failed and "log e.g. " in failed and ".log" in failed
    # Per cell, each status: the same counts from the runs themselves.
    cells = analyse(g, keys.VAL_ACCURACY).cells.set_index(["lr", "optimizer"])
    for status in ("failed", "crashed", "error", "running"):
        want = runs[runs["state"] == status].groupby(["lr", "optimizer"]).size()
        assert cells.loc[want.index, status].tolist() == want.tolist()
    assert cells["not started"].sum() == 5


def test_no_finished_run_is_refused_with_the_counts_and_the_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sweep({"lr": [1e-3, 1e-2], "optimizer": ["sgd", "adam"], "seed": [0, 1]})
    store_study(tmp_path / "none", config, noise, lambda p: None)  # created, never run
    store_study(tmp_path / "failed", config, noise, lambda p: "failed")
    for kind, says in (
        ("none", r"0 of 8 grid points finished; 8 not started \(0 runs\)"),
        ("failed", r"0 of 8 grid points finished; 8 failed \(8 runs\); 8 failed: failed at "
         r"epoch 1; logs in .*/logs \(e\.g\. .*/r000\.log\)"),
    ):  # fmt: skip
        assert main(["report", "--store", str(tmp_path / kind), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert pd.Series([err]).str.contains(says).all(), err
    assert not (tmp_path / "o").exists()
