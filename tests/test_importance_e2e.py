"""The scan -> importance -> grid -> report flow end to end, as the README runs it: real
processes, the digits CNN, tiny budgets (slow: about two minutes on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from localsweep.grid import load_sweep
from localsweep.store import Store

from .conftest import run_py
from .test_run_path import name_of

SCAN = {
    "program": "train.py",
    "method": "random",
    "run_cap": 14,
    "metric": {"name": "val/accuracy", "goal": "maximize"},
    "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-1},
        "optimizer": {"values": ["sgd", "adam"]},
        "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.1},
        "dataset": {"value": "digits"},
        "model": {"value": "cnn"},
        "epochs": {"value": 2},
    },
}


@pytest.mark.slow
def test_scan_importance_grid_report(wandb_env: dict[str, str], tmp_path: Path) -> None:
    scan = tmp_path / "scan.yaml"
    scan.write_text("# Which pair of lr, optimizer and dropout interacts?\n" + yaml.safe_dump(SCAN))
    store = tmp_path / "store"
    done = run_py(["-m", "localsweep", "run", str(scan), "--store", str(store), "--agents", "2"],
                  wandb_env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    runs = Store(store).runs(name_of(scan))
    assert len(runs) == 14 and {r.state for r in runs} <= {"finished", "stopped"}, runs

    # The heatmap of a scan is refused by name, in one line.
    report = run_py(["-m", "analysis", "report", "--store", str(store), "--yaml", str(scan),
                     "--out", str(tmp_path / "scan_report")], wandb_env)  # fmt: skip
    assert report.returncode == 2 and "Traceback" not in report.stderr
    assert len(report.stderr.strip().splitlines()) == 1
    assert "is a scan (method random) with early_terminate hyperband" in report.stderr
    assert not (tmp_path / "scan_report").exists()

    grid = tmp_path / "grid.yaml"
    argv = ["--store", str(store), "--yaml", str(scan), "--bootstrap", "30", "--emit-grid"]
    ranked = run_py(["-m", "analysis", "importance", *argv, str(grid),
                     "--out", str(tmp_path / "importance")], wandb_env)  # fmt: skip
    assert ranked.returncode == 0, ranked.stdout + ranked.stderr
    assert any(line.startswith("study ") for line in ranked.stdout.splitlines()), ranked.stdout
    _, config = load_sweep(grid)
    assert config["method"] == "grid" and config["parameters"]["epochs"] == {"value": 2}
    assert "early_terminate" not in config and "run_cap" not in config

    studied = run_py(["-m", "localsweep", "run", str(grid), "--store", str(store),
                      "--agents", "2"], wandb_env, timeout=600)  # fmt: skip
    assert studied.returncode == 0, studied.stdout + studied.stderr
    grid_runs = Store(store).runs(name_of(grid))
    assert grid_runs and {r.state for r in grid_runs} == {"finished"}
    page = run_py(["-m", "analysis", "report", "--store", str(store), "--yaml", str(grid),
                   "--out", str(tmp_path / "grid_report")], wandb_env)  # fmt: skip
    assert page.returncode == 0, page.stdout + page.stderr
    assert (tmp_path / "grid_report" / "report.pdf").is_file()
