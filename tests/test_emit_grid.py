"""The grid `analysis importance --emit-grid` writes: `localsweep run`'s own checks accept it,
it has exactly the structure of a one-budget grid study, and its floats read back as floats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.emit_grid import continuous_levels, emit, good_runs, write, yaml_scalar
from analysis.scan_runs import Param, scan_params
from localsweep.grid import load_sweep
from sweepmap.sweepfile import question
from tests.test_importance import SCAN, planted

HEADER = ["Emitted by a test."]


def _runs() -> tuple[dict[str, Any], list[Param], pd.DataFrame]:
    config = yaml.safe_load(SCAN)
    params, _ = scan_params(config)
    runs, y = planted()
    runs.insert(0, "run_id", [f"r{i:02d}" for i in range(len(runs))])
    return config, params, runs.assign(y=y)


def _emit(tmp: Path, config: dict[str, Any], pair: tuple[str, str], runs: pd.DataFrame) -> Path:
    params, _ = scan_params(config)
    by = {p.name: p for p in params}
    emitted = emit(config, (by[pair[0]], by[pair[1]]), runs, "max", 8, HEADER)
    path = tmp / "grid.yaml"
    write(path, emitted.text)
    return path


def _is_one_two_five(value: float) -> bool:
    mantissa = value / 10 ** math.floor(math.log10(value))
    return any(math.isclose(mantissa, m) for m in (1, 2, 5))


def test_emitted_grid_passes_load_sweep_with_exactly_the_study_structure(tmp_path: Path) -> None:
    config, _, runs = _runs()
    path = _emit(tmp_path, config, ("lr", "optimizer"), runs)
    text, got = load_sweep(path)
    assert list(got) == ["program", "method", "metric", "parameters"]
    assert got["method"] == "grid" and got["program"] == config["program"]
    assert got["metric"] == config["metric"]
    p = got["parameters"]
    assert list(p) == [
        "lr", "optimizer", "seed", "epochs", "dropout", "batch_size", "filters", "dataset", "model"
    ]  # fmt: skip
    lr = p["lr"]["values"]
    good = good_runs(runs, "max")
    assert len(good) == 15  # the best quarter of 60
    assert len(lr) == 4 and lr == sorted(lr) and all(isinstance(v, float) for v in lr)
    assert all(_is_one_two_five(v) and 1e-4 <= v <= 1e-1 for v in lr)
    # Spaced over the good region, each end within a 1-2-5 step of it.
    assert good["lr"].min() / 2.5 <= lr[0] <= good["lr"].min() * 2.5
    assert good["lr"].max() / 2.5 <= lr[-1] <= good["lr"].max() * 2.5
    assert p["optimizer"] == {"values": ["sgd", "adam", "rmsprop"]}  # every value of the scan
    assert p["seed"] == {"values": [0, 1, 2]} and p["epochs"] == {"value": 8}
    best = good.iloc[0]
    assert p["dropout"]["value"] == pytest.approx(best["dropout"], rel=5e-3)  # 3 digits
    assert p["batch_size"] == {"value": int(best["batch_size"])}
    assert p["filters"] == {"value": int(best["filters"])}
    assert p["dataset"] == {"value": "digits"} and p["model"] == {"value": "cnn"}
    assert question(text, got) == "Does the best lr depend on the optimizer?"
    assert "Emitted by a test." in text and "# Grid: 4 lr x 3 optimizer x 3 seeds = 36 runs" in text


def test_command_and_project_are_copied(tmp_path: Path) -> None:
    config, _, runs = _runs()
    config["command"] = ["${env}", "${interpreter}", "${program}", "${args}"]
    config["project"] = "sweepmap-demo"
    _, got = load_sweep(_emit(tmp_path, config, ("lr", "optimizer"), runs))
    assert got["command"] == config["command"] and got["project"] == "sweepmap-demo"


@pytest.mark.parametrize("value", [1e-3, 2.5e-4, 1e5, 0.5, 3.0, 1e-12, 0.0, 123.25, -2e-3])
def test_floats_read_back_as_floats(value: float) -> None:
    text = yaml_scalar(value)
    back = yaml.safe_load(text)
    assert isinstance(back, float) and back == value, text


def test_an_option_a_level_does_not_read_goes_to_its_default(tmp_path: Path) -> None:
    config, _, runs = _runs()
    config["parameters"]["momentum"] = {"distribution": "uniform", "min": 0.5, "max": 0.8}
    runs["momentum"] = np.random.default_rng(0).uniform(0.5, 0.8, len(runs))
    path = _emit(tmp_path, config, ("lr", "optimizer"), runs)
    text, got = load_sweep(path)  # adam does not read momentum: a non-default is refused
    assert got["parameters"]["momentum"] == {"value": 0.9}
    assert "momentum=0.9 (its default, not the best run's" in " ".join(text.split())


def test_a_narrow_good_region_is_widened_to_distinct_levels() -> None:
    lr = Param("lr", "log", (), 1e-4, 1e-1)
    assert len(continuous_levels(lr, pd.Series([1.1e-3, 1.2e-3, 1.3e-3]))) == 4
    filters = Param("filters", "int", (), 8, 10)
    assert continuous_levels(filters, pd.Series([9, 9, 9])) == [8, 9, 10]  # all the room
    dropout = Param("dropout", "linear", (), 0.0, 0.5)
    levels = continuous_levels(dropout, pd.Series([0.05, 0.2, 0.42]))
    assert levels == [0.05, 0.17, 0.3, 0.42]


def test_two_continuous_parameters(tmp_path: Path) -> None:
    config, _, runs = _runs()
    _, got = load_sweep(_emit(tmp_path, config, ("dropout", "filters"), runs))
    p = got["parameters"]
    assert all(isinstance(v, int) for v in p["filters"]["values"])
    assert len(p["filters"]["values"]) == 4 and len(p["dropout"]["values"]) == 4
    assert p["optimizer"]["value"] in ("sgd", "adam", "rmsprop")
