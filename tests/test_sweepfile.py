"""sweepmap/sweepfile.py: levels as the engine enumerates them, and bad files in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localsweep.grid import all_points
from sweepmap.sweepfile import (
    SweepError,
    axes,
    decode,
    encode,
    grid_size,
    metric,
    read_sweep,
    sweep_name,
    varied,
)

from .conftest import ROOT

PARAMS = {
    "lr": {"values": [1.0e-3, 1.0e-2]},
    "blocks": {"distribution": "int_uniform", "min": 1, "max": 3},
    "inferred": {"min": 2, "max": 4},  # two integers: the engine reads an int_uniform
    "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.1},
    "width": {"distribution": "q_uniform", "min": 8, "max": 32, "q": 8},  # 32 is dropped
    "epochs": {"value": 2},
}


def test_levels_and_size_are_the_engines() -> None:
    config = {"method": "grid", "parameters": PARAMS}
    points = all_points(config)
    assert grid_size(config) == len(points) == 2 * 3 * 3 * 5 * 3
    for axis in axes(config):
        seen = list(dict.fromkeys(p[axis.name] for p in points))
        assert sorted(seen) == sorted(axis.levels), axis
    by_name = {a.name: a for a in axes(config)}
    assert by_name["width"].levels == (8, 16, 24)
    assert varied(config) == ["lr", "blocks", "inferred", "dropout", "width"]


def test_the_grid_is_the_engines_next_runs_in_its_order_without_its_other_searches() -> None:
    """all_points calls the engine's grid search directly (sklearn stays unloaded); the points
    and their order are what `sweeps.next_runs` hands out, run_cap included."""
    code = (
        "import sys, sweeps; from localsweep.grid import all_points, decode;"
        f"c = {{'method': 'grid', 'parameters': {PARAMS!r}}};"
        "ours = all_points(c); gone = 'sklearn' not in sys.modules;"
        "theirs = [decode(r.config) for r in sweeps.next_runs(c, [], n=1000) if r];"
        "capped = all_points(dict(c, run_cap=7)) == theirs[:7];"
        "print(ours == theirs, len(ours), gone, capped)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "270", "True", "True"], out.stderr


def test_scans_have_no_grid_axes_to_name() -> None:
    scan = {"parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1}}}
    with pytest.raises(SweepError, match=r"parameters\.lr: log_uniform_values is not a grid"):
        axes(scan)
    assert varied(scan) == []


def test_encoding_both_ways() -> None:
    point = {"lr": 0.01, "optimizer": "adam", "batchnorm": False}
    assert encode(point) == {k: {"value": v} for k, v in point.items()}
    assert decode(encode(point)) == point


def test_name_comes_from_the_name_key_and_the_content() -> None:
    config = {"name": "my study/v2", "parameters": {"seed": {"values": [0, 1]}}}
    name = sweep_name("sweeps/x.yaml", config)
    assert name.startswith("my_study_v2-") and "/" not in name
    assert sweep_name("sweeps/x.yaml", {**config, "name": None}).startswith("x-")
    assert sweep_name("a.yaml", config) == name  # the hash is of the content, not the path
    assert metric({"metric": {"name": "val/loss", "goal": "minimize"}}) == ("val/loss", "minimize")
    assert metric({}) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"method: grid\nparameters:\n  lr: {values: [1, 2]\n", "line 4, column 1"),
        (b"method: grid\nmethod: random\n", "key 'method' appears twice (lines 1 and 2)"),
        (b"method: grid\nparameters:\n  a: 1\n  a: 2\n", "key 'a' appears twice"),
        (b"method: gr\xffid\n", "not UTF-8 text (byte 0xff at offset 10)"),
        (b"- a\n- b\n", "expected a mapping of sweep keys, got list"),
    ],
)
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, content: bytes, expected: str):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(SweepError) as err:
        read_sweep(path)
    line = str(err.value)
    assert line.startswith(str(path)) and expected in line and "\n" not in line, line


def test_reading_a_sweep_loads_neither_the_engine_nor_wandb_nor_torch() -> None:
    code = (
        "import sys; from sweepmap import sweepfile;"
        "sweepfile.axes(sweepfile.read_sweep('sweeps/lr_optimizer.yaml')[1]);"
        "print(sorted(m for m in ('sweeps', 'wandb', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
