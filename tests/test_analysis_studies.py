"""analysis on the studies a user writes: any Config field as an axis, int_uniform and q_uniform
axes, a `residual` factor, a loss to minimise, axes that cannot be one, a sweep metric that no
run has. Every sweep here is first checked by localsweep's own `check_sweep` (so it is one that
`localsweep run` accepts). Interrupted, empty and pooled sweeps: test_analysis_counts.py.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.cli import main
from analysis.design import axes_of, choose_metrics
from analysis.figures import heatmap_figure
from analysis.guards import apply_guards
from analysis.labels import is_number
from analysis.reading import analyse
from analysis.report import render_report
from analysis.table import AnalysisError, Study, build_table, table_from_records
from localsweep.grid import all_points, check_sweep
from localsweep.store import Store
from sweepmap import keys
from sweepmap.config import MODELS, MODELS_FOR, OPTIMIZERS, Config, ConfigError

NAME = "study-000000"


def sweep(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A grid config ({name: [levels]} or {name: spec}) that localsweep accepts."""
    spec = {k: v if isinstance(v, dict) else {"values": v} for k, v in params.items()}
    config = {"program": "train.py", "method": "grid", "parameters": spec, **extra}
    config.setdefault("metric", {"name": keys.VAL_ACCURACY, "goal": "maximize"})
    check_sweep(config)  # raises SweepError on anything `localsweep run` would refuse
    return config


def summary(acc: float, epochs: int) -> dict[str, Any]:
    return {
        keys.VAL_ACCURACY: acc,
        keys.BEST_VAL_ACCURACY: acc + 0.005,
        keys.VAL_LOSS: 1.0 - acc,
        keys.EPOCHS_COMPLETED: epochs,
    }


def store_study(
    root: Path,
    config: dict[str, Any],
    score: Callable[[dict[str, Any]], float],
    state: Callable[[dict[str, Any]], str | None] = lambda p: "finished",
) -> pd.DataFrame:
    """The sweep in a real store with its grid stored (as `localsweep create` does); each
    point gets one run in state(point), or none when that is None. Returns the runs."""
    points = all_points(config)
    store = Store(root)
    store.create_sweep(NAME, yaml.safe_dump(config), config, points)
    rows = []
    for i, point in enumerate(points):
        st = state(point)
        if st is None:
            continue
        acc = score(point)
        summ = (
            summary(acc, epochs(point)) if st == "finished" else {keys.FAILURE: f"{st} at epoch 1"}
        )
        store.db.execute(
            "INSERT INTO runs (id, sweep, config, state, summary, log_path, created)"
            " VALUES (?,?,?,?,?,?,?)",
            (f"r{i:03d}", NAME, json.dumps(point), st, json.dumps(summ),
             str(root / "logs" / f"r{i:03d}.log"), time.time() + i),
        )  # fmt: skip
        rows.append({**point, "state": st, "acc": acc})
    store.close()
    return pd.DataFrame(rows)


def epochs(point: dict[str, Any]) -> int:
    return int(point.get("epochs", Config().epochs))


def noise(point: dict[str, Any]) -> float:
    # crc32, not hash(): the same noise in every process (hash() of a str is salted).
    return (
        0.01
        * np.random.default_rng(zlib.crc32(json.dumps(point, sort_keys=True).encode())).normal()
    )


def two_levels(name: str, context: dict[str, Any]) -> list[Any]:
    """Two levels of a Config field that a run accepts beside `context` (other fields at
    their defaults): the default and the first valid neighbour, or [] when there is none."""
    f = next(f for f in dataclasses.fields(Config) if f.name == name)
    default: Any = f.default
    choices = f.metadata["choices"]
    if choices:
        candidates = list(choices)
    elif isinstance(default, bool):
        candidates = [False, True]
    elif isinstance(default, int):
        candidates = [default, default + 1, default + 2]  # +2: kernel_size is odd
    else:
        candidates = [default, round(default + 0.05, 6), round(default / 2, 6)]
    valid = []
    for value in dict.fromkeys([default, *candidates]):
        try:
            Config.from_mapping({**context, name: value})
        except ConfigError:
            continue
        valid.append(value)
    return valid[:2] if len(valid) >= 2 else []


def field_study(name: str) -> tuple[dict[str, Any], str]:
    """(sweep config, other axis): `name` x optimizer (or x lr) over 2 seeds, with a model or
    an optimizer fixed where the defaults would not read `name` (hidden_size: an RNN's;
    momentum: sgd's), as a study of that option has to be written."""
    contexts: list[dict[str, Any]] = [{}]
    for model in MODELS:
        contexts.append(
            {"model": model, "dataset": next(d for d, ms in MODELS_FOR.items() if model in ms)}
        )
    contexts += [{"optimizer": o} for o in OPTIMIZERS]
    for context in contexts:
        context = {k: v for k, v in context.items() if k != name}
        other = "lr" if "optimizer" in (name, *context) else "optimizer"
        levels = two_levels(name, context)
        if levels:
            fixed = {k: {"value": v} for k, v in context.items()}
            params = {name: levels, other: two_levels(other, context), "seed": [0, 1], **fixed}
            return sweep(params), other
    raise AssertionError(f"{name}: no two levels that a run accepts")


def test_every_config_field_can_be_an_axis() -> None:
    for f in dataclasses.fields(Config):
        if f.name == "seed":
            continue
        config, other = field_study(f.name)
        levels = config["parameters"][f.name]["values"]
        records = [
            {
                "run_id": f"r{i}",
                "state": "finished",
                "config": p,
                "summary": summary(0.9 + 0.02 * levels.index(p[f.name]) + noise(p), epochs(p)),
            }
            for i, p in enumerate(all_points(config))
        ]  # fmt: skip
        study = Study(NAME, table_from_records(records, config), config, "", "test")
        assert axes_of(study, None, None) == (f.name, other), f.name
        g = apply_guards(study, f.name, other)
        r = analyse(g, choose_metrics(study, None)[0][0])
        assert r.cells["n"].tolist() == [2] * 4, f.name
        assert r.anova.table is not None and list(r.anova.table["term"]) == [
            f.name, other, f"{f.name}:{other}", "residual"
        ], f.name  # fmt: skip
        if not is_number(levels[0]):  # drawn: the labels of booleans and categories
            plt.close(heatmap_figure(g, r))


def test_residual_study_reports_and_its_anova_keeps_both_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sweep({"num_blocks": [1, 2, 3], "residual": [False, True], "seed": [0, 1, 2]})
    store_study(tmp_path / "s", config, lambda p: 0.9 + 0.02 * p["residual"] * p["num_blocks"])
    out = tmp_path / "heatmap"
    argv = ["heatmap", "--store", str(tmp_path / "s"), "--metric", keys.VAL_ACCURACY]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    anova = pd.read_csv(out / "anova_val_accuracy.csv")
    assert anova["role"].tolist() == ["x", "y", "x:y", "residual"]
    assert anova["term"].tolist() == ["num_blocks", "residual", "num_blocks:residual", "residual"]
    assert anova["p"].iloc[2] < 1e-3  # the planted interaction
    study = build_table(tmp_path / "s")
    g = apply_guards(study, "num_blocks", "residual")
    plt.close(render_report(g, [analyse(g, keys.VAL_ACCURACY)], "python -m analysis report"))


def test_int_uniform_and_q_uniform_axes_are_varied_with_the_engines_levels(tmp_path: Path) -> None:
    config = sweep(
        {
            "num_blocks": {"distribution": "int_uniform", "min": 1, "max": 3},
            "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.6, "q": 0.2},
            "seed": [0, 1],
        }
    )
    store_study(tmp_path, config, lambda p: 0.9 - 0.1 * p["dropout"] + noise(p))
    study = build_table(tmp_path)
    assert axes_of(study, None, None) == ("num_blocks", "dropout")
    g = apply_guards(study, "num_blocks", "dropout")
    points = pd.DataFrame(all_points(config))  # the engine's own grid
    assert g.x_levels == sorted(points["num_blocks"].unique()) == [1, 2, 3]
    assert g.y_levels == sorted(points["dropout"].unique())
    assert analyse(g, keys.VAL_ACCURACY).cells["n"].tolist() == [2] * (3 * len(g.y_levels))


def test_a_loss_to_minimise_is_the_primary_metric(tmp_path: Path) -> None:
    config = sweep(
        {"lr": [1e-3, 1e-2], "optimizer": ["sgd", "adam"], "seed": [0, 1, 2]},
        metric={"name": keys.VAL_LOSS, "goal": "minimize"},
    )
    runs = store_study(tmp_path, config, lambda p: 0.9 + 0.05 * (p["optimizer"] == "adam"))
    study = build_table(tmp_path)
    metrics, _ = choose_metrics(study, None)
    assert metrics[0] == keys.VAL_LOSS and set(metrics[1:]) == {
        keys.BEST_VAL_ACCURACY,
        keys.VAL_ACCURACY,
    }
    r = analyse(apply_guards(study, "lr", "optimizer"), keys.VAL_LOSS)
    assert r.goal == "min"
    loss = runs.assign(loss=1 - runs["acc"]).groupby(["lr", "optimizer"])["loss"].mean()
    assert r.ties.best == loss.idxmin()  # the lowest loss, not the highest


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        (["--x", "seed"], r"--x 'seed': seed is the replicate.*varied parameters: lr, optimizer"),
        (["--y", "epochs"], r"--y 'epochs': fixed at 2 in this sweep \(one level\)"),
        (["--x", "optimiser"], r"--x 'optimiser': .*did you mean 'optimizer'\?"),
    ],
)
def test_an_axis_that_cannot_be_one_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str], says: str
) -> None:
    config = sweep(
        {"lr": [1e-3, 1e-2], "optimizer": ["sgd", "adam"], "seed": [0, 1], "epochs": [2]}
    )
    store_study(tmp_path, config, noise)
    assert main(["heatmap", "--store", str(tmp_path), *flag, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pd.Series([err]).str.contains(says).all(), err


def test_sweep_metric_absent_from_the_runs_is_said(tmp_path: Path) -> None:
    config = sweep({"lr": [1e-3, 1e-2], "optimizer": ["sgd", "adam"], "seed": [0, 1]},
                   metric={"name": keys.VAL_F1, "goal": "maximize"})  # fmt: skip
    store_study(tmp_path, config, noise)
    metrics, notes = choose_metrics(build_table(tmp_path), None)
    assert metrics[0] == keys.BEST_VAL_ACCURACY
    assert notes == [
        "WARNING the sweep's metric val/f1 is in no finished run's summary; shown instead: "
        "best/val/accuracy, val/accuracy, val/loss"
    ]
    with pytest.raises(AnalysisError, match=r"--metric 'val/acuracy'.*did you mean 'val/accuracy'"):
        choose_metrics(build_table(tmp_path), ["val/acuracy"])
