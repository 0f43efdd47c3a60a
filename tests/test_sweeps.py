"""Every study in sweeps/ is a valid wandb grid sweep and a valid set of train.py configs;
every scan (sweeps/scan_*.yaml) a valid scan that localsweep runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from localsweep.grid import all_points, check_sweep, load_sweep, sweeps
from sweepmap import keys
from sweepmap.config import Config
from sweepmap.sweepfile import SweepError, varied

from .conftest import ROOT

SCANS = sorted((ROOT / "sweeps").glob("scan_*.yaml"))
STUDIES = sorted(set((ROOT / "sweeps").glob("*.yaml")) - set(SCANS))


def test_the_required_studies_exist() -> None:
    names = {p.stem for p in STUDIES}
    assert "lr_optimizer" in names
    configs = [yaml.safe_load(p.read_text()) for p in STUDIES]
    models = [c["parameters"]["model"]["value"] for c in configs]
    datasets = [c["parameters"]["dataset"]["value"] for c in configs]
    pairs = zip(datasets, models, strict=True)
    assert sum(d == "gestures" and m in ("lstm", "gru") for d, m in pairs) >= 2
    assert "cnn" in models


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_is_a_clean_two_factor_grid(path: Path) -> None:
    text, config = load_sweep(path)  # wandb's schema check and every point as a Config
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert config["method"] == "grid" and "early_terminate" not in config
    factors = [p for p in varied(config) if p != "seed"]
    assert len(factors) == 2, factors
    assert len(config["parameters"]["seed"]["values"]) >= 3
    assert "value" in config["parameters"]["epochs"]
    metric = config["metric"]["name"]
    assert metric in keys.EPOCH_METRICS or metric in keys.BEST_OF.values()
    points = all_points(config)
    assert len(points) == len({tuple(sorted(p.items())) for p in points})
    for point in points:
        cfg = Config.from_mapping(point)
        for value in point.values():
            assert not isinstance(value, str) or not re.fullmatch(r"[-+.\deE]+", value)
        assert cfg.epochs == config["parameters"]["epochs"]["value"]
    # The top comment states the question and the grid size, and the size is right.
    assert text.startswith("# ") and "?" in text.splitlines()[0]
    assert f"= {len(points)} runs" in text


@pytest.mark.parametrize("path", SCANS, ids=lambda p: p.stem)
def test_scan_is_one_localsweep_runs_with_its_question_and_size(path: Path) -> None:
    text, config = load_sweep(path)  # the schema, the scan's keys, its space as Configs
    assert config["method"] in ("random", "bayes") and "value" in config["parameters"]["epochs"]
    assert text.startswith("# ") and "?" in text.splitlines()[0]
    assert f"{config['run_cap']} runs" in text


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"method": "gird"}, "method"),
        ({"paramters": {}}, "paramters"),
        ({"parameters": {"lr": {"values": ["1e-3"]}}}, "1.0e-3"),
        ({"parameters": {"lr": {"values": [-1.0]}}}, "lr=-1.0"),
        ({"parameters": {"lr": {"distribution": "uniform", "min": 0.1, "max": 1}}}, "grid"),
        ({"parameters": {"optimiser": {"values": ["sgd"]}}}, "optimiser"),
    ],
)
def test_bad_sweeps_are_refused_with_the_key(patch: dict, needle: str) -> None:
    config: dict[str, Any] = {
        "program": "train.py",
        "method": "grid",
        "parameters": {"seed": {"values": [0]}},
    }
    for key, value in patch.items():
        if key == "parameters":
            config["parameters"] = {**config["parameters"], **value}
        else:
            config[key] = value
    with pytest.raises(SweepError) as err:
        check_sweep(config, "x.yaml")
    assert needle in str(err.value) and str(err.value).startswith("x.yaml: ")
